"""Prometheus metrics, served at ``/metrics``. One registry per worker, built by the root."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric the worker exports (documented in the README)."""

    registry: CollectorRegistry
    jobs: Counter
    handed_back: Counter
    jobs_in_flight: Gauge
    lane_jobs: Counter
    lane_jobs_in_flight: Gauge
    queue_wait: Histogram
    job_latency: Histogram
    cognito_calls: Counter
    cognito_latency: Histogram
    throttles: Counter
    retries: Counter
    limiter_wait: Histogram
    limiter_rate: Gauge
    breaker_open: Gauge
    batch_size: Histogram
    aws_requests: Counter

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._add_job_metrics(self.registry)
        self._add_cognito_metrics(self.registry)
        self._add_aws_metrics(self.registry)

    def _add_job_metrics(self, r: CollectorRegistry) -> None:
        # Jobs and messages: how many finished and how, how long they took, how many are in flight.
        self.jobs = Counter(
            "cognito_worker_jobs", "Jobs finished, by type and status.", ["type", "status"],
            registry=r,
        )  # fmt: skip
        self.handed_back = Counter(
            "cognito_worker_handed_back",
            "Messages handed back to SQS for a later delivery, by reason.",
            ["reason"],
            registry=r,
        )
        self.jobs_in_flight = Gauge(
            "cognito_worker_jobs_in_flight", "Messages received and not finished.", registry=r
        )
        # The two lanes apart: live users' jobs (interactive) and an import's (bulk).
        self.lane_jobs = Counter(
            "cognito_worker_lane_jobs", "Jobs finished, by lane and status.", ["lane", "status"],
            registry=r,
        )  # fmt: skip
        self.lane_jobs_in_flight = Gauge(
            "cognito_worker_lane_jobs_in_flight", "Messages received and not finished, by lane.",
            ["lane"], registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "cognito_worker_queue_wait_seconds",
            "From the producer's send (SQS's SentTimestamp) to this receive, by lane.",
            ["lane"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.job_latency = Histogram(
            "cognito_worker_job_seconds",
            "From receiving a message to its published result.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def _add_cognito_metrics(self, r: CollectorRegistry) -> None:
        # The Cognito side: calls, latency, throttles, retries, the pacer and the breakers.
        self.cognito_calls = Counter(
            "cognito_worker_cognito_calls",
            "Cognito calls, by operation and outcome (ok or the error code).",
            ["operation", "outcome"],
            registry=r,
        )
        self.cognito_latency = Histogram(
            "cognito_worker_cognito_call_seconds",
            "Cognito call latency, by operation.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.throttles = Counter(
            "cognito_worker_throttles",
            "TooManyRequestsException answers, by quota category.",
            ["category"],
            registry=r,
        )
        self.retries = Counter(
            "cognito_worker_retries", "In-process retries of Cognito calls, by operation.",
            ["operation"], registry=r,
        )  # fmt: skip
        self.limiter_wait = Histogram(
            "cognito_worker_limiter_wait_seconds",
            "Time spent waiting for the rate limiter, by quota category.",
            ["category"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.limiter_rate = Gauge(
            "cognito_worker_limiter_rate_rps",
            "The rate limiter's current rate, by quota category.",
            ["category"],
            registry=r,
        )
        self.breaker_open = Gauge(
            "cognito_worker_breaker_open",
            "1 while an app client's circuit breaker is open.",
            ["client_id"],
            registry=r,
        )

    def _add_aws_metrics(self, r: CollectorRegistry) -> None:
        # The worker's own SQS and SNS requests.
        self.batch_size = Histogram(
            "cognito_worker_batch_size",
            "Entries per batched SQS/SNS request, by call.",
            ["call"],
            buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
            registry=r,
        )
        self.aws_requests = Counter(
            "cognito_worker_aws_requests",
            "SQS and SNS requests made, by call.",
            ["call"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
