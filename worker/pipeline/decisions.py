"""What becomes of a job once its Cognito calls have ended: pure rules, no I/O.

The processor makes the calls (with in-process retries of transient errors) and reports how they
ended; :func:`decide` turns that report into one decision, which the processor carries out. Every
row of the README's error-classification table is a branch here, and is unit-tested as such.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from worker.cognito.outcomes import (
    CognitoError,
    CognitoSuccess,
    ConfigurationError,
    DeferredError,
    PermanentError,
    TransientError,
)
from worker.contract.jobs import JobType
from worker.pipeline.idempotency import JobHistory
from worker.settings import Settings

#: The ``detail`` of a sign-up whose user an earlier, unanswered attempt of the same job created.
CREATED_BY_AN_EARLIER_ATTEMPT = "created_by_an_earlier_attempt"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one job before handing its message back to SQS."""

    max_attempts: int
    job_timeout_s: float
    backoff_cap_s: int
    deferred_delay_s: int
    deferred_max_receives: int
    max_failed_deliveries: int = 5
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
            max_failed_deliveries=settings.retry_max_deliveries,
        )

    def redelivery_delay_s(self, failures: int) -> int:
        """Exponential backoff through SQS visibility on the job's own failed deliveries."""
        return int(min(self.backoff_cap_s, 5 * 2 ** min(failures, 20)))


@dataclass(frozen=True, slots=True)
class CallReport:
    """How one delivery's Cognito calls ended.

    ``may_have_acted``: some attempt of this job, in this delivery or an earlier one, may have
    reached Cognito and been carried out without its answer reaching us (a reset, a read timeout,
    a kill, or the job timeout cutting a call off).
    """

    outcome: CognitoSuccess | CognitoError
    may_have_acted: bool
    attempts: int
    done: tuple[str, ...] = ()  # operations of a two-call job carried out so far


@dataclass(frozen=True, slots=True)
class Finish:
    """Publish this outcome as the job's result and delete the message."""

    outcome: CognitoSuccess | CognitoError


@dataclass(frozen=True, slots=True)
class HandBack:
    """Give the message back to SQS, visible again after ``delay_s``; publish nothing yet.

    ``history`` is what the next delivery finds: the job's own failures and deferrals counted.
    """

    delay_s: int
    error: CognitoError
    history: JobHistory


@dataclass(frozen=True, slots=True)
class TripBreaker:
    """Our configuration is wrong: open the app client's breaker and hand the message back.

    The job is not to blame: ``history`` counts no failure or deferral against it.
    """

    error: ConfigurationError
    history: JobHistory


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Transient errors in every allowed delivery: publish a retryable failure, move to the DLQ.

    ``history`` starts the count afresh, so a job redriven from the DLQ gets its deliveries again.
    """

    error: CognitoError
    history: JobHistory


Decision = Finish | HandBack | TripBreaker | GiveUp


#: HTTP answers that come from a gateway in front of Cognito, not from Cognito: the request
#: reached it and Cognito's own answer was lost behind it (502) or not waited for (504).
ANSWER_LOST_BEHIND_A_GATEWAY = frozenset({502, 504})
#: Cognito errors that come after the user was created: the code could not be sent, or a
#: trigger that runs on the way (a custom message) failed.
FAILED_AFTER_ACTING = frozenset({"CodeDeliveryFailureException", "UnexpectedLambdaException"})


def may_have_acted(error: CognitoError) -> bool:
    """Whether a request that ended in ``error`` may have been carried out by Cognito.

    A request sent with no answer (a reset, a read timeout) may have been; one never sent (a
    connect timeout) was not. An answer is the server's word: an AWS error (throttling,
    InternalErrorException, any 4xx) or an error page (a 500 or 503 of a server or an emulator)
    says the request failed, and a UsernameExistsException after it is somebody's user, not
    proof of our own. Only a gateway's 502 or 504 (Cognito's answer lost behind it) and the two
    errors Cognito gives after creating the user count as "may have acted". The worker's own
    kill or job timeout mid-call is handled where the call is made: no answer came.
    """
    if error.http_status is None:
        return isinstance(error, TransientError) and error.ambiguous
    if error.http_status in ANSWER_LOST_BEHIND_A_GATEWAY:
        return True
    return error.code in FAILED_AFTER_ACTING


def counts_as_done(error: CognitoError, operation: str, may_have_acted: bool) -> bool:
    """Whether this error may say the job's own earlier, unanswered attempt already did the work:
    a user that exists after a request of ours that may have created it. The processor then asks
    Cognito whether the user was created after the job was sent (else it is someone else's).
    """
    return (
        may_have_acted
        and operation in {"SignUp", "AdminCreateUser"}
        and error.code == "UsernameExistsException"
    )


def decide(
    report: CallReport, *, job_type: JobType, history: JobHistory, policy: RetryPolicy
) -> Decision:
    """The one decision for a job whose calls ended as ``report`` says, after ``history``."""
    outcome = report.outcome
    seen = replace(history, may_have_acted=report.may_have_acted, done=report.done)
    if isinstance(outcome, CognitoSuccess):
        return Finish(outcome)
    if isinstance(outcome, ConfigurationError):
        # No job is to blame: fail none, stop taking work for this client.
        return TripBreaker(outcome, seen)
    if isinstance(outcome, PermanentError):
        # A user that an earlier, unanswered attempt created is told apart from someone else's
        # by asking Cognito (the processor does, before it reports): here it is a failure.
        return Finish(outcome)
    if isinstance(outcome, DeferredError):
        # A per-user limit: retrying soon would burn the user's hourly attempts.
        deferrals = history.deferrals + 1
        if deferrals >= policy.deferred_max_receives:
            return Finish(outcome)
        return HandBack(policy.deferred_delay_s, outcome, replace(seen, deferrals=deferrals))
    if isinstance(outcome, TransientError):
        failures = history.failures + 1
        if failures >= policy.max_failed_deliveries:
            return GiveUp(outcome, replace(seen, failures=0, deferrals=0))
        delay_s = policy.redelivery_delay_s(failures)
        return HandBack(delay_s, outcome, replace(seen, failures=failures))
    # A CognitoError outside the tree is a bug in the adapter: fail the job, loudly, not silently.
    return Finish(outcome)
