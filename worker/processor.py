"""One message's way through the worker: decode, call Cognito with retries, publish, delete.

A message is deleted in exactly one place, :meth:`JobProcessor.process`, after its result was
published. Every other way out hands the message back to SQS, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from worker.batching import BatchEntryError
from worker.cognito import CognitoGateway, job_secrets
from worker.consumer import JobQueue, ReceivedMessage
from worker.jobs import Job, JobError, JobResult, JobType, MalformedJob, ResultStatus, decode_job
from worker.logs import get_logger
from worker.logs import job_secrets as masked
from worker.outcomes import (
    CognitoError,
    CognitoSuccess,
    ConfigurationError,
    DeferredError,
    PermanentError,
    TransientError,
)
from worker.results import ResultPublisher
from worker.settings import AppClient, Settings

log = get_logger("processor")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one job before handing its message back to SQS."""

    max_attempts: int
    job_timeout_s: float
    backoff_cap_s: int
    deferred_delay_s: int
    deferred_max_receives: int
    # Full jitter: waits drawn from [0, min(cap, base * 2^n)], so many jobs never retry in step.
    wait_base_s: float = 0.1
    wait_cap_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the settings describe."""
        return cls(
            max_attempts=settings.retry_max_attempts,
            job_timeout_s=settings.job_timeout_s,
            backoff_cap_s=settings.retry_backoff_cap_s,
            deferred_delay_s=settings.deferred_delay_s,
            deferred_max_receives=settings.deferred_max_receives,
        )

    def redelivery_delay_s(self, receive_count: int) -> int:
        """Exponential backoff through SQS visibility on the message's receive count."""
        return int(min(self.backoff_cap_s, 5 * 2 ** min(receive_count, 20)))


@dataclass
class ProcessorStats:
    """Counters for the shutdown line and the health endpoint."""

    by_outcome: Counter[str] = field(default_factory=Counter)


def _is_retryable_aws_error(error: BaseException) -> bool:
    if isinstance(error, BatchEntryError):
        return not error.sender_fault
    return isinstance(error, BotoCoreError | ClientError | aiohttp.ClientError | OSError)


