"""The wire contract: the jobs producers send, the results the worker publishes, and their schema.

A job is one flat JSON object per SQS message; a result is one JSON object per SNS message. Field
limits mirror Cognito's own API model, so a job Cognito would refuse as malformed is rejected here,
with a reason, before any call is made.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Secret,
    StringConstraints,
    Tag,
    TypeAdapter,
)

from worker.contract.patterns import COGNITO_NAME, JOB_ID

# Cognito's own patterns (botocore's cognito-idp model), anchored: the API matches the whole value.
Username = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=COGNITO_NAME)]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\w+]+$")]


# A job id is copied into every result, log line and store key: printable characters only
# (letters, marks, numbers, punctuation, symbols and the space), so no control, format or
# non-character (NUL, U+202E, U+FFFF) reaches a subscriber, a terminal or SQS.
JobId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=JOB_ID)]
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=COGNITO_NAME)]
AttributeValue = Annotated[str, StringConstraints(max_length=2048)]
MetadataValue = Annotated[str, StringConstraints(max_length=131072)]
# A label a producer gives a group of jobs (an import id): copied into each result and published as
# the SNS attribute ``batch``. ASCII letters, digits and ``._:-`` only, so it is safe in a filter
# policy, a queue name, a file name and a log line as it is.
BatchLabel = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
Password = Secret[Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^\S+$")]]
ConfirmationCode = Secret[
    Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^\S+$")]
]
# Standard base64's alphabet (RFC 4648 section 4): an Encryption SDK message carried in JSON. Its
# padding and length are checked when it is decoded.
Base64Text = Annotated[
    str, StringConstraints(min_length=4, max_length=200_000, pattern=r"^[A-Za-z0-9+/=]+$")
]


class JobType(StrEnum):
    """What a job asks: five operations that take a SecretHash, and two of an administrator's."""

    SIGN_UP = "sign_up"
    CONFIRM_SIGN_UP = "confirm_sign_up"
    RESEND_CONFIRMATION_CODE = "resend_confirmation_code"
    FORGOT_PASSWORD = "forgot_password"  # noqa: S105 - a job type, not a password
    CONFIRM_FORGOT_PASSWORD = "confirm_forgot_password"  # noqa: S105 - a job type
    IMPORT_USER = "import_user"
    INVITE_USER = "invite_user"


class _Strict(BaseModel):
    # Unknown fields are rejected: a typo in a producer must not silently drop data.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class EncryptedSecret(_Strict):
    """A secret field encrypted by the producer: an AWS Encryption SDK message, in base64.

    Encrypted under a KMS key the worker accepts, with the encryption context and envelope
    :mod:`worker.contract.fields` describes (binding it to the job's id, client and field).
    """

    encrypted: Base64Text = Field(
        description="The AWS Encryption SDK message (base64) carrying the field's value."
    )


def _secret_form(value: Any) -> str:
    # Decided by the value's shape, so that an error names the one form that was sent.
    return _ENCRYPTED_TAG if isinstance(value, dict | EncryptedSecret) else _PLAIN_TAG


_PLAIN_TAG = "plain"
_ENCRYPTED_TAG = "encrypted"
_SECRET_FIELDS = frozenset({"password", "confirmation_code"})
PasswordField = Annotated[
    Annotated[Password, Tag(_PLAIN_TAG)] | Annotated[EncryptedSecret, Tag(_ENCRYPTED_TAG)],
    Discriminator(_secret_form),
]
ConfirmationCodeField = Annotated[
    Annotated[ConfirmationCode, Tag(_PLAIN_TAG)] | Annotated[EncryptedSecret, Tag(_ENCRYPTED_TAG)],
    Discriminator(_secret_form),
]


def plain_secret(value: Password | ConfirmationCode | EncryptedSecret) -> str:
    """The plaintext of a secret field; raise ValueError if it is still encrypted."""
    if isinstance(value, EncryptedSecret):
        raise ValueError("the field is still encrypted: decrypt the job first")
    secret: str = value.get_secret_value()
    return secret


