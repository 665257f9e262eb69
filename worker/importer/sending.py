"""The import's seams to AWS: sending jobs to the queue, following their results, and looking up
the jobs an earlier run sent.

The command depends only on these protocols; :mod:`worker.importer.aws` implements them with the
producer library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from worker.contract.jobs import Job, JobResult
from worker.producer.lookup import JobState


@dataclass(frozen=True, slots=True)
class SendFailure:
    """A job SQS did not take, after the producer's retries."""

    job_id: str
    code: str
    message: str


BatchCallback = Callable[[list[str], list[SendFailure]], None]


class JobSender(Protocol):
    """Sends jobs in batches, calling back after each batch SQS answered."""

    def send_many(self, jobs: Iterable[Job], on_batch: BatchCallback) -> None:
        """Send every job the iterable yields (it may stop early); ``on_batch`` receives the
        job ids SQS accepted and the failures, once per batch, in the calling thread."""
        ...


class ResultStream(Protocol):
    """The results of one import's batch, as they arrive."""

    def poll(self, wait_s: float) -> Iterator[JobResult]:
        """Results that arrived within ``wait_s`` seconds (possibly none)."""
        ...


ResultFollower = Callable[[str], AbstractContextManager[ResultStream]]
"""Given a batch label, a context that follows its results and cleans up when it exits."""


@dataclass(frozen=True, slots=True)
class LookedUp:
    """One job's record in the worker's idempotency table: its state (None: no record), or why
    it could not be read (``error``, one line)."""

    job_id: str
    state: JobState | None
    error: str = ""


class JobLookup(Protocol):
    """Reads the records of jobs sent earlier (``cognito-worker job``'s lookup, many at once)."""

    def look_up_many(self, job_ids: Iterable[str]) -> Iterator[LookedUp]:
        """One answer per job id, in the same order."""
        ...