class JobProcessor:
    """Takes one received message to its end: a published result and a delete, or a hand-back."""

    def __init__(
        self,
        settings: Settings,
        gateway: CognitoGateway,
        queue: JobQueue,
        publisher: ResultPublisher,
        policy: RetryPolicy,
    ) -> None:
        self._settings = settings
        self._gateway = gateway
        self._queue = queue
        self._publisher = publisher
        self._policy = policy
        self.stats = ProcessorStats()

    async def process(
        self, message: ReceivedMessage, on_cognito_call: Callable[[], None] = lambda: None
    ) -> str:
        """Handle one message; return how it ended (a result status, or ``handed_back``).

        ``on_cognito_call`` runs before the first Cognito call, so the service knows which jobs
        it may still hand back untouched when it is told to stop.
        """
        received_at = datetime.now(UTC)
        started = time.monotonic()
        result: JobResult | None = None
        published = False
        try:
            result = await self._outcome(message, received_at, on_cognito_call)
            if result is None:
                return "handed_back"
            await self._with_aws_retries(lambda: self._publisher.publish(result))
            published = True
            if result.status is ResultStatus.REJECTED and self._queue.has_dead_letter_queue:
                reason = result.error.message if result.error else "rejected"
                await self._with_aws_retries(lambda: self._queue.dead_letter(message, reason))
            if result.status is ResultStatus.REJECTED and not self._queue.has_dead_letter_queue:
                # No DLQ of ours: the queue's redrive policy moves it after maxReceiveCount.
                return result.status.value
            await self._with_aws_retries(lambda: self._queue.delete(message))
            return result.status.value
        except asyncio.CancelledError:
            # Told to stop: a published result still gets its delete, anything else goes back.
            if published:
                await asyncio.shield(self._queue.delete(message))
            else:
                await asyncio.shield(self._queue.hand_back(message, 0))
            raise
        except Exception as error:
            # SQS or SNS kept failing: leave the message to come back when its visibility ends.
            log.error(
                "job left on the queue",
                message_id=message.message_id,
                reason=f"{type(error).__name__}: {error}",
                published=published,
            )
            return "left"
        finally:
            outcome = result.status.value if result is not None else "handed_back"
            self.stats.by_outcome[outcome] += 1
            if result is not None:
                log.info(
                    "job finished",
                    job_id=result.job_id,
                    type=result.type.value if result.type else None,
                    client_id=result.client_id,
                    status=result.status.value,
                    error_code=result.error.code if result.error else None,
                    attempts=result.attempts,
                    duration_ms=round((time.monotonic() - started) * 1000, 1),
                    message_id=message.message_id,
                )

    async def _outcome(
        self,
        message: ReceivedMessage,
        received_at: datetime,
        on_cognito_call: Callable[[], None],
    ) -> JobResult | None:
        """The job's result, or None when the message was handed back for a later attempt."""
        try:
            job = decode_job(message.body)
        except MalformedJob as malformed:
            return _rejected(
                message, received_at, malformed.reason, malformed.job_id, malformed.job_type, None
            )
        job_id = job.job_id or message.message_id
        app_client = self._settings.client(job.client_id)
        if app_client is None:
            return _rejected(
                message,
                received_at,
                f"client_id: {job.client_id!r} is not a configured app client",
                job_id,
                JobType(job.type),
                job.client_id,
            )
        with masked(job_secrets(job, app_client)):
            return await self._run(job, job_id, app_client, message, received_at, on_cognito_call)

    async def _run(
        self,
        job: Job,
        job_id: str,
        app_client: AppClient,
        message: ReceivedMessage,
        received_at: datetime,
        on_cognito_call: Callable[[], None],
    ) -> JobResult | None:
        attempts = 0
        context: dict[str, object] = {
            "job_id": job_id,
            "type": job.type,
            "client_id": app_client.client_id,
        }

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "cognito call will be retried",
                **context,
                attempt=state.attempt_number,
                error_code=getattr(error, "code", type(error).__name__),
                wait_s=round(state.upcoming_sleep, 3),
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.max_attempts)
            | stop_after_delay(self._policy.job_timeout_s),
            wait=wait_random_exponential(
                multiplier=self._policy.wait_base_s, max=self._policy.wait_cap_s
            ),
            retry=retry_if_exception_type(TransientError),
            before_sleep=log_retry,
            reraise=True,
        )
        success: CognitoSuccess | None = None
        try:
            async with asyncio.timeout(self._policy.job_timeout_s):
                on_cognito_call()
                async for attempt in retrying:
                    with attempt:
                        attempts = attempt.retry_state.attempt_number
                        success = await self._gateway.execute(job, app_client, job_id)
        except TimeoutError:
            timeout = TransientError("JobTimeout", "job timeout reached")
            await self._hand_back(message, timeout, context, attempts)
            return None
        except PermanentError as failure:
            return _finished(job, job_id, app_client, message, received_at, attempts, failure)
        except DeferredError as deferred:
            if message.receive_count >= self._policy.deferred_max_receives:
                return _finished(job, job_id, app_client, message, received_at, attempts, deferred)
            await self._hand_back(
                message, deferred, context, attempts, self._policy.deferred_delay_s
            )
            return None
        except (TransientError, ConfigurationError) as error:
            await self._hand_back(message, error, context, attempts)
            return None
        assert success is not None  # the retry loop either set it or raised
        return _finished(job, job_id, app_client, message, received_at, attempts, success)

    async def _hand_back(
        self,
        message: ReceivedMessage,
        error: CognitoError,
        context: Mapping[str, object],
        attempts: int,
        delay_s: int | None = None,
    ) -> None:
        if delay_s is None:
            delay_s = self._policy.redelivery_delay_s(message.receive_count)
        level = log.error if isinstance(error, ConfigurationError) else log.warning
        level(
            "job handed back to the queue",
            **context,
            error_class=type(error).__name__,
            error_code=error.code,
            error_message=error.message,
            attempts=attempts,
            receive_count=message.receive_count,
            visible_again_in_s=delay_s,
        )
        await self._with_aws_retries(lambda: self._queue.hand_back(message, delay_s))

    async def _with_aws_retries(self, call: Callable[[], Awaitable[None]]) -> None:
        """Retry an SQS/SNS call through brief outages, inside the message's visibility."""
        retrying = AsyncRetrying(
            stop=stop_after_delay(self._settings.visibility_timeout_s / 3),
            wait=wait_random_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception(_is_retryable_aws_error),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await call()


def _finished(
    job: Job,
    job_id: str,
    app_client: AppClient,
    message: ReceivedMessage,
    received_at: datetime,
    attempts: int,
    outcome: CognitoSuccess | CognitoError,
) -> JobResult:
    common = {
        "job_id": job_id,
        "type": JobType(job.type),
        "client_id": app_client.client_id,
        "sqs_message_id": message.message_id,
        "attempts": attempts,
        "received_at": received_at,
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


def _rejected(
    message: ReceivedMessage,
    received_at: datetime,
    reason: str,
    job_id: str | None,
    job_type: JobType | None,
    client_id: str | None,
) -> JobResult:
    return JobResult(
        job_id=job_id,
        type=job_type,
        client_id=client_id,
        status=ResultStatus.REJECTED,
        sqs_message_id=message.message_id,
        error=JobError(code="InvalidJob", message=reason, retryable=False),
        attempts=0,
        received_at=received_at,
        finished_at=datetime.now(UTC),
    )