class UserContext(_Strict):
    """The end user's context, captured by the producer (sent to Cognito as UserContextData)."""

    ip_address: Annotated[str, StringConstraints(max_length=131072)] | None = None
    encoded_data: Annotated[str, StringConstraints(max_length=131072)] | None = None


def _an_integer(value: Any) -> Any:
    # Literal[1] alone lets True and 1.0 through (they equal 1 in Python): the contract says 1.
    if type(value) is not int:
        raise ValueError("must be the integer 1")
    return value


class _JobBase(_Strict):
    version: Annotated[Literal[1], BeforeValidator(_an_integer)] = Field(
        description="Contract version; always the integer 1."
    )
    job_id: JobId | None = Field(
        default=None, description="Producer-chosen id; the SQS MessageId stands in when absent."
    )
    client_id: ClientId | None = Field(
        default=None, description="Which configured app client; default: the first configured."
    )
    client_metadata: dict[AttributeName, MetadataValue] = Field(
        default_factory=dict,
        description="Passed to Cognito's Lambda triggers as ClientMetadata (never secrets).",
    )
    user_context: UserContext | None = None
    batch: BatchLabel | None = Field(
        default=None,
        description="A label for a group of jobs (e.g. an import id), copied into the result and "
        "published as the SNS message attribute 'batch'.",
    )

    @property
    def username_sent(self) -> str:
        """The exact Username string sent to Cognito (and hashed)."""
        username: str = getattr(self, "username")  # noqa: B009 - every concrete job has one
        return username


class SignUpJob(_JobBase):
    """Register a new user (Cognito SignUp)."""

    type: Literal["sign_up"]
    username: Username
    password: PasswordField
    user_attributes: dict[AttributeName, AttributeValue] = Field(default_factory=dict)
    validation_data: dict[AttributeName, AttributeValue] = Field(default_factory=dict)


class ConfirmSignUpJob(_JobBase):
    """Confirm a registration with the code the user received (Cognito ConfirmSignUp)."""

    type: Literal["confirm_sign_up"]
    username: Username
    confirmation_code: ConfirmationCodeField
    force_alias_creation: bool | None = None


class ResendConfirmationCodeJob(_JobBase):
    """Send the sign-up confirmation code again (Cognito ResendConfirmationCode)."""

    type: Literal["resend_confirmation_code"]
    username: Username


class ForgotPasswordJob(_JobBase):
    """Start a password reset: Cognito sends the user a code (Cognito ForgotPassword)."""

    type: Literal["forgot_password"]
    username: Username


class ConfirmForgotPasswordJob(_JobBase):
    """Finish a password reset with the code and the new password (ConfirmForgotPassword)."""

    type: Literal["confirm_forgot_password"]
    username: Username
    confirmation_code: ConfirmationCodeField
    password: PasswordField


class ImportUserJob(_JobBase):
    """Create a user ready to sign in with this password, sending the user nothing.

    AdminCreateUser (``MessageAction=SUPPRESS``), then AdminSetUserPassword (``Permanent``): two
    calls, IAM-signed, with no SecretHash. For migrations, where users already have a password.
    """

    type: Literal["import_user"]
    username: Username
    password: PasswordField
    user_attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict,
        description="Set as given, e.g. email_verified: 'true' (no verification message is sent).",
    )
    validation_data: dict[AttributeName, AttributeValue] = Field(default_factory=dict)
    user_context: None = Field(
        default=None, description="Not accepted: the administrator's API takes no user context."
    )


DeliveryMedium = Literal["EMAIL", "SMS"]


def _by_email() -> list[DeliveryMedium]:
    return ["EMAIL"]


