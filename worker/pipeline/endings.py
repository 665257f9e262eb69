"""How a job ends: the result it publishes, and whether its message is also copied to the DLQ.

The processor chooses the ending; these functions write it down as the result subscribers read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from worker.cognito.outcomes import CognitoError, CognitoSuccess, PermanentError
from worker.contract.jobs import Job, JobError, JobResult, JobType, ResultStatus
from worker.pipeline.consumer import ReceivedMessage
from worker.settings import AppClient


@dataclass(frozen=True, slots=True)
class Ending:
    """A job's published result, and whether its message is also copied to the DLQ (and why)."""

    result: JobResult
    dead_letter_reason: str | None = None


class Received(Protocol):
    """The delivery a result speaks of: its message, and when the worker received it."""

    @property
    def message(self) -> ReceivedMessage: ...

    @property
    def received_at(self) -> datetime: ...


def finished(
    job: Job,
    job_id: str,
    app_client: AppClient,
    delivery: Received,
    attempts: int,
    outcome: CognitoSuccess | CognitoError,
) -> JobResult:
    """The result of a job whose calls ended with ``outcome``: succeeded or failed."""
    common = {
        "job_id": job_id,
        "type": JobType(job.type),
        "client_id": app_client.client_id,
        "batch": job.batch,
        "sqs_message_id": delivery.message.message_id,
        "attempts": attempts,
        "received_at": delivery.received_at,
        "finished_at": datetime.now(UTC),
    }
    if isinstance(outcome, CognitoError):
        return JobResult(
            status=ResultStatus.FAILED,
            error=JobError(code=outcome.code, message=outcome.message, retryable=outcome.retryable),
            **common,
        )
    return JobResult(
        status=ResultStatus.SUCCEEDED,
        user_sub=outcome.user_sub,
        user_confirmed=outcome.user_confirmed,
        code_delivery=outcome.code_delivery,
        detail=outcome.detail,
        **common,
    )


def reused(job: Job, job_id: str, app_client: AppClient, delivery: Received) -> JobResult:
    """The result of a job whose id an earlier, different job already took: failed, not run."""
    error = PermanentError(
        "JobIdReused",
        "this job_id was first used for a different job (its payload differs); "
        "this job was not run: send it with a new job_id",
    )
    return finished(job, job_id, app_client, delivery, 0, error)


def rejected(
    delivery: Received,
    reason: str,
    job_id: str | None,
    job_type: JobType | None,
    client_id: str | None,
    *,
    batch: str | None = None,
    code: str = "InvalidJob",
    dead_letter: bool = True,
) -> Ending:
    """The ending of a message that is no job this worker runs: rejected, and dead-lettered
    unless ``dead_letter`` is false."""
    result = JobResult(
        job_id=job_id,
        type=job_type,
        client_id=client_id,
        batch=batch,
        status=ResultStatus.REJECTED,
        sqs_message_id=delivery.message.message_id,
        error=JobError(code=code, message=reason, retryable=False),
        attempts=0,
        received_at=delivery.received_at,
        finished_at=datetime.now(UTC),
    )
    return Ending(result, dead_letter_reason=reason if dead_letter else None)
