"""cognito-worker: creates and recovers Amazon Cognito users from an SQS queue."""

__version__ = "0.1.0"