class InviteUserJob(_JobBase):
    """Invite a user: Cognito creates the user with a temporary password and sends it to the
    user by email or SMS, with the pool's invitation message (AdminCreateUser, IAM-signed, no
    SecretHash). The user is FORCE_CHANGE_PASSWORD until the first sign-in sets a password."""

    type: Literal["invite_user"]
    username: Username
    user_attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict,
        description="Set as given; the invitation goes to `email` or `phone_number`, which "
        "Cognito needs verified to send it (e.g. email_verified: 'true').",
    )
    validation_data: dict[AttributeName, AttributeValue] = Field(default_factory=dict)
    delivery_mediums: list[DeliveryMedium] = Field(
        default_factory=_by_email,
        min_length=1,
        max_length=2,
        description="How Cognito sends the invitation: EMAIL (default), SMS, or both.",
    )
    user_context: None = Field(
        default=None, description="Not accepted: the administrator's API takes no user context."
    )


Job = Annotated[
    SignUpJob
    | ConfirmSignUpJob
    | ResendConfirmationCodeJob
    | ForgotPasswordJob
    | ConfirmForgotPasswordJob
    | ImportUserJob
    | InviteUserJob,
    Field(discriminator="type"),
]
JOB_ADAPTER: TypeAdapter[Job] = TypeAdapter(Job)
#: Every job model, one per job type.
JOB_MODELS: tuple[type[_JobBase], ...] = (
    SignUpJob,
    ConfirmSignUpJob,
    ResendConfirmationCodeJob,
    ForgotPasswordJob,
    ConfirmForgotPasswordJob,
    ImportUserJob,
    InviteUserJob,
)
_BATCH_ADAPTER: TypeAdapter[str] = TypeAdapter(BatchLabel)
_JOB_ID_ADAPTER: TypeAdapter[str] = TypeAdapter(JobId)
# One character of each describable field, checked against the field's own pattern.
_CHARACTER_ADAPTERS: dict[str, TypeAdapter[str]] = {
    "username": TypeAdapter(Annotated[str, StringConstraints(pattern=COGNITO_NAME)]),
    "job_id": TypeAdapter(Annotated[str, StringConstraints(pattern=JOB_ID)]),
}


class Lane(StrEnum):
    """Which jobs queue a job came in on: live users' jobs, or bulk work such as an import.

    Interactive jobs take Cognito's calls ahead of bulk ones; bulk jobs use what is left.
    """

    INTERACTIVE = "interactive"  # JOBS_QUEUE_URL
    BULK = "bulk"  # BULK_JOBS_QUEUE_URL


