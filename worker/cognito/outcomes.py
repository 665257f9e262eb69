"""How a Cognito call can end, and which error class each Cognito error belongs to.

The domain's error tree: the Cognito adapter translates SDK errors into these at the edge, and each
class maps to one decision (retry now, hand back later, fail the job, stop taking work).
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.contract.jobs import CodeDelivery


@dataclass(frozen=True, slots=True)
class CognitoSuccess:
    """The useful parts of a successful Cognito answer."""

    user_sub: str | None = None
    user_confirmed: bool | None = None
    code_delivery: CodeDelivery | None = None
    detail: str | None = None


class CognitoError(Exception):
    """A Cognito call that did not succeed. ``code`` is Cognito's exception name or our own.

    ``http_status``: the status of the HTTP answer the error came in, None when no answer came
    (a connection error, a timeout) or the error is the worker's own.
    """

    retryable = False
    http_status: int | None = None

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TransientError(CognitoError):
    """Raised for throttling, 5xx, connection errors and timeouts: retried with backoff.

    ``ambiguous``, for an error without an answer: the request may have left and been carried
    out (a read timeout, a reset), as opposed to never sent (a connect timeout). Whether an
    answer that did come means Cognito may have acted is the pipeline's rule
    (:func:`worker.pipeline.decisions.may_have_acted`).
    """

    retryable = True

    def __init__(self, code: str, message: str, *, ambiguous: bool = True) -> None:
        super().__init__(code, message)
        self.ambiguous = ambiguous


class ThrottledError(TransientError):
    """Raised for TooManyRequestsException: retried, and a sign the request rate is too high."""

    def __init__(self, code: str, message: str, *, ambiguous: bool = False) -> None:
        super().__init__(code, message, ambiguous=ambiguous)


class DeferredError(CognitoError):
    """Raised when a per-user limit was hit: retrying now would burn the user's hourly attempts."""

    retryable = True


class PermanentError(CognitoError):
    """Raised when the job itself cannot succeed (bad password, wrong code, user exists...)."""


class ConfigurationError(CognitoError):
    """Raised when the deployment is wrong (secret, client, pool, permissions, triggers).

    No job is to blame: the worker must stop taking work rather than fail jobs.
    """

    retryable = True


class UserPoolError(ConfigurationError):
    """Raised by the configuration probe when the app client's user pool is missing or its id
    is refused (``COGNITO_USER_POOL_ID``, or ``user_pool_id`` in ``COGNITO_CLIENTS``)."""


_TRANSIENT = {
    "InternalErrorException",
    "UnexpectedLambdaException",
    "CodeDeliveryFailureException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "RequestTimeout",
    "RequestTimeoutException",
}
_THROTTLING = {"TooManyRequestsException", "ThrottlingException", "Throttling"}
_DEFERRED = {"LimitExceededException", "TooManyFailedAttemptsException"}
#: Errors about the caller's credentials or permissions, not about what it called.
CREDENTIAL_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
    }
)
_CONFIGURATION = CREDENTIAL_ERRORS | {
    "ResourceNotFoundException",
    "InvalidLambdaResponseException",
    "InvalidSmsRoleAccessPolicyException",
    "InvalidSmsRoleTrustRelationshipException",
    "InvalidEmailRoleAccessPolicyException",
    "InvalidUserPoolConfigurationException",
}
_CONFIGURATION_MESSAGES = (
    "secret hash",
    "secrethash",
    "configured for secret",
    "not configured for secret",
    "exceeded daily email limit",
)
ALREADY_CONFIRMED_MESSAGE = "User cannot confirm because user status is not UNCONFIRMED"


def classify(code: str, message: str, http_status: int | None) -> type[CognitoError]:
    """The error class of a Cognito error response (``code`` is its ``__type``)."""
    lowered = message.lower()
    if code in _THROTTLING:
        return ThrottledError
    if code in _TRANSIENT or (http_status is not None and http_status >= 500):
        return TransientError
    # Before the per-user limits: the daily email quota comes as LimitExceededException too.
    if code in _CONFIGURATION or any(text in lowered for text in _CONFIGURATION_MESSAGES):
        return ConfigurationError
    if code in _DEFERRED:
        return DeferredError
    return PermanentError


def per_job_code(code: str, message: str) -> str:
    """A clearer code for errors whose meaning is in Cognito's message rather than its name."""
    if code == "NotAuthorizedException":
        lowered = message.lower()
        if "user is disabled" in lowered:
            return "UserDisabled"
        if "cannot be reset in the current state" in lowered:
            return "PasswordResetNotAllowed"
        if "incorrect username or password" in lowered:
            return "IncorrectCredentials"
    return code
