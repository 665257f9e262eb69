"""The worker's settings: read once from the environment, validated, frozen.

A bad value stops the process with one line naming the variable (see ``__main__``); no message ever
carries a setting's value, since some of them are secrets.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.contract.jobs import ClientId, JobType

QueueUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
TopicArn = Annotated[str, StringConstraints(pattern=r"^arn:aws[\w-]*:sns:[\w-]+:\d{12}:[\w.-]+$")]
KmsKeyArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[\w-]*:kms:[\w-]+:\d{12}:key/[\w-]+$")
]
UserPoolId = Annotated[str, StringConstraints(pattern=r"^[\w-]+_[0-9a-zA-Z]+$")]


#: The job types a queue accepts unless told otherwise: every type but the administrator's.
#: ``import_user`` creates users confirmed, with the attributes as given (``email_verified``)
#: and a password of the producer's choosing, and sends them nothing; ``invite_user`` creates
#: users outside the pool's sign-up rules and has Cognito send them a password. A deployment
#: enables either on purpose.
ADMINISTRATOR_JOB_TYPES = (JobType.IMPORT_USER, JobType.INVITE_USER)
INTERACTIVE_JOB_TYPES = tuple(t for t in JobType if t not in ADMINISTRATOR_JOB_TYPES)


class LogFormat(StrEnum):
    """How log lines are rendered."""

    AUTO = "auto"  # JSON, or the console renderer when stdout is a terminal
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    """The lowest level printed."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class IdempotencyBackend(StrEnum):
    """Where job claims and results are kept."""

    MEMORY = "memory"  # one process: duplicates caught within this task only
    DYNAMODB = "dynamodb"  # shared by every task


