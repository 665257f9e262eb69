"""A job's Cognito calls: each paced, measured and retried, and a report of what they came to.

The processor decides when a job calls Cognito and what follows; this module makes the calls not
yet done, in the job type's order, retrying transient errors within the job's attempts and
timeout (tenacity, the one retry owner of Cognito calls), and keeps track of whether Cognito may
have acted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from worker.cognito.gateway import OPERATIONS, CognitoGateway
from worker.cognito.outcomes import CognitoError, CognitoSuccess, ThrottledError, TransientError
from worker.cognito.ratelimit import CATEGORY_OF_OPERATION, RateLimiter
from worker.contract.jobs import Job, JobType, Lane
from worker.pipeline.decisions import (
    CREATED_BY_AN_EARLIER_ATTEMPT,
    CallReport,
    RetryPolicy,
    counts_as_done,
    may_have_acted,
)
from worker.settings import AppClient
from worker.telemetry.logs import get_logger
from worker.telemetry.metrics import Metrics

log = get_logger("processor")


@dataclass
class CallsSoFar:
    """What one delivery's Cognito calls have come to so far."""

    done: list[str]  # the operations carried out, this delivery or earlier ones
    may_have_acted: bool  # a request of this job's may have reached Cognito without an answer
    attempts: int = 0
    success: CognitoSuccess = field(default_factory=CognitoSuccess)

    def report(self, outcome: CognitoSuccess | CognitoError) -> CallReport:
        """The report of calls that ended with ``outcome``."""
        return CallReport(outcome, self.may_have_acted, self.attempts, tuple(self.done))


@dataclass(frozen=True, slots=True)
class _Call:
    """The job whose calls are being made, and what each call needs to know of its delivery."""

    job: Job
    job_id: str
    app_client: AppClient
    sent_at: float  # when the producer sent the message (0 if SQS did not say)
    on_call: Callable[[], None]  # told before each request leaves
    so_far: CallsSoFar
    lane: Lane  # whose turn comes first at the pacer


