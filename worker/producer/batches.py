"""SendMessageBatch for producers: which jobs travel together, and what each entry's answer means.

Shared by the synchronous and the asynchronous producer, which differ only in how they wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.contract.jobs import Job, Lane
from worker.producer.jobs import MAX_BATCH_ENTRIES, FailedJob, PreparedJob, SentJob, sqs_id

#: ``group_id`` of ``send_many``: one group for every job, a function of the job, or the default
#: (the job's username, so that a user's jobs stay in order).
GroupId = str | Callable[[Job], str] | None

# SendMessageBatch's envelope around the bodies (ids, attribute names): kept out of the budget.
_ENTRY_OVERHEAD_BYTES = 512


def lane_queue(queue_url: str, bulk_queue_url: str | None, lane: Lane | str) -> str:
    """The queue of ``lane``: ``queue_url`` for interactive jobs, ``bulk_queue_url`` for bulk
    ones (an import, a migration: they take only the Cognito calls live jobs leave)."""
    if Lane(lane) is Lane.INTERACTIVE:
        return queue_url
    if bulk_queue_url is None:
        raise ValueError("lane='bulk' needs bulk_queue_url= (the worker's BULK_JOBS_QUEUE_URL)")
    return bulk_queue_url


def is_fifo(queue_url: str) -> bool:
    """Whether the queue is a FIFO queue (SQS requires FIFO names to end in ``.fifo``)."""
    return queue_url.rstrip("/").endswith(".fifo")


def message_group(job: Job, group_id: GroupId) -> str:
    """The MessageGroupId of a job on a FIFO queue."""
    if group_id is None:
        return sqs_id(job.username_sent)
    if callable(group_id):
        return sqs_id(group_id(job))
    return sqs_id(group_id)


@dataclass(slots=True)
class Batch:
    """Up to ten jobs for one SendMessageBatch, within the byte limit, one per FIFO group.

    One job per group in a batch keeps a group's order even when an entry must be retried: a
    later job of the same group cannot be accepted while an earlier one waits for its retry.
    """

    fifo: bool
    max_bytes: int
    jobs: list[PreparedJob] = field(default_factory=list)
    groups: dict[int, str] = field(default_factory=dict)  # index in jobs -> group
    size: int = 0

    def has_room(self, job: PreparedJob, group: str | None) -> bool:
        """Whether ``job`` may join this batch."""
        if not self.jobs:
            return True
        return (
            len(self.jobs) < MAX_BATCH_ENTRIES
            and self.size + job.size + _ENTRY_OVERHEAD_BYTES <= self.max_bytes
            and (group is None or group not in self.groups.values())
        )

    def add(self, job: PreparedJob, group: str | None) -> None:
        """Put ``job`` in the batch (check :meth:`has_room` first)."""
        if group is not None:
            self.groups[len(self.jobs)] = group
        self.jobs.append(job)
        self.size += job.size + _ENTRY_OVERHEAD_BYTES

    def entries(self, positions: list[int]) -> list[dict[str, Any]]:
        """The SendMessageBatch entries of the jobs at ``positions`` (ids are the positions)."""
        entries = []
        for position in positions:
            job = self.jobs[position]
            entry: dict[str, Any] = {"Id": str(position), "MessageBody": job.body}
            if self.fifo:
                entry["MessageGroupId"] = self.groups[position]
                entry["MessageDeduplicationId"] = sqs_id(job.job_id)
            entries.append(entry)
        return entries


@dataclass(slots=True)
class Settled:
    """One SendMessageBatch answer, read per entry."""

    sent: list[SentJob]
    failed: list[FailedJob]
    retry: list[int]  # positions to send again


def settle(batch: Batch, positions: list[int], answer: Any, *, last_attempt: bool) -> Settled:
    """Read an answer: every entry sent is counted, every ``Failed`` one retried or reported.

    An entry SQS left out of both lists is treated like a failure that may be retried, so that no
    job is ever lost between the lines of an answer.
    """
    settled = Settled([], [], [])
    answered: set[int] = set()
    for success in answer.get("Successful", []):
        position = int(success["Id"])
        answered.add(position)
        job = batch.jobs[position]
        settled.sent.append(
            SentJob(
                job_id=job.job_id,
                message_id=success["MessageId"],
                index=job.index,
                sequence_number=success.get("SequenceNumber"),
            )
        )
    reasons: dict[int, tuple[str, str, bool]] = {}
    for failure in answer.get("Failed", []):
        position = int(failure["Id"])
        answered.add(position)
        reasons[position] = (
            failure.get("Code", "Failed"),
            failure.get("Message", ""),
            bool(failure.get("SenderFault")),
        )
    for position in positions:
        if position not in answered:
            reasons[position] = ("NoAnswer", "the entry was missing from SQS's answer", False)
    for position, (code, message, sender_fault) in sorted(reasons.items()):
        if sender_fault or last_attempt:
            job = batch.jobs[position]
            settled.failed.append(FailedJob(job.job_id, code, message, sender_fault, job.index))
        else:
            settled.retry.append(position)
    return settled


def backoff_s(attempt: int) -> float:
    """Pause before retry number ``attempt`` (1, 2, ...): exponential, full jitter, at most 2 s."""
    # Jitter spreads retries of many producers; not a secret, so the default generator does.
    return random.uniform(0, min(2.0, 0.05 * 2**attempt))  # noqa: S311
