"""``cognito-worker check``: the configuration and every AWS resource it names, checked read-only.

One line per check (``ok``, ``warn`` or ``FAIL``; ``skip``, saying why, for a check that
depends on one that failed), then a summary; the exit code is 1 when any
check failed. Nothing is created or changed: queues, topic and table are only described, and each
app client is checked with the gateway's side-effect-free probe (ConfirmSignUp for a username that
cannot exist, which Cognito answers only after checking the client, the pool and the SecretHash).
Each field-decryption key (FIELD_ENCRYPTION_KEY_ARNS) is described: it must exist, be Enabled and
be a symmetric ENCRYPT_DECRYPT key. ``kms:Decrypt`` itself cannot be tried without a ciphertext
made under the key, and its DryRun is not relied on (moto ignores it, so no test could show it
works): the first encrypted job exercises it, and a refusal opens the breaker, whose probe
rechecks that job's ciphertext until KMS decrypts it.
No line carries a secret: AWS error texts go through the same redaction as the logs.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

import aioboto3
import aiobotocore.session
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from worker.cognito.gateway import CognitoGateway
from worker.cognito.limits import EnforcedLimit, enforced_limit, teach_provisioned_limits
from worker.cognito.outcomes import ConfigurationError, TransientError
from worker.cognito.ratelimit import QuotaCategory
from worker.settings import AppClient, IdempotencyBackend, Settings
from worker.telemetry.logs import scrub

EXIT_OK = 0
EXIT_FAILED = 1

# Cognito's default request-rate quotas per account and Region (design notes, "Quotas in Amazon
# Cognito"): (quota, whether it can be raised). The RATE_* settings are the whole fleet's budget.
DOCUMENTED_QUOTAS_RPS: dict[str, tuple[float, bool]] = {
    "RATE_USER_CREATION_RPS": (50.0, True),
    "RATE_USER_ACCOUNT_RECOVERY_RPS": (30.0, False),
    "RATE_USER_RESOURCE_READ_RPS": (50.0, True),
}
# The RATE_* budgets and the quota category each paces.
_BUDGET_CATEGORIES = {
    "RATE_USER_CREATION_RPS": QuotaCategory.USER_CREATION,
    "RATE_USER_ACCOUNT_RECOVERY_RPS": QuotaCategory.USER_ACCOUNT_RECOVERY,
    "RATE_USER_RESOURCE_READ_RPS": QuotaCategory.USER_RESOURCE_READ,
}
_TIMEOUTS = AioConfig(
    retries={"total_max_attempts": 2}, connect_timeout=3, read_timeout=10, max_pool_connections=4
)
_AWS_ERRORS = (BotoCoreError, ClientError, aiohttp.ClientError, OSError)

Status = Literal["ok", "warn", "skip", "FAIL"]
# The lanes' names in the lines: each lane's jobs queue, and its dead-letter queue.
INTERACTIVE = "jobs queue"
BULK = "bulk jobs queue"
_DLQ_NAMES = {INTERACTIVE: "dead-letter queue", BULK: "bulk dead-letter queue"}


@dataclass(frozen=True, slots=True)
class CheckLine:
    """One check's verdict and what it found."""

    status: Status
    name: str
    detail: str

    def render(self) -> str:
        return f"{self.status:<4} {self.name}: {self.detail}"


