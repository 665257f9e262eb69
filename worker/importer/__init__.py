"""``cognito-worker import FILE``: a file of users made into jobs, sent, followed and reported."""
