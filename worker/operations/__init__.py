"""The operator's surface: what an operator runs, reads and signals.

Owns ``cognito-worker check`` (``check``), the health and metrics endpoints (``health``), CloudWatch
embedded metric format lines (``emf``), the settings table of ``run --help`` and docs/settings.md
(``settings_doc``), and SIGTERM and SIGINT (``signals``). It reads the parts below it (the
pipeline, the Cognito side, the telemetry, the settings, the contract); nothing below imports it.
"""