def describe_error(error: BaseException) -> str:
    """An AWS error as ``Code: message``, scrubbed of every registered secret, one line."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        message = str(details.get("Message") or "")
        if "<html" in message.lower() or "<!doctype" in message.lower():
            message = "an HTML error page, not an AWS answer"
        text = f"{details.get('Code') or 'ClientError'}: {message}"
    else:
        text = f"{type(error).__name__}: {error}"
    return scrub(" ".join(text.split()))[:300]


class Checker:
    """Runs the checks against the clients it is given, collecting one line per check."""

    def __init__(self, settings: Settings, clients: dict[str, Any]) -> None:
        self._settings = settings
        self._clients = clients
        self.lines: list[CheckLine] = []
        # Per lane: where its jobs queue's redrive goes, and whether its policy was read.
        self._redrive_targets: dict[str, str] = {}
        self._read_redrive: set[str] = set()
        self._print: Callable[[str], None] = print

    def _say(self, status: Status, name: str, detail: str) -> None:
        line = CheckLine(status, name, detail)
        self.lines.append(line)
        self._print(line.render())

    async def _guarded(self, name: str, check: Callable[[], Awaitable[None]]) -> None:
        try:
            await check()
        except _AWS_ERRORS as error:
            self._say("FAIL", name, describe_error(error))

    async def run(self, say: Callable[[str], None] = print) -> int:
        """Run every check, printing each line through ``say``; return the exit code."""
        self._print = say
        await self._guarded("credentials", self._credentials)
        settings = self._settings
        await self._lane(INTERACTIVE, settings.jobs_queue_url, settings.dead_letter_queue_url)
        if settings.bulk_jobs_queue_url:
            await self._lane(
                BULK, settings.bulk_jobs_queue_url, settings.bulk_dead_letter_queue_url
            )
        await self._guarded("results topic", self._topic)
        if self._settings.idempotency_store is IdempotencyBackend.DYNAMODB:
            await self._guarded("idempotency table", self._table)
        for client in self._settings.cognito_clients:
            await self._guarded(
                f"app client {client.client_id}", functools.partial(self._app, client)
            )
        for key_arn in self._settings.field_encryption_key_arns:
            await self._guarded(
                f"field key {_key_id(key_arn)}", functools.partial(self._field_key, key_arn)
            )
        await self._quotas()
        failed = sum(line.status == "FAIL" for line in self.lines)
        warned = sum(line.status == "warn" for line in self.lines)
        skipped = sum(line.status == "skip" for line in self.lines)
        said_skipped = f"{skipped} skipped, " if skipped else ""
        say(
            f"{len(self.lines)} checks: {len(self.lines) - failed - warned - skipped} ok, "
            f"{warned} warnings, {said_skipped}{failed} failed"
        )
        return EXIT_FAILED if failed else EXIT_OK

    async def _credentials(self) -> None:
        identity = await self._clients["sts"].get_caller_identity()
        self._say("ok", "credentials", f"account {identity.get('Account')}")

    async def _lane(self, label: str, url: str, dlq_url: str | None) -> None:
        """A lane's jobs queue, its visibility and redrive, and its dead-letter queue."""
        await self._jobs_queue(label, url)
        if dlq_url:
            await self._guarded(
                _DLQ_NAMES[label], functools.partial(self._dead_letter_queue, label, dlq_url)
            )

    async def _jobs_queue(self, label: str, url: str) -> None:
        settings = self._settings
        name = label
        try:
            attributes = (
                await self._clients["sqs"].get_queue_attributes(
                    QueueUrl=url, AttributeNames=["All"]
                )
            )["Attributes"]
        except _AWS_ERRORS as error:
            self._say("FAIL", name, f"{url}: {describe_error(error)}")
            why = f"the {label} could not be read"
            self._say("skip", f"{name} visibility", f"not checked: {why}")
            self._say("skip", f"{name} redrive", f"not checked: {why}")
            return
        visible = attributes.get("ApproximateNumberOfMessages", "?")
        self._say("ok", name, f"reachable, {visible} messages waiting")
        visibility = int(attributes.get("VisibilityTimeout", 30))
        if visibility != settings.visibility_timeout_s:
            self._say(
                "warn",
                f"{name} visibility",
                f"the queue's VisibilityTimeout is {visibility} s, VISIBILITY_TIMEOUT_S "
                f"{settings.visibility_timeout_s} s (the worker asks for its own on each receive; "
                "other consumers get the queue's)",
            )
        else:
            self._say(
                "ok",
                f"{name} visibility",
                f"{visibility} s, JOB_TIMEOUT_S {settings.job_timeout_s:g} s fits within it",
            )
        self._redrive(label, attributes.get("RedrivePolicy"))

    def _redrive(self, label: str, policy_text: str | None) -> None:
        settings = self._settings
        name = f"{label} redrive"
        self._read_redrive.add(label)
        if not policy_text:
            self._say(
                "warn",
                name,
                "no redrive policy: a message that keeps failing is received again forever",
            )
            return
        policy = json.loads(policy_text)
        max_receives = int(policy.get("maxReceiveCount", 0))
        target = str(policy.get("deadLetterTargetArn", ""))
        detail = f"to {target.rsplit(':', 1)[-1]} after {max_receives} receives"
        if max_receives <= settings.deferred_max_receives:
            self._say(
                "warn",
                name,
                f"{detail}: not more than DEFERRED_MAX_RECEIVES ({settings.deferred_max_receives}),"
                " so a deferred job reaches the DLQ before it gets its failed result",
            )
            return
        self._say("ok", name, detail)
        self._redrive_targets[label] = target

    async def _dead_letter_queue(self, label: str, url: str) -> None:
        name = _DLQ_NAMES[label]
        attributes = (
            await self._clients["sqs"].get_queue_attributes(
                QueueUrl=url, AttributeNames=["QueueArn", "ApproximateNumberOfMessages"]
            )
        )["Attributes"]
        arn = attributes.get("QueueArn", "")
        depth = attributes.get("ApproximateNumberOfMessages", "?")
        target = self._redrive_targets.get(label)
        if target and target != arn:
            self._say(
                "warn",
                name,
                f"reachable, {depth} messages; but the {label}'s redrive goes to another queue "
                f"({target.rsplit(':', 1)[-1]})",
            )
            return
        if label not in self._read_redrive:
            self._say(
                "ok",
                name,
                f"reachable, {depth} messages (not compared with the {label}'s redrive, which "
                "could not be read)",
            )
            return
        self._say("ok", name, f"reachable, {depth} messages")

    async def _topic(self) -> None:
        sns = self._clients["sns"]
        arn = self._settings.results_topic_arn
        await sns.get_topic_attributes(TopicArn=arn)
        self._say("ok", "results topic", "reachable")
        subscriptions = (await sns.list_subscriptions_by_topic(TopicArn=arn))["Subscriptions"]
        confirmed = [s for s in subscriptions if s.get("SubscriptionArn") != "PendingConfirmation"]
        if confirmed:
            self._say("ok", "results topic subscribers", f"{len(confirmed)} confirmed")
        else:
            self._say(
                "warn", "results topic subscribers", "none confirmed: nobody receives the results"
            )

    async def _table(self) -> None:
        table_name = self._settings.idempotency_table
        dynamodb = self._clients["dynamodb"]
        table = (await dynamodb.describe_table(TableName=table_name))["Table"]
        keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        if keys != {"pk": "HASH"} or types.get("pk") != "S":
            self._say(
                "FAIL",
                "idempotency table",
                "expected one string partition key named pk, no sort key",
            )
            return
        self._say("ok", "idempotency table", f"{table.get('TableStatus', '?').lower()}, key pk")
        ttl = (await dynamodb.describe_time_to_live(TableName=table_name))["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and (
            ttl.get("AttributeName") == "expires_at"
        ):
            self._say("ok", "idempotency table TTL", "on expires_at")
        else:
            self._say(
                "warn",
                "idempotency table TTL",
                "not enabled on expires_at: finished jobs' records are never removed",
            )

    async def _app(self, client: AppClient) -> None:
        name = f"app client {client.client_id}"
        gateway = CognitoGateway({client.region: self._clients[f"cognito-idp:{client.region}"]})
        try:
            await gateway.probe(client)
        except ConfigurationError as error:
            self._say("FAIL", name, f"{error.code}: {scrub(error.message)}")
            return
        except TransientError as error:
            self._say("FAIL", name, f"could not tell: {error.code}: {scrub(error.message)}")
            return
        secret = "secret accepted" if client.client_secret else "no secret, none expected"
        self._say("ok", name, f"pool {client.user_pool_id} found, {secret}")

    async def _field_key(self, key_arn: str) -> None:
        name = f"field key {_key_id(key_arn)}"
        region = _key_region(key_arn)
        kms = self._clients[f"kms:{region}"]
        metadata = (await kms.describe_key(KeyId=key_arn))["KeyMetadata"]
        state = metadata.get("KeyState", "unknown")
        # CreateKey's defaults, for an answer that leaves them out (KMS itself names both).
        usage = metadata.get("KeyUsage") or "ENCRYPT_DECRYPT"
        spec = (
            metadata.get("KeySpec") or metadata.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
        )
        if state != "Enabled":
            self._say("FAIL", name, f"{state}: KMS decrypts nothing under a key not Enabled")
        elif usage != "ENCRYPT_DECRYPT" or spec != "SYMMETRIC_DEFAULT":
            self._say(
                "FAIL",
                name,
                f"{spec} {usage}: fields need a symmetric ENCRYPT_DECRYPT key (SYMMETRIC_DEFAULT)",
            )
        else:
            self._say(
                "ok",
                name,
                f"enabled, symmetric, in {region} (kms:Decrypt is first tried by an encrypted "
                "job; a refusal opens the breaker, whose probe rechecks it)",
            )

    async def _quotas(self) -> None:
        """Each budget against the rate Cognito enforces in each pool's Region
        (GetProvisionedLimit), or, where that cannot be read, against the documented quota."""
        regions = sorted({client.region for client in self._settings.cognito_clients})
        for variable, category in _BUDGET_CATEGORIES.items():
            budget = float(getattr(self._settings, variable.lower()))
            for region in regions:
                name = f"quota {variable}" + (f" ({region})" if len(regions) > 1 else "")
                try:
                    limit = await enforced_limit(self._clients[f"cognito-idp:{region}"], category)
                except _AWS_ERRORS as error:
                    self._documented_quota(name, variable, budget, describe_error(error))
                    continue
                self._enforced_quota(name, budget, limit)

    def _enforced_quota(self, name: str, budget: float, limit: EnforcedLimit) -> None:
        enforced = limit.provisioned_rps
        said = f"{budget:g} for the fleet; Cognito enforces {enforced} (free {limit.free_rps})"
        if budget > enforced:
            self._say("FAIL", name, f"{said}: the fleet would be throttled; lower the budget")
        elif budget == enforced:
            self._say(
                "warn", name,
                f"{said}: right only if every call of this category goes through the "
                "worker; leave the application's own calls headroom (docs/fleet.md)",
            )  # fmt: skip
        else:
            self._say("ok", name, f"{said}, shared by every task and caller")

    def _documented_quota(self, name: str, variable: str, rate: float, why: str) -> None:
        quota, adjustable = DOCUMENTED_QUOTAS_RPS[variable]
        unread = f"(enforced limit not read: {why}; grant cognito-idp:GetProvisionedLimit)"
        if rate <= quota:
            self._say("ok", name, f"{rate:g} for the fleet, default quota {quota:g} {unread}")
        elif adjustable:
            self._say(
                "warn", name,
                f"{rate:g} for the fleet is above the default quota of {quota:g}: right only if "
                f"the account's limit was raised {unread}",
            )  # fmt: skip
        else:
            self._say(
                "FAIL", name,
                f"{rate:g} for the fleet is above the quota of {quota:g}, which cannot be raised",
            )  # fmt: skip


