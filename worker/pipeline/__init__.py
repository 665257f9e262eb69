"""One message's way through the worker, from receive to delete.

Owns the SQS queue (``consumer``) and its visibility while a job runs (``heartbeat``), the SNS
result publisher (``results``), batching of both (``batching``) and the retry policy of their calls
(``aws_retries``), claims and stored results (``idempotency``), what becomes of a job once its calls
ended (``decisions``), and the processor that orders a message's steps (``processor``). It may
import the contract, the settings, the telemetry and the Cognito side; the operator surface and the
composition root read it, never the reverse.
"""
