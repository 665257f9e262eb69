"""Every row of the README's error-classification table, from Cognito's answer to the decision.

Each case goes through :func:`worker.cognito.outcomes.classify` (as the gateway does with a real
answer) and then :func:`worker.pipeline.decisions.decide`, so the table is checked end to end
without a network.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from worker.cognito.gateway import CognitoGateway
from worker.cognito.outcomes import (
    CognitoError,
    CognitoSuccess,
    ConfigurationError,
    TransientError,
    classify,
    per_job_code,
)
from worker.contract.jobs import JobType, decode_job
from worker.pipeline.decisions import (
    CREATED_BY_AN_EARLIER_ATTEMPT,
    CallReport,
    Decision,
    Finish,
    GiveUp,
    HandBack,
    RetryPolicy,
    TripBreaker,
    counts_as_done,
    decide,
    may_have_acted,
)
from worker.pipeline.idempotency import JobHistory
from worker.settings import AppClient

POLICY = RetryPolicy(
    max_attempts=4,
    job_timeout_s=30,
    backoff_cap_s=900,
    deferred_delay_s=3600,
    deferred_max_receives=3,
    max_failed_deliveries=5,
)


def answer(code: str, message: str = "", status: int = 400) -> CognitoError:
    """The error the gateway raises for this Cognito answer."""
    error_class = classify(code, message, status)
    return error_class(per_job_code(code, message), message)


@dataclass(frozen=True)
class Row:
    table_class: str
    outcome: CognitoSuccess | CognitoError
    expected: Decision
    job_type: JobType = JobType.SIGN_UP
    history: JobHistory = field(default_factory=JobHistory)
    may_have_acted: bool = False


def failed_before(failures: int = 0, deferrals: int = 0) -> JobHistory:
    """The history of a job whose earlier deliveries ended so."""
    return JobHistory(failures=failures, deferrals=deferrals)


def handed_back(
    delay_s: int,
    outcome: CognitoError,
    *,
    failures: int = 0,
    deferrals: int = 0,
    acted: bool = False,
) -> HandBack:
    """A hand-back whose next delivery finds these counts."""
    return HandBack(delay_s, outcome, JobHistory(acted, failures, deferrals))


def misconfigured(code: str, message: str) -> ConfigurationError:
    """The configuration error the gateway raises for this answer (checked to be one)."""
    error = answer(code, message)
    assert isinstance(error, ConfigurationError), f"{code}: {message} is not a configuration error"
    return error


THROTTLED = answer("TooManyRequestsException", "Rate exceeded")
INTERNAL = answer("InternalErrorException", "internal error", 500)
BAD_GATEWAY = answer("SomethingNew", "bad gateway", 502)
LAMBDA_UNEXPECTED = answer("UnexpectedLambdaException", "trigger failed")
DELIVERY = answer("CodeDeliveryFailureException", "could not send")
RESET = TransientError("EndpointConnectionError", "connection reset", ambiguous=True)
TIMED_OUT = TransientError("JobTimeout", "job timeout reached", ambiguous=True)
ATTEMPT_LIMIT = answer(
    "LimitExceededException", "Attempt limit exceeded, please try after some time."
)
FAILED_ATTEMPTS = answer("TooManyFailedAttemptsException", "Too many failed attempts.")
EXISTS = answer("UsernameExistsException", "User already exists")
BAD_PASSWORD = answer("InvalidPasswordException", "Password did not conform with policy")
MISMATCH = answer("CodeMismatchException", "Invalid verification code provided")
EXPIRED = answer("ExpiredCodeException", "Invalid code provided, please request a code again.")
NOT_FOUND = answer("UserNotFoundException", "Username/client id combination not found.")
BAD_PARAMETER = answer("InvalidParameterException", "1 validation error detected: email")
DISABLED = answer("NotAuthorizedException", "User is disabled.")
NO_RESET = answer("NotAuthorizedException", "User password cannot be reset in the current state.")
WRONG_HASH = misconfigured("NotAuthorizedException", "Unable to verify secret hash for client abc")
NO_SECRET = misconfigured("InvalidParameterException", "Client abc is not configured for secret")
NO_POOL = misconfigured("ResourceNotFoundException", "User pool client abc does not exist.")
DENIED = misconfigured("AccessDeniedException", "not authorized to perform cognito-idp:SignUp")
BAD_TRIGGER = misconfigured("InvalidLambdaResponseException", "Invalid lambda response")
SMS_ROLE = misconfigured("InvalidSmsRoleAccessPolicyException", "Role does not have permission")
EMAIL_ROLE = misconfigured(
    "InvalidEmailRoleAccessPolicyException", "Cognito is not allowed to use SES"
)
EMAIL_LIMIT = misconfigured(
    "LimitExceededException", "Exceeded daily email limit for the operation"
)

ROWS = [
    # transient: retried in-process, then handed back with 5 x 2^failures s (capped), no result;
    # after RETRY_MAX_DELIVERIES of the job's own failed deliveries, a retryable failure + DLQ
    Row("transient", THROTTLED, handed_back(10, THROTTLED, failures=1)),
    Row("transient", INTERNAL, handed_back(20, INTERNAL, failures=2), history=failed_before(1)),
    Row("transient", BAD_GATEWAY, handed_back(10, BAD_GATEWAY, failures=1)),
    Row("transient", LAMBDA_UNEXPECTED, handed_back(10, LAMBDA_UNEXPECTED, failures=1)),
    Row("transient", DELIVERY, handed_back(10, DELIVERY, failures=1), JobType.FORGOT_PASSWORD),
    Row("transient", RESET, handed_back(10, RESET, failures=1, acted=True), may_have_acted=True),
    Row("transient", TIMED_OUT, handed_back(80, TIMED_OUT, failures=4), history=failed_before(3)),
    Row("transient", INTERNAL, GiveUp(INTERNAL, JobHistory()), history=failed_before(4)),
    # deferred per user: handed back for DEFERRED_DELAY_S, failed after DEFERRED_MAX_RECEIVES
    # of the job's own deferrals (hand-backs that were not its fault count nothing)
    Row(
        "deferred",
        ATTEMPT_LIMIT,
        handed_back(3600, ATTEMPT_LIMIT, deferrals=1),
        JobType.FORGOT_PASSWORD,
    ),
    Row(
        "deferred",
        FAILED_ATTEMPTS,
        handed_back(3600, FAILED_ATTEMPTS, failures=1, deferrals=2),
        history=failed_before(failures=1, deferrals=1),
    ),
    Row(
        "deferred",
        ATTEMPT_LIMIT,
        Finish(ATTEMPT_LIMIT),
        JobType.FORGOT_PASSWORD,
        history=failed_before(deferrals=2),
    ),
    # permanent: a failed result, the message deleted
    Row("permanent", EXISTS, Finish(EXISTS)),
    Row("permanent", BAD_PASSWORD, Finish(BAD_PASSWORD)),
    Row("permanent", MISMATCH, Finish(MISMATCH), JobType.CONFIRM_SIGN_UP),
    Row("permanent", EXPIRED, Finish(EXPIRED), JobType.CONFIRM_FORGOT_PASSWORD),
    Row("permanent", NOT_FOUND, Finish(NOT_FOUND), JobType.FORGOT_PASSWORD),
    Row("permanent", BAD_PARAMETER, Finish(BAD_PARAMETER)),
    Row("permanent", EXISTS, Finish(EXISTS), JobType.IMPORT_USER, may_have_acted=True),
    # decided by message (the already-confirmed case is turned into a success by the gateway)
    Row("by message", DISABLED, Finish(DISABLED), JobType.FORGOT_PASSWORD),
    Row("by message", NO_RESET, Finish(NO_RESET), JobType.FORGOT_PASSWORD),
    Row(
        "by message",
        CognitoSuccess(user_confirmed=True, detail="already_confirmed"),
        Finish(CognitoSuccess(user_confirmed=True, detail="already_confirmed")),
        JobType.CONFIRM_SIGN_UP,
    ),
    # configuration: the breaker trips, the job goes back untouched, nothing counted against it
    Row("configuration", WRONG_HASH, TripBreaker(WRONG_HASH, JobHistory())),
    Row("configuration", NO_SECRET, TripBreaker(NO_SECRET, JobHistory())),
    Row("configuration", NO_POOL, TripBreaker(NO_POOL, JobHistory())),
    Row("configuration", DENIED, TripBreaker(DENIED, JobHistory())),
    Row("configuration", BAD_TRIGGER, TripBreaker(BAD_TRIGGER, JobHistory())),
    Row("configuration", SMS_ROLE, TripBreaker(SMS_ROLE, JobHistory())),
    Row("configuration", EMAIL_ROLE, TripBreaker(EMAIL_ROLE, JobHistory())),
    Row(
        "configuration",
        EMAIL_LIMIT,
        TripBreaker(EMAIL_LIMIT, failed_before(failures=3)),
        history=failed_before(failures=3),
    ),
    # "a SignUp whose answer was lost counts as done" is decided before the report, by asking
    # Cognito when the user was created (the processor): an existing user that reaches decide()
    # is someone else's, whatever an earlier attempt may have done
    Row("lost answer", EXISTS, Finish(EXISTS), may_have_acted=True),
    Row("lost answer", NOT_FOUND, Finish(NOT_FOUND), JobType.FORGOT_PASSWORD, may_have_acted=True),
    # ... and the processor's own success for it finishes like any other
    Row(
        "lost answer",
        CognitoSuccess(detail=CREATED_BY_AN_EARLIER_ATTEMPT),
        Finish(CognitoSuccess(detail=CREATED_BY_AN_EARLIER_ATTEMPT)),
        may_have_acted=True,
    ),
]


@pytest.mark.parametrize(
    ("operation", "may_have_acted", "expected"),
    [
        ("SignUp", True, True),
        ("AdminCreateUser", True, True),
        ("SignUp", False, False),  # no request of ours could have created it
        ("ForgotPassword", True, False),  # an existing user proves nothing for other calls
    ],
)
def test_only_an_existing_user_after_a_creating_request_is_worth_asking_about(
    operation: str, may_have_acted: bool, expected: bool
) -> None:
    assert counts_as_done(EXISTS, operation, may_have_acted) is expected


@pytest.mark.parametrize(
    "row", ROWS, ids=[f"{row.table_class}-{getattr(row.outcome, 'code', 'ok')}" for row in ROWS]
)
def test_each_row_of_the_classification_table(row: Row) -> None:
    report = CallReport(row.outcome, row.may_have_acted, attempts=1)
    decision = decide(report, job_type=row.job_type, history=row.history, policy=POLICY)
    assert decision == row.expected


def test_success_always_finishes() -> None:
    success = CognitoSuccess(user_sub="sub-1", user_confirmed=False)
    for job_type in JobType:
        decision = decide(
            CallReport(success, may_have_acted=True, attempts=2),
            job_type=job_type,
            history=failed_before(failures=4, deferrals=2),
            policy=POLICY,
        )
        assert decision == Finish(success)


def test_redelivery_backoff_doubles_up_to_the_cap() -> None:
    delays = [POLICY.redelivery_delay_s(count) for count in range(1, 10)]
    assert delays == [10, 20, 40, 80, 160, 320, 640, 900, 900]


def client_error(code: str, status: int, message: str = "") -> ClientError:
    """What botocore raises for an HTTP answer: an AWS error, or for an error page (no AWS error
    in it) the status as its code."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SignUp",
    )