class AppClient(BaseModel):
    """One Cognito app client the worker may act for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: ClientId
    user_pool_id: UserPoolId
    client_secret: SecretStr | None = Field(
        default=None, description="None for an app client without a secret: no SecretHash is sent."
    )
    accepted_job_types: tuple[JobType, ...] | None = Field(
        default=None,
        description="The job types this client's jobs may have; None: ACCEPTED_JOB_TYPES.",
    )

    @property
    def region(self) -> str:
        """The region in the pool id (``eu-west-1_AbC`` → ``eu-west-1``)."""
        return self.user_pool_id.split("_", 1)[0]


class SettingsError(Exception):
    """Raised by :meth:`Settings.from_env` for missing or bad settings; names each variable.

    ``problems`` lists every bad setting found, one ``(variable, problem)`` pair each; no problem
    text carries a value, since some settings are secrets.
    """

    def __init__(self, variable: str, problem: str, *more: tuple[str, str]) -> None:
        self.problems = [(variable, problem), *more]
        super().__init__("; ".join(f"{name}: {text}" for name, text in self.problems))
        self.variable = variable
        self.problem = problem


_REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d$"


class Settings(BaseModel):
    """Everything the worker reads from its environment. Field aliases are the variable names.

    Each field's ``description`` is the one line ``run --help`` and docs/settings.md show.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    aws_region: str = Field(
        alias="AWS_REGION",
        pattern=_REGION_PATTERN,
        description="the Region; else AWS_DEFAULT_REGION, else the AWS_PROFILE's region, "
        "as the SDK finds it",
    )
    jobs_queue_url: QueueUrl = Field(
        alias="JOBS_QUEUE_URL", description="the jobs queue (`.fifo` for per-group order)"
    )
    results_topic_arn: TopicArn = Field(
        alias="RESULTS_TOPIC_ARN",
        description="the results topic (`.fifo` for ordered, deduplicated results)",
    )
    dead_letter_queue_url: QueueUrl | None = Field(
        default=None,
        alias="DEAD_LETTER_QUEUE_URL",
        description="where the worker moves malformed messages itself; without it they stay "
        "for the queue's redrive policy",
    )
    bulk_jobs_queue_url: QueueUrl | None = Field(
        default=None,
        alias="BULK_JOBS_QUEUE_URL",
        description="the bulk lane (imports, migrations): its jobs take only the Cognito calls "
        "that JOBS_QUEUE_URL's leave; unset, one lane",
    )
    bulk_dead_letter_queue_url: QueueUrl | None = Field(
        default=None,
        alias="BULK_DEAD_LETTER_QUEUE_URL",
        description="DEAD_LETTER_QUEUE_URL for the bulk lane's malformed messages",
    )
    interactive_reserved_share: float = Field(
        default=0.0,
        alias="INTERACTIVE_RESERVED_SHARE",
        ge=0,
        le=0.9,
        description="share of each budget bulk jobs never take, kept for interactive bursts "
        "(0: priority alone)",
    )

    cognito_clients: tuple[AppClient, ...] = Field(
        alias="COGNITO_CLIENTS",
        min_length=1,
        description='several app clients as JSON: `{"<client id>": {"user_pool_id": "...", '
        '"client_secret": "..."}, ...}`; the first is the default',
    )

    max_jobs_in_flight: int = Field(
        default=64,
        alias="MAX_JOBS_IN_FLIGHT",
        ge=1,
        le=1000,
        description="messages worked on at once",
    )
    receive_wait_s: int = Field(
        default=20, alias="RECEIVE_WAIT_S", ge=0, le=20, description="long-poll wait"
    )
    visibility_timeout_s: int = Field(
        default=60,
        alias="VISIBILITY_TIMEOUT_S",
        ge=10,
        le=43200,
        description="set on every receive; a heartbeat extends it for jobs still running",
    )
    job_timeout_s: float = Field(
        default=30.0,
        alias="JOB_TIMEOUT_S",
        gt=0,
        description="a job's Cognito time, retries and limiter waits included; at least 10 s "
        "under VISIBILITY_TIMEOUT_S",
    )
    retry_max_attempts: int = Field(
        default=5,
        alias="RETRY_MAX_ATTEMPTS",
        ge=1,
        le=20,
        description="Cognito calls per delivery for transient errors",
    )
    retry_backoff_cap_s: int = Field(
        default=900,
        alias="RETRY_BACKOFF_CAP_S",
        ge=0,
        le=43200,
        description="longest hand-back delay after retries ran out (5 * 2^failures s)",
    )
    deferred_delay_s: int = Field(
        default=900,
        alias="DEFERRED_DELAY_S",
        ge=0,
        le=43200,
        description="hand-back delay after a per-user limit (LimitExceededException)",
    )
    deferred_max_receives: int = Field(
        default=3,
        alias="DEFERRED_MAX_RECEIVES",
        ge=1,
        le=100,
        description="deliveries of the job that meet a per-user limit before it becomes a "
        "`failed` result",
    )
    retry_max_deliveries: int = Field(
        default=5,
        alias="RETRY_MAX_DELIVERIES",
        ge=1,
        le=100,
        description="deliveries of the job that end in transient errors before it becomes a "
        "retryable `failed` result and a DLQ copy",
    )
    cognito_read_timeout_s: float = Field(
        default=10.0,
        alias="COGNITO_READ_TIMEOUT_S",
        gt=0,
        le=60,
        description="read timeout of each Cognito call",
    )
    idempotency_store: IdempotencyBackend = Field(
        default=IdempotencyBackend.MEMORY,
        alias="IDEMPOTENCY_STORE",
        description="`memory` (one process) or `dynamodb` (shared by every task)",
    )
    idempotency_table: str | None = Field(
        default=None,
        alias="IDEMPOTENCY_TABLE",
        pattern=r"^[a-zA-Z0-9_.-]{3,255}$",
        description="the DynamoDB table (key `pk` string, TTL attribute `expires_at`)",
    )
    idempotency_ttl_s: int = Field(
        default=86400,
        alias="IDEMPOTENCY_TTL_S",
        ge=60,
        description="how long a finished job's result is kept for duplicate deliveries",
    )
    idempotency_lease_s: float = Field(
        default=30.0,
        alias="IDEMPOTENCY_LEASE_S",
        ge=5,
        le=300,
        description="a running job's claim; a crashed worker's claim lapses after this",
    )
    breaker_cooldown_s: float = Field(
        default=30.0,
        alias="BREAKER_COOLDOWN_S",
        gt=0,
        le=3600,
        description="first wait before probing a broken configuration (doubles while it lasts)",
    )
    breaker_max_cooldown_s: float = Field(
        default=900.0,
        alias="BREAKER_MAX_COOLDOWN_S",
        gt=0,
        le=43200,
        description="longest such wait",
    )
    rate_user_creation_rps: float = Field(
        default=50.0,
        alias="RATE_USER_CREATION_RPS",
        gt=0,
        le=10000,
        description="the whole fleet's budget for SignUp, ConfirmSignUp and AdminCreateUser; "
        "each task paces at its share (Cognito's default quota: 50)",
    )
    rate_user_account_recovery_rps: float = Field(
        default=30.0,
        alias="RATE_USER_ACCOUNT_RECOVERY_RPS",
        gt=0,
        le=10000,
        description="... for ForgotPassword, ConfirmForgotPassword and AdminSetUserPassword "
        "(quota: 30, fixed)",
    )
    rate_user_resource_read_rps: float = Field(
        default=50.0,
        alias="RATE_USER_RESOURCE_READ_RPS",
        gt=0,
        le=10000,
        description="... for ResendConfirmationCode (default quota: 50)",
    )
    cap_budgets_at_enforced_limits: bool = Field(
        default=False,
        alias="CAP_BUDGETS_AT_ENFORCED_LIMITS",
        description="read the rates Cognito enforces for the account (GetProvisionedLimit, which "
        "needs cognito-idp:GetProvisionedLimit) at start and every ENFORCED_LIMITS_INTERVAL_S, "
        "and pace at the lower of each and its RATE_* budget",
    )
    enforced_limits_interval_s: float = Field(
        default=300.0,
        alias="ENFORCED_LIMITS_INTERVAL_S",
        ge=10,
        le=86400,
        description="how often those rates are read again",
    )
    batch_linger_s: float = Field(
        default=0.1,
        alias="BATCH_LINGER_S",
        ge=0,
        le=5,
        description="how long a delete, visibility change or result waits for companions in a "
        "batch",
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        alias="SHUTDOWN_GRACE_S",
        ge=0,
        le=110,
        description="drain time after SIGTERM; + 1 s poll + 6 s flush must fit ECS's stopTimeout",
    )
    health_host: str = Field(
        default="127.0.0.1",
        alias="HEALTH_HOST",
        description="address the health and metrics endpoints listen on (0.0.0.0: every interface)",
    )
    health_port: int = Field(
        default=8080,
        alias="HEALTH_PORT",
        ge=0,
        le=65535,
        description="port of the health and metrics endpoints (0: any free port)",
    )
    field_encryption_key_arns: tuple[KmsKeyArn, ...] = Field(
        default=(),
        alias="FIELD_ENCRYPTION_KEY_ARNS",
        description="KMS key ARNs (comma-separated) a job's encrypted `password` or "
        "`confirmation_code` may be encrypted under; the worker decrypts with these alone "
        "(see docs/secrets.md)",
    )
    require_encrypted_fields: bool = Field(
        default=False,
        alias="REQUIRE_ENCRYPTED_FIELDS",
        description="true: a job carrying a password or code in plaintext is rejected "
        "(`PlaintextSecretField`) and its body copied nowhere; needs FIELD_ENCRYPTION_KEY_ARNS",
    )
    accepted_job_types: tuple[JobType, ...] = Field(
        default=INTERACTIVE_JOB_TYPES,
        alias="ACCEPTED_JOB_TYPES",
        min_length=1,
        description="job types the jobs queue accepts (comma-separated; `all` for every type); "
        "others are rejected (`JobTypeNotAccepted`). Default: all but `import_user` (confirmed "
        "users, no message to them) and `invite_user` (users made by the administrator's API); "
        "a client in COGNITO_CLIENTS may set its own `accepted_job_types`",
    )
    log_level: LogLevel = Field(
        default=LogLevel.INFO,
        alias="LOG_LEVEL",
        description="DEBUG, INFO, WARNING or ERROR, any case",
    )
    log_format: LogFormat = Field(
        default=LogFormat.AUTO,
        alias="LOG_FORMAT",
        description="json, console, or auto (console on a terminal, JSON otherwise); "
        "NO_COLOR turns colours off",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            upper = value.strip().upper()
            return "WARNING" if upper == "WARN" else upper
        return value

    @field_validator("log_format", "idempotency_store", mode="before")
    @classmethod
    def _any_case_choice(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("accepted_job_types", mode="before")
    @classmethod
    def _job_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [part.strip().lower() for part in value.split(",") if part.strip()]
            if names == ["all"]:
                return tuple(JobType)
            return tuple(names)
        return value

    @field_validator("field_encryption_key_arns", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("health_host")
    @classmethod
    def _an_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("expected an IP address (127.0.0.1, 0.0.0.0, ::)") from None
        return value

    @field_validator("cognito_clients", mode="before")
    @classmethod
    def _parse_clients(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            document = json.loads(value)
        except json.JSONDecodeError as error:
            # error.msg names the JSON problem only; the document (holding secrets) is not echoed.
            raise ValueError(f"not valid JSON ({error.msg})") from None
        if not isinstance(document, dict) or not document:
            raise ValueError(
                'expected a JSON object {"<client id>": {"user_pool_id": ..., '
                '"client_secret": ...}, ...}'
            )
        clients = []
        for client_id, config in document.items():
            if not isinstance(config, dict):
                raise ValueError(f"client {client_id!r}: expected an object")
            clients.append({"client_id": client_id, **config})
        return clients

    @model_validator(mode="after")
    def _check_budgets(self) -> Self:
        # Each problem is one line starting with the variable it blames (see _problems).
        problems = []
        # A job's retries must end well before SQS shows its message to another consumer.
        if self.job_timeout_s + 10 > self.visibility_timeout_s:
            problems.append(
                "JOB_TIMEOUT_S must be at least 10 s shorter than VISIBILITY_TIMEOUT_S "
                f"({self.job_timeout_s:g} s vs {self.visibility_timeout_s} s)"
            )
        if self.idempotency_store is IdempotencyBackend.DYNAMODB and not self.idempotency_table:
            problems.append("IDEMPOTENCY_TABLE is required when IDEMPOTENCY_STORE=dynamodb")
        if self.require_encrypted_fields and not self.field_encryption_key_arns:
            problems.append(
                "REQUIRE_ENCRYPTED_FIELDS needs FIELD_ENCRYPTION_KEY_ARNS (the keys that decrypt)"
            )
        if self.bulk_dead_letter_queue_url and not self.bulk_jobs_queue_url:
            problems.append("BULK_DEAD_LETTER_QUEUE_URL needs BULK_JOBS_QUEUE_URL (its lane)")
        if self.bulk_jobs_queue_url is not None and self.bulk_jobs_queue_url in (
            self.jobs_queue_url,
            self.dead_letter_queue_url,
        ):
            problems.append("BULK_JOBS_QUEUE_URL must be a queue of its own, not JOBS_QUEUE_URL's")
        ids = [client.client_id for client in self.cognito_clients]
        if len(set(ids)) != len(ids):
            problems.append("COGNITO_CLIENTS names a client twice")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def default_client(self) -> AppClient:
        """The client a job without ``client_id`` is for: the only, or first, configured one."""
        return self.cognito_clients[0]

    def accepts(self, app_client: AppClient, job_type: JobType) -> bool:
        """Whether jobs of ``job_type`` for ``app_client`` are accepted on the jobs queue."""
        return job_type in self.job_types_of(app_client)

    def job_types_of(self, app_client: AppClient) -> tuple[JobType, ...]:
        """The job types accepted for ``app_client``: its own list, else ACCEPTED_JOB_TYPES."""
        if app_client.accepted_job_types is not None:
            return app_client.accepted_job_types
        return self.accepted_job_types

    def client(self, client_id: str | None) -> AppClient | None:
        """The configured client with this id (the default for None), or None if not configured."""
        if client_id is None:
            return self.default_client
        return next((c for c in self.cognito_clients if c.client_id == client_id), None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build the settings from environment variables.

        Raise :class:`SettingsError` listing every bad setting at once, not just the first.
        """
        values: dict[str, Any] = {k: v for k, v in environ.items() if v != ""}
        problems: list[tuple[str, str]] = []
        if "AWS_REGION" not in values:
            try:
                region = values.get("AWS_DEFAULT_REGION") or sdk_region(values.get("AWS_PROFILE"))
            except SettingsError as error:
                problems += error.problems
                region = None
            if region:
                values["AWS_REGION"] = region
        try:
            values["COGNITO_CLIENTS"] = _clients_from_env(values)
            clients_ok = True
        except SettingsError as error:
            problems += error.problems
            clients_ok = False
        try:
            settings = cls.model_validate(values)
        except ValidationError as error:
            for variable, problem in _problems(error):
                if variable == "COGNITO_CLIENTS" and not clients_ok:
                    continue  # already said, in terms of the variables that were set
                problems.append((variable, problem))
        else:
            if not problems:
                return settings
        first, *more = _one_per_variable(problems)
        raise SettingsError(*first, *more)


def sdk_region(profile: str | None) -> str | None:
    """The Region the AWS SDK would use without AWS_REGION: AWS_DEFAULT_REGION, then the
    profile's ``region`` in the shared config file (``AWS_PROFILE``, ``AWS_CONFIG_FILE``)."""
    import botocore.exceptions
    import botocore.session

    try:
        region = botocore.session.Session(profile=profile).get_config_variable("region")
    except botocore.exceptions.ProfileNotFound:
        raise SettingsError("AWS_PROFILE", "no such profile in the AWS config files") from None
    except botocore.exceptions.BotoCoreError as error:
        raise SettingsError("AWS_CONFIG_FILE", f"unreadable ({type(error).__name__})") from None
    return str(region) if region else None


_SINGLE_CLIENT_VARIABLES = ("COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID", "COGNITO_CLIENT_SECRET")


def _clients_from_env(values: Mapping[str, str]) -> Any:
    if "COGNITO_CLIENTS" in values:
        if "COGNITO_CLIENT_ID" in values:
            raise SettingsError(
                "COGNITO_CLIENTS", "set either COGNITO_CLIENTS or COGNITO_CLIENT_ID, not both"
            )
        return values["COGNITO_CLIENTS"]
    missing = [
        (variable, "required (or configure several clients in COGNITO_CLIENTS)")
        for variable in _SINGLE_CLIENT_VARIABLES[:2]
        if variable not in values
    ]
    if missing:
        raise SettingsError(*missing[0], *missing[1:])
    client = {
        "client_id": values["COGNITO_CLIENT_ID"],
        "user_pool_id": values["COGNITO_USER_POOL_ID"],
        "client_secret": values.get("COGNITO_CLIENT_SECRET"),
    }
    try:
        AppClient.model_validate(client)
    except ValidationError as error:
        problems = []
        for detail in error.errors(include_url=False, include_input=False):
            variable = {
                "client_id": "COGNITO_CLIENT_ID",
                "user_pool_id": "COGNITO_USER_POOL_ID",
            }.get(str(detail["loc"][0]), "COGNITO_CLIENT_SECRET")
            problems.append((variable, _message(detail)))
        raise SettingsError(*problems[0], *problems[1:]) from None
    return [client]


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        location = [str(part) for part in detail["loc"]]
        variable = location[0] if location else "settings"
        if variable == "settings" or not location:
            # Cross-field checks write one line per problem, each starting with its variable.
            for line in _message(detail).splitlines():
                name, _, problem = line.partition(" ")
                problems.append((name, problem))
        elif variable == "COGNITO_CLIENTS" and len(location) > 1:
            field = ".".join(location[2:])
            problems.append((variable, f"client #{location[1]}: {field}: {_message(detail)}"))
        else:
            problems.append((variable, _message(detail)))
    return problems


def _one_per_variable(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first problem of each variable (a union type reports one per alternative)."""
    seen: dict[str, str] = {}
    for variable, problem in problems:
        seen.setdefault(variable, problem)
    return list(seen.items())


def _message(detail: Any) -> str:
    message = str(detail["msg"])
    if detail["type"] == "missing":
        return "required"
    return message.removeprefix("Value error, ")
