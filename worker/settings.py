"""The worker's settings: read once from the environment, validated, frozen.

A bad value stops the process with one line naming the variable (see ``__main__``); no message ever
carries a setting's value, since some of them are secrets.
"""

from __future__ import annotations

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

from worker.jobs import ClientId

QueueUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
TopicArn = Annotated[str, StringConstraints(pattern=r"^arn:aws[\w-]*:sns:[\w-]+:\d{12}:[\w.-]+$")]
UserPoolId = Annotated[str, StringConstraints(pattern=r"^[\w-]+_[0-9a-zA-Z]+$")]


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

    @property
    def region(self) -> str:
        """The region in the pool id (``eu-west-1_AbC`` → ``eu-west-1``)."""
        return self.user_pool_id.split("_", 1)[0]


class SettingsError(Exception):
    """Raised by :meth:`Settings.from_env` for a missing or bad setting; names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class Settings(BaseModel):
    """Everything the worker reads from its environment. Field aliases are the variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    aws_region: str = Field(alias="AWS_REGION", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    jobs_queue_url: QueueUrl = Field(alias="JOBS_QUEUE_URL")
    results_topic_arn: TopicArn = Field(alias="RESULTS_TOPIC_ARN")
    dead_letter_queue_url: QueueUrl | None = Field(default=None, alias="DEAD_LETTER_QUEUE_URL")

    cognito_clients: tuple[AppClient, ...] = Field(alias="COGNITO_CLIENTS", min_length=1)

    max_jobs_in_flight: int = Field(default=64, alias="MAX_JOBS_IN_FLIGHT", ge=1, le=1000)
    receive_wait_s: int = Field(default=20, alias="RECEIVE_WAIT_S", ge=0, le=20)
    visibility_timeout_s: int = Field(default=60, alias="VISIBILITY_TIMEOUT_S", ge=10, le=43200)
    job_timeout_s: float = Field(default=30.0, alias="JOB_TIMEOUT_S", gt=0)
    retry_max_attempts: int = Field(default=5, alias="RETRY_MAX_ATTEMPTS", ge=1, le=20)
    retry_backoff_cap_s: int = Field(default=900, alias="RETRY_BACKOFF_CAP_S", ge=0, le=43200)
    deferred_delay_s: int = Field(default=900, alias="DEFERRED_DELAY_S", ge=0, le=43200)
    deferred_max_receives: int = Field(default=3, alias="DEFERRED_MAX_RECEIVES", ge=1, le=100)
    retry_max_deliveries: int = Field(default=5, alias="RETRY_MAX_DELIVERIES", ge=1, le=100)
    cognito_read_timeout_s: float = Field(default=10.0, alias="COGNITO_READ_TIMEOUT_S", gt=0, le=60)
    idempotency_store: IdempotencyBackend = Field(
        default=IdempotencyBackend.MEMORY, alias="IDEMPOTENCY_STORE"
    )
    idempotency_table: str | None = Field(
        default=None, alias="IDEMPOTENCY_TABLE", pattern=r"^[a-zA-Z0-9_.-]{3,255}$"
    )
    idempotency_ttl_s: int = Field(default=86400, alias="IDEMPOTENCY_TTL_S", ge=60)
    idempotency_lease_s: float = Field(default=30.0, alias="IDEMPOTENCY_LEASE_S", ge=5, le=300)
    breaker_cooldown_s: float = Field(default=30.0, alias="BREAKER_COOLDOWN_S", gt=0, le=3600)
    breaker_max_cooldown_s: float = Field(
        default=900.0, alias="BREAKER_MAX_COOLDOWN_S", gt=0, le=43200
    )
    rate_user_creation_rps: float = Field(
        default=50.0, alias="RATE_USER_CREATION_RPS", gt=0, le=10000
    )
    rate_user_account_recovery_rps: float = Field(
        default=30.0, alias="RATE_USER_ACCOUNT_RECOVERY_RPS", gt=0, le=10000
    )
    rate_user_resource_read_rps: float = Field(
        default=50.0, alias="RATE_USER_RESOURCE_READ_RPS", gt=0, le=10000
    )
    batch_linger_s: float = Field(default=0.1, alias="BATCH_LINGER_S", ge=0, le=5)
    shutdown_grace_s: float = Field(default=20.0, alias="SHUTDOWN_GRACE_S", ge=0, le=110)
    health_port: int = Field(default=8080, alias="HEALTH_PORT", ge=0, le=65535)
    log_level: LogLevel = Field(default=LogLevel.INFO, alias="LOG_LEVEL")
    log_format: LogFormat = Field(default=LogFormat.AUTO, alias="LOG_FORMAT")

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
        # A job's retries must end well before SQS shows its message to another consumer.
        if self.job_timeout_s + 10 > self.visibility_timeout_s:
            raise ValueError(
                "JOB_TIMEOUT_S must be at least 10 s shorter than VISIBILITY_TIMEOUT_S "
                f"({self.job_timeout_s:g} s vs {self.visibility_timeout_s} s)"
            )
        if self.idempotency_store is IdempotencyBackend.DYNAMODB and not self.idempotency_table:
            raise ValueError("IDEMPOTENCY_TABLE is required when IDEMPOTENCY_STORE=dynamodb")
        ids = [client.client_id for client in self.cognito_clients]
        if len(set(ids)) != len(ids):
            raise ValueError("COGNITO_CLIENTS names a client twice")
        return self

    @property
    def default_client(self) -> AppClient:
        """The client a job without ``client_id`` is for: the only, or first, configured one."""
        return self.cognito_clients[0]

    def client(self, client_id: str | None) -> AppClient | None:
        """The configured client with this id (the default for None), or None if not configured."""
        if client_id is None:
            return self.default_client
        return next((c for c in self.cognito_clients if c.client_id == client_id), None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build the settings from environment variables; raise :class:`SettingsError`."""
        values: dict[str, Any] = {k: v for k, v in environ.items() if v != ""}
        if "AWS_REGION" not in values and "AWS_DEFAULT_REGION" in values:
            values["AWS_REGION"] = values["AWS_DEFAULT_REGION"]
        values["COGNITO_CLIENTS"] = _clients_from_env(values)
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise _first_problem(error) from None


_SINGLE_CLIENT_VARIABLES = ("COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID", "COGNITO_CLIENT_SECRET")


def _clients_from_env(values: Mapping[str, str]) -> Any:
    if "COGNITO_CLIENTS" in values:
        if "COGNITO_CLIENT_ID" in values:
            raise SettingsError(
                "COGNITO_CLIENTS", "set either COGNITO_CLIENTS or COGNITO_CLIENT_ID, not both"
            )
        return values["COGNITO_CLIENTS"]
    for variable in _SINGLE_CLIENT_VARIABLES[:2]:
        if variable not in values:
            raise SettingsError(
                variable, "required (or configure several clients in COGNITO_CLIENTS)"
            )
    client = {
        "client_id": values["COGNITO_CLIENT_ID"],
        "user_pool_id": values["COGNITO_USER_POOL_ID"],
        "client_secret": values.get("COGNITO_CLIENT_SECRET"),
    }
    try:
        AppClient.model_validate(client)
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0])
        variable = {
            "client_id": "COGNITO_CLIENT_ID",
            "user_pool_id": "COGNITO_USER_POOL_ID",
        }.get(field, "COGNITO_CLIENT_SECRET")
        raise SettingsError(variable, _message(error.errors()[0])) from None
    return [client]


def _first_problem(error: ValidationError) -> SettingsError:
    detail = error.errors(include_url=False, include_input=False)[0]
    location = [str(part) for part in detail["loc"]]
    variable = location[0] if location else "settings"
    if variable == "settings" or not location:
        # Cross-field checks start their message with the variable they blame.
        variable, _, problem = _message(detail).partition(" ")
        return SettingsError(variable, problem)
    if variable == "COGNITO_CLIENTS" and len(location) > 1:
        field = ".".join(location[2:])
        return SettingsError(variable, f"client #{location[1]}: {field}: {_message(detail)}")
    return SettingsError(variable, _message(detail))


def _message(detail: Any) -> str:
    message = str(detail["msg"])
    if detail["type"] == "missing":
        return "required"
    return message.removeprefix("Value error, ")