class ResultStatus(StrEnum):
    """How a job ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class CodeDelivery(BaseModel):
    """Where Cognito sent a code; the destination is masked by Cognito."""

    destination: str | None = None
    delivery_medium: str | None = None
    attribute_name: str | None = None


class JobError(BaseModel):
    """Why a job failed or was rejected."""

    code: str = Field(description="Cognito's exception name, or the worker's own code.")
    message: str
    retryable: bool = Field(description="Whether sending the same job again later may succeed.")


class JobResult(BaseModel):
    """The outcome of one job, as published to the results topic."""

    model_config = ConfigDict(frozen=True)

    version: Literal[1] = 1
    job_id: str | None = Field(description="The job's id; null only when a rejected body had none.")
    type: JobType | None = Field(description="The job type; null when it could not be read.")
    client_id: str | None
    batch: str | None = Field(default=None, description="The job's batch label, when it had one.")
    lane: Lane = Field(
        default=Lane.INTERACTIVE,
        description="The lane the job came in on: `interactive` (JOBS_QUEUE_URL) or `bulk`.",
    )
    status: ResultStatus
    sqs_message_id: str
    user_sub: str | None = None
    user_confirmed: bool | None = None
    code_delivery: CodeDelivery | None = None
    detail: str | None = Field(
        default=None, description="A note on a success, e.g. 'already_confirmed'."
    )
    error: JobError | None = None
    attempts: int = Field(description="Cognito calls made for this job by this delivery.")
    received_at: datetime
    finished_at: datetime

    def to_message(self) -> str:
        """The JSON body published to SNS, with what SQS refuses raw (see :func:`encode_job`)
        written as JSON escapes: a raw U+FFFF would be dropped on its way to a subscribed queue."""
        return _SQS_UNSAFE.sub(_escaped, self.model_dump_json())


class MalformedJob(Exception):
    """Raised by :func:`decode_job` when a message body is not a valid job.

    ``reason`` is safe to publish: it names fields and rules, never the values sent.
    """

    def __init__(
        self,
        reason: str,
        *,
        job_id: str | None,
        job_type: JobType | None,
        batch: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id
        self.job_type = job_type
        self.batch = batch  # the batch label, when it is a valid one


_MAX_REASON_ERRORS = 5
_MAX_REASON_CHARS = 1000  # results must fit SNS's 256 KB whatever a producer sent
_MAX_LOCATION_CHARS = 64


def decode_job(body: str) -> Job:
    """Parse and validate one SQS message body; raise :class:`MalformedJob` when it is not a job."""
    try:
        document, duplicates = parse_json_object(body)
    except (ValueError, RecursionError) as error:
        # ValueError: JSONDecodeError, and integers too long to convert (over 4300 digits).
        reason = f"body is not JSON: {_json_reason(error)}"
        raise MalformedJob(reason, job_id=None, job_type=None) from None
    if not isinstance(document, dict):
        raise MalformedJob(
            f"body is a JSON {type(document).__name__}, not an object", job_id=None, job_type=None
        )
    job_id = _readable_job_id(document.get("job_id")) if "job_id" not in duplicates else None
    job_type = _readable_type(document.get("type")) if "type" not in duplicates else None
    batch = _readable_batch(document.get("batch")) if "batch" not in duplicates else None
    if duplicates:
        # JSON parsers disagree on which of two equal keys wins: a producer's validator may have
        # checked the one the worker would not use (a plaintext password beside an encrypted one).
        names = ", ".join(sorted(repr(name[:_MAX_LOCATION_CHARS]) for name in duplicates))
        reason = f"duplicate key {names}: a JSON object names each field once"
        raise MalformedJob(
            _printable(reason[:_MAX_REASON_CHARS]), job_id=job_id, job_type=job_type, batch=batch
        )
    if job_type is None:
        # Checked here rather than by pydantic, whose message would quote the value sent.
        expected = ", ".join(t.value for t in JobType)
        reason = f"type: missing or unknown; expected one of {expected}"
        raise MalformedJob(reason, job_id=job_id, job_type=None, batch=batch)
    try:
        return JOB_ADAPTER.validate_python(document)
    except ValueError as error:  # pydantic.ValidationError is a ValueError
        raise MalformedJob(
            validation_reason(error, document), job_id=job_id, job_type=job_type, batch=batch
        ) from None


def _json_reason(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return "a number too long to read"


def _encodable(value: str) -> bool:
    """Whether the text survives UTF-8 (JSON's \\ud800 escapes decode to lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json_object(body: str) -> tuple[Any, set[str]]:
    """The JSON document in ``body``, and the keys that occur twice in one of its objects.

    Raise ValueError (or RecursionError) when the body is not JSON.
    """
    duplicates: set[str] = set()

    def without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for key, value in pairs:
            if key in document:
                duplicates.add(key)
            document[key] = value
        return document

    return json.loads(body, object_pairs_hook=without_repeats), duplicates


def _readable_job_id(value: Any) -> str | None:
    try:
        return _JOB_ID_ADAPTER.validate_python(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _readable_batch(value: Any) -> str | None:
    try:
        return _BATCH_ADAPTER.validate_python(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _readable_type(value: Any) -> JobType | None:
    try:
        return JobType(value) if isinstance(value, str) else None
    except ValueError:
        return None


def validation_reason(error: ValueError, document: Any = None) -> str:
    """A validation error as field paths and rules only: its inputs could be passwords or codes.

    With the ``document`` validated, a pattern broken by a field that is not secret (a username,
    a job id) also says where: the first character outside the pattern, by position and code
    point, never the value itself.
    """
    errors_method = getattr(error, "errors", None)
    if errors_method is None:
        return "invalid job"
    details = errors_method(include_url=False, include_input=False, include_context=False)
    parts = []
    for detail in details[:_MAX_REASON_ERRORS]:
        location = ".".join(_readable_location(detail["loc"])) or "body"
        refused = _first_refused_character(detail, document)
        if refused is not None:
            parts.append(f"{location}: {refused}")
            continue
        parts.append(f"{location}: {detail['msg'].removeprefix('Value error, ')}")
    if len(details) > _MAX_REASON_ERRORS:
        parts.append(f"and {len(details) - _MAX_REASON_ERRORS} more")
    return _printable("; ".join(parts)[:_MAX_REASON_CHARS])


# The fields whose value may be described character by character in a reason (never a secret
# one), and what each allows, in words.
_DESCRIBABLE_FIELDS = {"username": Username, "job_id": JobId}
_PATTERN_OF = {"username": COGNITO_NAME, "job_id": JOB_ID}
_ALLOWED_IN_WORDS = {
    "username": "a username is letters, marks, symbols, numbers and punctuation, no white space",
    "job_id": "a job id is letters, marks, symbols, numbers, punctuation and the space",
}


def _first_refused_character(detail: Any, document: Any) -> str | None:
    """``character 4 (U+0020 SPACE) is not allowed: ...`` for a top-level field that broke its
    pattern, naming the first character outside it by position and code point, never the value
    itself; None for any other error."""
    location = detail["loc"]
    if detail["type"] != "string_pattern_mismatch" or len(location) != 2:
        return None
    field = location[-1]
    value = document.get(field) if isinstance(document, dict) else None
    if field not in _DESCRIBABLE_FIELDS or not isinstance(value, str):
        return None
    adapter = _CHARACTER_ADAPTERS[field]
    for position, character in enumerate(value, start=1):
        try:
            adapter.validate_python(character)
        except ValueError:
            name = unicodedata.name(character, "")
            described = f"U+{ord(character):04X}" + (f" {name}" if name else "")
            pattern = _PATTERN_OF[field]
            return (
                f"character {position} ({described}) is not allowed: "
                f"{_ALLOWED_IN_WORDS[field]} (pattern '{pattern}')"
            )
    return None


def _readable_location(location: tuple[Any, ...]) -> list[str]:
    """The field path, without the tag naming which form of a secret field was sent."""
    parts: list[str] = []
    for part in location:
        if parts and parts[-1] in _SECRET_FIELDS and part in (_PLAIN_TAG, _ENCRYPTED_TAG):
            continue
        parts.append(str(part)[:_MAX_LOCATION_CHARS])
    return parts


def _printable(text: str) -> str:
    """Field names are quoted as sent: keep the reason to text SQS and SNS accept as is."""
    return "".join(c if c.isprintable() and _encodable(c) else "?" for c in text)


# Characters SQS refuses in a message body even inside a JSON string: lone surrogates (which UTF-8
# cannot carry) and the two non-characters. JSON escapes carry them instead.
_SQS_UNSAFE = re.compile(r"[\ud800-\udfff\ufffe\uffff]")


def encode_job(job: Job) -> str:
    """The job's wire form: the JSON body a producer sends, with the real secrets.

    Pydantic masks :class:`~pydantic.Secret` fields in ``model_dump_json`` (``"**********"``): right
    for logs, wrong for the queue. ``decode_job(encode_job(job)) == job`` for every valid job.
    """
    document = _reveal(job.model_dump(mode="python", exclude_none=True, exclude_defaults=True))
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return _SQS_UNSAFE.sub(_escaped, body)


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _reveal(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _reveal(item) for key, item in value.items()}
    return value
