"""What becomes of a job once its Cognito calls have ended: pure rules, no I/O.

The processor makes the calls (with in-process retries of transient errors) and reports how they
ended; :func:`decide` turns that report into one decision, which the processor carries out. Every
row of the README's error-classification table is a branch here, and is unit-tested as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.jobs import JobType
from worker.outcomes import (
    CognitoError,
    CognitoSuccess,
    ConfigurationError,
    DeferredError,
    PermanentError,
    TransientError,
)
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


@dataclass(frozen=True, slots=True)
class Finish:
    """Publish this outcome as the job's result and delete the message."""

    outcome: CognitoSuccess | CognitoError


@dataclass(frozen=True, slots=True)
class HandBack:
    """Give the message back to SQS, visible again after ``delay_s``; publish nothing yet."""

    delay_s: int
    error: CognitoError


@dataclass(frozen=True, slots=True)
class TripBreaker:
    """Our configuration is wrong: open the app client's breaker and hand the message back."""

    error: ConfigurationError


Decision = Finish | HandBack | TripBreaker


def decide(
    report: CallReport, *, job_type: JobType, receive_count: int, policy: RetryPolicy
) -> Decision:
    """The one decision for a job whose calls ended as ``report`` says."""
    outcome = report.outcome
    if isinstance(outcome, CognitoSuccess):
        return Finish(outcome)
    if isinstance(outcome, ConfigurationError):
        # No job is to blame: fail none, stop taking work for this client.
        return TripBreaker(outcome)
    if isinstance(outcome, PermanentError):
        if (
            report.may_have_acted
            and job_type is JobType.SIGN_UP
            and outcome.code == "UsernameExistsException"
        ):
            # An earlier attempt created the user and its answer was lost: our own success.
            return Finish(CognitoSuccess(detail=CREATED_BY_AN_EARLIER_ATTEMPT))
        return Finish(outcome)
    if isinstance(outcome, DeferredError):
        # A per-user limit: retrying soon would burn the user's hourly attempts.
        if receive_count >= policy.deferred_max_receives:
            return Finish(outcome)
        return HandBack(policy.deferred_delay_s, outcome)
    if isinstance(outcome, TransientError):
        return HandBack(policy.redelivery_delay_s(receive_count), outcome)
    # A CognitoError outside the tree is a bug in the adapter: fail the job, loudly, not silently.
    return Finish(outcome)
