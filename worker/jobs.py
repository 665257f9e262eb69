"""The job and result models at their published path: ``from worker.jobs import SignUpJob``.

Producers' code imports them from here (docs/producers.md). They live in
:mod:`worker.contract.jobs` with the rest of the wire contract; nothing inside the worker imports
this module, so it stays a door for users and not a second home.
"""

from worker.contract.jobs import (
    CodeDelivery,
    ConfirmForgotPasswordJob,
    ConfirmSignUpJob,
    EncryptedSecret,
    ForgotPasswordJob,
    ImportUserJob,
    InviteUserJob,
    Job,
    JobError,
    JobResult,
    JobType,
    Lane,
    MalformedJob,
    ResendConfirmationCodeJob,
    ResultStatus,
    SignUpJob,
    UserContext,
    decode_job,
    encode_job,
)

__all__ = [
    "CodeDelivery",
    "ConfirmForgotPasswordJob",
    "ConfirmSignUpJob",
    "EncryptedSecret",
    "ForgotPasswordJob",
    "ImportUserJob",
    "InviteUserJob",
    "Job",
    "JobError",
    "JobResult",
    "JobType",
    "Lane",
    "MalformedJob",
    "ResendConfirmationCodeJob",
    "ResultStatus",
    "SignUpJob",
    "UserContext",
    "decode_job",
    "encode_job",
]
