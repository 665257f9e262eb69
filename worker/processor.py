"""One message's way through the worker: decode, claim, call Cognito with retries, publish, delete.

A message is deleted in exactly one place, :meth:`JobProcessor.process`, after its result was
stored and published. Every other way out hands the message back to SQS, so nothing is lost; and a
job id already done is answered from the idempotency store, so nothing is done twice in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

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
from worker.breaker import CircuitBreakers, hint
from worker.cognito import OPERATIONS, CognitoGateway, job_secrets
from worker.consumer import JobQueue, ReceivedMessage
from worker.idempotency import Claim, ClaimState, IdempotencyStore, job_key
from worker.jobs import (
    Job,
    JobError,
    JobResult,
    JobType,
    MalformedJob,
    ResultStatus,
    SignUpJob,
    decode_job,
)
from worker.logs import get_logger
from worker.logs import job_secrets as masked
from worker.metrics import Metrics
from worker.outcomes import (
    CognitoError,
    CognitoSuccess,
    ConfigurationError,
    DeferredError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from worker.ratelimit import CATEGORY_OF_OPERATION, RateLimiter
from worker.results import ResultPublisher
from worker.settings import AppClient, Settings

log = get_logger("processor")
T = TypeVar("T")

HANDED_BACK = "handed_back"
LEFT = "left"


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
    """Counters for the shutdown line."""

    by_outcome: Counter[str] = field(default_factory=Counter)


def _is_retryable_aws_error(error: BaseException) -> bool:
    if isinstance(error, BatchEntryError):
        return not error.sender_fault
    return isinstance(error, BotoCoreError | ClientError | aiohttp.ClientError | OSError)


class _HandBack(Exception):
    """Internal: the job goes back to the queue, visible again after ``delay_s``."""

    def __init__(
        self, delay_s: int, error: CognitoError, *, ambiguous: bool, attempts: int
    ) -> None:
        super().__init__(error.code)
        self.delay_s = delay_s
        self.error = error
        self.ambiguous = ambiguous
        self.attempts = attempts


class JobProcessor:
    """Takes one received message to its end: a published result and a delete, or a hand-back."""

    def __init__(
        self,
        settings: Settings,
        gateway: CognitoGateway,
        queue: JobQueue,
        publisher: ResultPublisher,
        store: IdempotencyStore,
        breakers: CircuitBreakers,
        policy: RetryPolicy,
        limiter: RateLimiter,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._gateway = gateway
        self._queue = queue
        self._publisher = publisher
        self._store = store
        self._breakers = breakers
        self._policy = policy
        self._limiter = limiter
        self._metrics = metrics
        self.stats = ProcessorStats()

    async def process(
        self, message: ReceivedMessage, on_cognito_call: Callable[[], None] = lambda: None
    ) -> str:
        """Handle one message; return how it ended (a result status, ``handed_back`` or ``left``).

        ``on_cognito_call`` runs before the first Cognito call, so the service knows which jobs
        it may still hand back untouched when it is told to stop.
        """
        received_at = datetime.now(UTC)
        started = time.monotonic()
        result: JobResult | None = None
        outcome = HANDED_BACK
        published = False
        try:
            result = await self._outcome(message, received_at, on_cognito_call)
            if result is None:
                return outcome
            await self._with_aws_retries(lambda: self._publisher.publish(result))
            published = True
            outcome = result.status.value
            if result.status is ResultStatus.REJECTED:
                if not self._queue.has_dead_letter_queue:
                    # No DLQ of ours: the queue's redrive policy moves it after maxReceiveCount.
                    return outcome
                reason = result.error.message if result.error else "rejected"
                await self._with_aws_retries(lambda: self._queue.dead_letter(message, reason))
            await self._with_aws_retries(lambda: self._queue.delete(message))
            return outcome
        except asyncio.CancelledError:
            # Told to stop: a published result still gets its delete, anything else goes back.
            if published:
                await asyncio.shield(self._queue.delete(message))
            else:
                await asyncio.shield(self._queue.hand_back(message, 0))
            raise
        except Exception as error:
            # SQS, SNS or the store kept failing: the message comes back when its visibility ends,
            # and a stored result is republished then without calling Cognito again.
            outcome = LEFT
            log.error(
                "job left on the queue",
                message_id=message.message_id,
                reason=f"{type(error).__name__}: {error}",
                published=published,
            )
            return outcome
        finally:
            self.stats.by_outcome[outcome] += 1
            if result is not None:
                self._metrics.jobs.labels(
                    result.type.value if result.type else "unknown", result.status.value
                ).inc()
                if published:
                    self._metrics.job_latency.observe(time.monotonic() - started)
                log.info(
                    "job finished",
                    job_id=result.job_id,
                    type=result.type.value if result.type else None,
                    client_id=result.client_id,
                    status=result.status.value,
                    error_code=result.error.code if result.error else None,
                    detail=result.detail,
                    attempts=result.attempts,
                    duration_ms=round((time.monotonic() - started) * 1000, 1),
                    message_id=message.message_id,
                    published=published,
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
        context: dict[str, object] = {
            "job_id": job_id,
            "type": job.type,
            "client_id": app_client.client_id,
        }
        if self._breakers.is_open(app_client.client_id):
            # Our configuration is broken for this client: the job is not to blame.
            delay = math.ceil(self._breakers.seconds_left(app_client.client_id)) + 1
            await self._hand_back(message, delay, context, reason="breaker_open")
            return None
        key = job_key(app_client.client_id, job_id)
        claim = await self._with_aws_retries(
            lambda: self._store.claim(key, self._settings.idempotency_lease_s)
        )
        if claim.state is ClaimState.COMPLETED:
            assert claim.result is not None
            log.info("duplicate delivery: republishing the stored result", **context)
            return JobResult.model_validate_json(claim.result)
        if claim.state is ClaimState.BUSY:
            delay = math.ceil(claim.lease_left_s) + 1
            await self._hand_back(message, delay, context, reason="owned_elsewhere")
            return None
        with masked(job_secrets(job, app_client)):
            try:
                async with self._heartbeat(message, key, claim):
                    result = await self._run(
                        job, job_id, app_client, message, received_at, claim, on_cognito_call
                    )
            except asyncio.CancelledError:
                # Stopped mid-job: free the claim at once for the next delivery, which is told
                # that Cognito may have acted.
                await asyncio.shield(self._store.release(key, claim.token, ambiguous=True))
                raise
            except _HandBack as back:
                ambiguous = back.ambiguous
                await self._with_aws_retries(
                    lambda: self._store.release(key, claim.token, ambiguous=ambiguous)
                )
                await self._hand_back(
                    message, back.delay_s, context, back.error, attempts=back.attempts
                )
                return None
            await self._with_aws_retries(
                lambda: self._store.complete(
                    key, claim.token, result.to_message(), self._settings.idempotency_ttl_s
                )
            )
            return result

    async def _run(
        self,
        job: Job,
        job_id: str,
        app_client: AppClient,
        message: ReceivedMessage,
        received_at: datetime,
        claim: Claim,
        on_cognito_call: Callable[[], None],
    ) -> JobResult:
        """Call Cognito (with retries); return the result or raise :class:`_HandBack`."""
        attempts = 0
        in_call = False
        operation = OPERATIONS[JobType(job.type)]
        category = CATEGORY_OF_OPERATION[operation].value
        pacer = self._limiter.pacer(operation)
        metrics = self._metrics
        # Whether Cognito may already have acted on this job (an earlier delivery or attempt
        # that ended without an answer).
        ambiguous = claim.interrupted

        def log_retry(state: RetryCallState) -> None:
            metrics.retries.labels(operation).inc()
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "cognito call will be retried",
                job_id=job_id,
                type=job.type,
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

        def finished(outcome: CognitoSuccess | CognitoError) -> JobResult:
            self._breakers.succeeded(app_client.client_id)
            return _finished(job, job_id, app_client, message, received_at, attempts, outcome)

        try:
            async with asyncio.timeout(self._policy.job_timeout_s):
                async for attempt in retrying:
                    with attempt:
                        # Waiting for the limiter is no failure; the job timeout bounds it, and
                        # the heartbeat keeps the message invisible meanwhile.
                        metrics.limiter_wait.labels(category).observe(await pacer.acquire())
                        attempts = attempt.retry_state.attempt_number
                        on_cognito_call()
                        called = time.monotonic()
                        in_call = True
                        try:
                            success = await self._gateway.execute(job, app_client, job_id)
                        except CognitoError as error:
                            metrics.cognito_calls.labels(operation, error.code).inc()
                            if isinstance(error, ThrottledError):
                                pacer.throttled()
                                metrics.throttles.labels(category).inc()
                            if isinstance(error, TransientError):
                                ambiguous = ambiguous or error.ambiguous
                            raise
                        else:
                            metrics.cognito_calls.labels(operation, "ok").inc()
                        finally:
                            in_call = False
                            metrics.cognito_latency.labels(operation).observe(
                                time.monotonic() - called
                            )
                            metrics.limiter_rate.labels(category).set(pacer.rate_rps)
            return finished(success)
        except TimeoutError:
            timeout = TransientError("JobTimeout", "job timeout reached")
            delay = self._policy.redelivery_delay_s(message.receive_count)
            # Cut off mid-call, Cognito may have acted; cut off while waiting, it cannot have.
            raise _HandBack(
                delay, timeout, ambiguous=ambiguous or in_call, attempts=attempts
            ) from None
        except PermanentError as failure:
            if (
                ambiguous
                and isinstance(job, SignUpJob)
                and failure.code == "UsernameExistsException"
            ):
                # An earlier attempt created the user and its answer was lost: our own success.
                return finished(CognitoSuccess(detail="created_by_an_earlier_attempt"))
            return finished(failure)
        except DeferredError as deferred:
            if message.receive_count >= self._policy.deferred_max_receives:
                return finished(deferred)
            raise _HandBack(
                self._policy.deferred_delay_s, deferred, ambiguous=ambiguous, attempts=attempts
            ) from None
        except ConfigurationError as misconfigured:
            cooldown = self._breakers.trip(app_client.client_id, misconfigured)
            log.error(
                "configuration error: this client takes no work until a probe passes",
                client_id=app_client.client_id,
                error_code=misconfigured.code,
                error_message=misconfigured.message,
                hint=hint(misconfigured),
                probe_in_s=round(cooldown, 1),
            )
            raise _HandBack(
                math.ceil(cooldown) + 1, misconfigured, ambiguous=ambiguous, attempts=attempts
            ) from None
        except TransientError as error:
            delay = self._policy.redelivery_delay_s(message.receive_count)
            raise _HandBack(delay, error, ambiguous=ambiguous, attempts=attempts) from None

    @contextlib.asynccontextmanager
    async def _heartbeat(
        self, message: ReceivedMessage, key: str, claim: Claim
    ) -> AsyncIterator[None]:
        """While the job runs, keep its message invisible and its claim leased."""

        async def beat() -> None:
            visibility = self._settings.visibility_timeout_s
            lease = self._settings.idempotency_lease_s
            interval = min(visibility, lease) / 3
            while True:
                await asyncio.sleep(interval)
                try:
                    await self._queue.hand_back(message, visibility)
                    await self._store.extend(key, claim.token, lease)
                except Exception as error:  # a missed beat is survivable; the next may pass
                    log.warning("heartbeat failed", message_id=message.message_id, error=str(error))

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            # Stopped before the result is published and the message deleted.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _hand_back(
        self,
        message: ReceivedMessage,
        delay_s: int,
        context: Mapping[str, object],
        error: CognitoError | None = None,
        *,
        reason: str | None = None,
        attempts: int = 0,
    ) -> None:
        self._metrics.handed_back.labels(
            reason or (error.code if error is not None else "unknown")
        ).inc()
        level = log.error if isinstance(error, ConfigurationError) else log.warning
        level(
            "job handed back to the queue",
            **context,
            reason=reason or (type(error).__name__ if error else None),
            error_class=type(error).__name__ if error else None,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            attempts=attempts,
            receive_count=message.receive_count,
            visible_again_in_s=delay_s,
        )
        await self._with_aws_retries(lambda: self._queue.hand_back(message, delay_s))

    async def _with_aws_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry an SQS/SNS/DynamoDB call through brief outages, inside the visibility."""
        retrying = AsyncRetrying(
            stop=stop_after_delay(self._settings.visibility_timeout_s / 3),
            wait=wait_random_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception(_is_retryable_aws_error),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True


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