def _key_region(key_arn: str) -> str:
    """The Region of a KMS key ARN (``arn:aws:kms:REGION:ACCOUNT:key/ID``)."""
    return key_arn.split(":")[3]


def _key_id(key_arn: str) -> str:
    return key_arn.rsplit("/", 1)[-1]


async def run_checks(settings: Settings, say: Callable[[str], None] = print) -> int:
    """Create read-only clients, run every check, and return the exit code."""
    # Taught GetProvisionedLimit before its first cognito-idp client (worker.cognito.limits).
    botocore_session = teach_provisioned_limits(aiobotocore.session.get_session())
    session = aioboto3.Session(region_name=settings.aws_region, botocore_session=botocore_session)
    async with AsyncExitStack() as stack:
        clients: dict[str, Any] = {}
        for service in ("sts", "sqs", "sns"):
            clients[service] = await stack.enter_async_context(
                session.client(service, config=_TIMEOUTS)
            )
        if settings.idempotency_store is IdempotencyBackend.DYNAMODB:
            clients["dynamodb"] = await stack.enter_async_context(
                session.client("dynamodb", config=_TIMEOUTS)
            )
        # Each pool's own Region: the pool id starts with it.
        for region in sorted({client.region for client in settings.cognito_clients}):
            clients[f"cognito-idp:{region}"] = await stack.enter_async_context(
                session.client("cognito-idp", region_name=region, config=_TIMEOUTS)
            )
        # Each field key's own Region: its ARN names it.
        for region in sorted({_key_region(arn) for arn in settings.field_encryption_key_arns}):
            clients[f"kms:{region}"] = await stack.enter_async_context(
                session.client("kms", region_name=region, config=_TIMEOUTS)
            )
        code = await Checker(settings, clients).run(say)
    sys.stdout.flush()
    return code
