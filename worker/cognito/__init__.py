"""The Cognito side: the only code that knows the Cognito API, and how fast the fleet may call it.

Owns the gateway that turns a job into Cognito calls (``gateway``), the SecretHash formula
(``secret_hash``), how a Cognito call can end and its error classes (``outcomes``), the pacer per
quota category (``ratelimit``) with the fleet's roster it shares the budget by (``fleet``), and the
circuit breakers on configuration errors (``breaker``). It may import the contract, the settings
and the telemetry; never the pipeline, which calls it.
"""