def ending_name(ending: Exception) -> str:
    if isinstance(ending, ClientError):
        response: Any = ending.response
        return f"{response['Error']['Code']}-{response['ResponseMetadata']['HTTPStatusCode']}"
    return type(ending).__name__


class AnsweringClient:
    """The Cognito client, whose SignUp ends with the given exception."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def sign_up(self, **_request: Any) -> dict[str, Any]:
        raise self.error


SIGN_UP = decode_job(
    '{"version": 1, "type": "sign_up", "username": "ann", "password": "Corr3ct-Horse!",'
    ' "user_attributes": {"email": "ann@example.com"}}'
)


@pytest.mark.parametrize(
    ("ending", "acted"),
    [
        # Sent, no answer: Cognito may have carried it out.
        (EndpointConnectionError(endpoint_url="http://cognito"), True),
        (ReadTimeoutError(endpoint_url="http://cognito"), True),
        # Never sent.
        (ConnectTimeoutError(endpoint_url="http://cognito"), False),
        # A gateway in front of Cognito lost or did not wait for Cognito's answer.
        (client_error("502", 502, "Bad Gateway"), True),
        (client_error("504", 504, "Gateway Timeout"), True),
        # Cognito's errors after it created the user.
        (client_error("CodeDeliveryFailureException", 400), True),
        (client_error("UnexpectedLambdaException", 400), True),
        # The server's word that the request failed: an AWS error or an error page.
        (client_error("InternalErrorException", 500), False),
        (client_error("500", 500, "Internal Server Error"), False),
        (client_error("503", 503, "Service Unavailable"), False),
        (client_error("TooManyRequestsException", 400), False),
        (client_error("UsernameExistsException", 400), False),
        (client_error("InvalidParameterException", 400), False),
    ],
    ids=lambda value: ending_name(value) if isinstance(value, Exception) else str(value),
)
async def test_which_endings_of_a_request_mean_cognito_may_have_acted(
    ending: Exception, acted: bool
) -> None:
    gateway = CognitoGateway({"us-east-1": AnsweringClient(ending)})  # type: ignore[dict-item]
    app_client = AppClient(client_id="client1", user_pool_id="us-east-1_pool", client_secret=None)
    with pytest.raises(CognitoError) as raised:
        await gateway.execute(SIGN_UP, app_client, "job-1")
    assert may_have_acted(raised.value) is acted
