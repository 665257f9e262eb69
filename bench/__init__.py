"""``make bench``: the worker against a Cognito quota and latency, beside a naive baseline."""
