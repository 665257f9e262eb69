"""The instruments every part writes to: redacting log lines and the Prometheus metrics.

Owns the structlog set-up, its redaction of secrets and the line writer that survives a broken
pipe (``logs``), and the metric families with their registry (``metrics``). It imports nothing of
the worker's: the pipeline and the Cognito side record into it, the operator surface reads it out.
"""
