"""Cognito errors, classed as cognito.md's table says."""

import pytest

from worker.cognito.outcomes import (
    ConfigurationError,
    DeferredError,
    PermanentError,
    ThrottledError,
    TransientError,
    classify,
    per_job_code,
)


@pytest.mark.parametrize(
    ("code", "message", "status", "expected"),
    [
        ("TooManyRequestsException", "Rate exceeded", 400, ThrottledError),
        ("InternalErrorException", "", 500, TransientError),
        ("UnexpectedLambdaException", "", 400, TransientError),
        ("CodeDeliveryFailureException", "", 400, TransientError),
        ("SomethingNew", "", 503, TransientError),
        ("LimitExceededException", "Attempt limit exceeded, please try after some time.", 400,
         DeferredError),
        ("TooManyFailedAttemptsException", "", 400, DeferredError),
        ("UsernameExistsException", "User already exists", 400, PermanentError),
        ("InvalidPasswordException", "Password did not conform with policy", 400, PermanentError),
        ("CodeMismatchException", "", 400, PermanentError),
        ("ExpiredCodeException", "", 400, PermanentError),
        ("UserNotFoundException", "", 400, PermanentError),
        ("InvalidParameterException", "Invalid email address format.", 400, PermanentError),
        ("NotAuthorizedException", "User is disabled.", 400, PermanentError),
        ("NotAuthorizedException", "SecretHash does not match for the client: abc", 400,
         ConfigurationError),
        ("NotAuthorizedException", "Unable to verify secret hash for client abc", 400,
         ConfigurationError),
        ("NotAuthorizedException", "Client abc is configured for secret but secret was not "
         "received", 400, ConfigurationError),
        ("InvalidParameterException", "Client abc is not configured for secret", 400,
         ConfigurationError),
        ("ResourceNotFoundException", "User pool client abc does not exist.", 400,
         ConfigurationError),
        ("AccessDeniedException", "", 400, ConfigurationError),
        ("InvalidLambdaResponseException", "", 400, ConfigurationError),
        ("InvalidEmailRoleAccessPolicyException", "", 400, ConfigurationError),
        ("LimitExceededException", "Exceeded daily email limit for the operation or the account.",
         400, ConfigurationError),
    ],
)  # fmt: skip
def test_classify(code: str, message: str, status: int, expected: type) -> None:
    assert classify(code, message, status) is expected


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("User is disabled.", "UserDisabled"),
        ("User password cannot be reset in the current state.", "PasswordResetNotAllowed"),
        ("Something else", "NotAuthorizedException"),
    ],
)
def test_per_job_codes(message: str, code: str) -> None:
    assert per_job_code("NotAuthorizedException", message) == code
