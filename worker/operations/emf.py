"""CloudWatch embedded metric format (EMF): the key figures as JSON lines on stdout, every minute.

On ECS nothing scrapes ``/metrics``; the awslogs driver does ship stdout to CloudWatch Logs, which
turns each EMF line into metric data points. The emitter reads the same Prometheus registry that
``/metrics`` serves and writes, per interval and once more at stop, the counters' increase since
its last line and the gauges' current values: aggregated lines, never one per job.

The format is written directly (a dozen lines of JSON) rather than through the
``aws-embedded-metrics`` library: that library adds a dependency, takes about three times the CPU
per line, and in an ECS task sends to a CloudWatch agent over TCP unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from worker.telemetry.logs import write_line
from worker.telemetry.metrics import Metrics

NAMESPACE = "CognitoWorker"
SERVICE = "cognito-worker"
EMIT_INTERVAL_S = 60.0

Labels = tuple[tuple[str, str], ...]


def _samples(metric: MetricWrapperBase, suffix: str = "") -> Iterator[tuple[Labels, float]]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == family.name + suffix:
                yield tuple(sorted(sample.labels.items())), sample.value


class EmfEmitter:
    """Writes the worker's key figures as EMF lines (see docs/observability.md for the list)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        interval_s: float = EMIT_INTERVAL_S,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._interval_s = interval_s
        self._write = write or self._to_stdout
        self._clock = clock
        self._seen: dict[tuple[str, Labels], float] = {}
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _to_stdout(line: str) -> None:
        # The log lines' writer: never interleaved with them, and safe when stdout's reader is gone.
        write_line(line)

    def start(self) -> None:
        """Emit every interval from now on."""
        self._task = asyncio.create_task(self._every_interval())

    async def close(self) -> None:
        """Stop the timer and emit what happened since the last line."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.emit()

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self.emit()

    def emit(self) -> None:
        """Write one line per figure group that has something to say."""
        for document in self.documents():
            self._write(json.dumps(document, separators=(",", ":")))

    def documents(self) -> list[dict[str, Any]]:
        """The EMF documents for this interval (counters as increases since the last call)."""
        m = self._metrics
        documents: list[dict[str, Any]] = []
        throttles = dict(self._increases("throttles", m.throttles))
        breaker_open = max((v for _, v in _samples(m.breaker_open)), default=0.0)
        documents.append(
            self._document(
                [["Service"]],
                {
                    "JobsInFlight": (sum(v for _, v in _samples(m.jobs_in_flight)), "Count"),
                    "BreakerOpen": (breaker_open, "Count"),
                    "CognitoThrottles": (sum(throttles.values()), "Count"),
                },
                {},
            )
        )
        for labels, increase in self._increases("jobs", m.jobs):
            if increase:
                documents.append(
                    self._document(
                        [["Service", "Status"], ["Service", "Status", "JobType"]],
                        {"Jobs": (increase, "Count")},
                        {"Status": dict(labels)["status"], "JobType": dict(labels)["type"]},
                    )
                )
        rates = {dict(labels)["category"]: value for labels, value in _samples(m.limiter_rate)}
        for category in sorted({*rates, *(dict(labels)["category"] for labels in throttles)}):
            figures: dict[str, tuple[float, str]] = {
                "Throttles": (throttles.get((("category", category),), 0.0), "Count")
            }
            if category in rates:
                figures["LimiterRate"] = (rates[category], "Count/Second")
            documents.append(
                self._document([["Service", "Category"]], figures, {"Category": category})
            )
        return documents

    def _increases(self, name: str, counter: MetricWrapperBase) -> Iterator[tuple[Labels, float]]:
        for labels, total in _samples(counter, "_total"):
            key = (name, labels)
            increase = total - self._seen.get(key, 0.0)
            self._seen[key] = total
            yield labels, increase

    def _document(
        self,
        dimensions: list[list[str]],
        figures: dict[str, tuple[float, str]],
        dimension_values: dict[str, str],
    ) -> dict[str, Any]:
        return {
            "_aws": {
                "Timestamp": int(self._clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": dimensions,
                        "Metrics": [{"Name": n, "Unit": unit} for n, (_, unit) in figures.items()],
                    }
                ],
            },
            "Service": SERVICE,
            **dimension_values,
            **{name: value for name, (value, _) in figures.items()},
        }