class CognitoCalls:
    """Makes a job's Cognito calls through the pacer, the gateway and the retry policy."""

    def __init__(
        self,
        gateway: CognitoGateway,
        limiter: RateLimiter,
        policy: RetryPolicy,
        metrics: Metrics,
    ) -> None:
        self._gateway = gateway
        self._limiter = limiter
        self._policy = policy
        self._metrics = metrics

    async def make(
        self,
        job: Job,
        job_id: str,
        app_client: AppClient,
        so_far: CallsSoFar,
        *,
        sent_at: float,
        on_call: Callable[[], None],
        lane: Lane = Lane.INTERACTIVE,
    ) -> CallReport:
        """Make the job's calls not yet done, retrying transient errors within its attempts and
        timeout; report how they ended (``so_far`` says it as they go)."""
        call = _Call(job, job_id, app_client, sent_at, on_call, so_far, lane)
        try:
            async with asyncio.timeout(self._policy.job_timeout_s):
                for operation in OPERATIONS[JobType(job.type)]:
                    if operation in so_far.done:
                        continue
                    answer = await self._with_retries(operation, call)
                    so_far.done.append(operation)
                    so_far.success = merged(so_far.success, answer)
            return so_far.report(so_far.success)
        except TimeoutError:
            # Cut off mid-call, Cognito may have acted; cut off while waiting, it cannot have.
            timeout = TransientError(
                "JobTimeout", "job timeout reached", ambiguous=so_far.may_have_acted
            )
            return so_far.report(timeout)
        except CognitoError as error:
            return so_far.report(error)

    async def _with_retries(self, operation: str, call: _Call) -> CognitoSuccess:
        """One of the job's operations, its transient errors retried; raise the last error."""
        async for attempt in self._retrying(operation):
            with attempt:
                return await self._attempt(operation, call)
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True

    async def _attempt(self, operation: str, call: _Call) -> CognitoSuccess:
        """One call; an existing user after an earlier attempt that may have created it is taken
        for the job's own only when Cognito says it was created after the job was sent."""
        try:
            return await self._once(operation, call)
        except CognitoError as error:
            # A definite answer: ``so_far.may_have_acted`` speaks of the earlier attempts now.
            if counts_as_done(error, operation, call.so_far.may_have_acted):
                own = await self._created_by_this_job(operation, call)
                if own is not None:
                    # The sub the lost answer carried, read back from the user itself.
                    return CognitoSuccess(
                        user_sub=own or None, detail=CREATED_BY_AN_EARLIER_ATTEMPT
                    )
            raise

    async def _created_by_this_job(self, operation: str, call: _Call) -> str | None:
        """The ``sub`` ("" if Cognito gave none) of the user a SignUp or AdminCreateUser found
        existing, if it is this job's own: created after the job was sent (and, for an import,
        still awaiting the password it sets next: a password is never set on a user the job did
        not create); None if it is not."""
        found = await self._gateway.status_if_created_since(
            call.app_client, call.job.username_sent, call.sent_at
        )
        if found is None:
            return None
        status, sub = found
        if operation == "AdminCreateUser" and status != "FORCE_CHANGE_PASSWORD":
            return None
        return sub or ""

    def _retrying(self, operation: str) -> AsyncRetrying:
        metrics = self._metrics

        def log_retry(state: RetryCallState) -> None:
            metrics.retries.labels(operation).inc()
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "cognito call will be retried",
                attempt=state.attempt_number,
                error_code=getattr(error, "code", type(error).__name__),
                wait_s=round(state.upcoming_sleep, 3),
            )

        return AsyncRetrying(
            stop=stop_after_attempt(self._policy.max_attempts)
            | stop_after_delay(self._policy.job_timeout_s),
            wait=wait_random_exponential(
                multiplier=self._policy.wait_base_s, max=self._policy.wait_cap_s
            ),
            retry=retry_if_exception_type(TransientError),
            before_sleep=log_retry,
            reraise=True,
        )

    async def _once(self, operation: str, call: _Call) -> CognitoSuccess:
        """One paced, measured Cognito call; keeps ``so_far.may_have_acted`` true for as long as
        Cognito may have acted, and only once a request has left."""
        metrics, so_far = self._metrics, call.so_far
        category = CATEGORY_OF_OPERATION[operation].value
        pacer = self._limiter.pacer(operation)
        # Waiting for the limiter is no failure; the job timeout bounds it, and the heartbeat
        # keeps the message invisible meanwhile. A stop or the timeout that ends the wait leaves
        # "may have acted" as it was: no request has left.
        metrics.limiter_wait.labels(category).observe(await pacer.acquire(call.lane))
        call.on_call()
        so_far.attempts += 1
        acted_before = so_far.may_have_acted
        # Set before the call and cleared only by an answer that proves nothing was done, so no
        # way out of the call (an error, a cancellation, the job timeout) can lose it.
        so_far.may_have_acted = True
        called = time.monotonic()
        try:
            success = await self._gateway.execute(call.job, call.app_client, call.job_id, operation)
        except CognitoError as error:
            if not may_have_acted(error):
                so_far.may_have_acted = acted_before
            metrics.cognito_calls.labels(operation, error.code).inc()
            if isinstance(error, ThrottledError):
                pacer.throttled()
                metrics.throttles.labels(category).inc()
            raise
        finally:
            metrics.cognito_latency.labels(operation).observe(time.monotonic() - called)
            metrics.limiter_rate.labels(category).set(pacer.rate_rps)
        metrics.cognito_calls.labels(operation, "ok").inc()
        return success


def merged(earlier: CognitoSuccess, later: CognitoSuccess) -> CognitoSuccess:
    """One success for a job of several calls: what each call learnt, the later ones winning."""
    return CognitoSuccess(
        user_sub=later.user_sub or earlier.user_sub,
        user_confirmed=(
            later.user_confirmed if later.user_confirmed is not None else earlier.user_confirmed
        ),
        code_delivery=later.code_delivery or earlier.code_delivery,
        detail=later.detail or earlier.detail,
    )
