"""Idempotency: a job id that was processed does not reach Cognito again.

Records are keyed by (client id, job id) and have two states. *In progress*: a worker owns the job
under a short lease (a crashed worker's claim lapses in seconds, not hours), and the record keeps
the job's :class:`JobHistory` for its next delivery: whether an earlier attempt may have reached
Cognito without an answer, how many deliveries ended in the job's own failures or deferrals (a
hand-back that is not the job's fault counts nothing), and which calls of a two-call job are done.
*Completed*: the published result, kept for a TTL, so a duplicate delivery republishes it without
calling Cognito. Both keep a fingerprint of the job's payload, so a job id reused for another
payload is told apart from a duplicate.

Two stores: :class:`MemoryStore` for one process, :class:`DynamoDbStore` for many ECS tasks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError
from pydantic import Secret

from worker.contract.jobs import Job

# The key is the contract between the worker and the producer library's lookup.
from worker.contract.records import job_key as job_key

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


# How long an unfinished job's history is kept after its last delivery.
_IN_PROGRESS_TTL_S = 86400
# Claims of one key that may find it replaced between their write and their read.
_CLAIM_TRIES = 3


class ClaimState(StrEnum):
    """What :meth:`IdempotencyStore.claim` found."""

    OWNED = "owned"  # the caller owns the job now: go ahead
    COMPLETED = "completed"  # done before: republish the stored result
    BUSY = "busy"  # another worker holds a live lease: leave it alone


@dataclass(frozen=True, slots=True)
class JobHistory:
    """What the earlier deliveries of a job left for the next one."""

    may_have_acted: bool = False  # an attempt may have reached Cognito without an answer
    failures: int = 0  # deliveries that ended in transient errors
    deferrals: int = 0  # deliveries that ended on a per-user limit
    done: tuple[str, ...] = ()  # operations of a two-call job already carried out


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a claim. ``token`` identifies the owner in later calls."""

    state: ClaimState
    token: str = ""
    result: str | None = None  # the stored result's JSON, when COMPLETED
    history: JobHistory = field(default_factory=JobHistory)  # OWNED: the earlier deliveries
    fingerprint: str | None = None  # the payload fingerprint stored with the job id, if any
    lease_left_s: float = 0.0  # BUSY: how long the other worker's lease still runs

    @property
    def interrupted(self) -> bool:
        """OWNED after an attempt that may have reached Cognito without an answer."""
        return self.history.may_have_acted


def payload_fingerprint(job: Job, key: str | None) -> str:
    """A fingerprint of what the job asks for, never its content: a reused job id shows by it.

    The job id, contract version and batch label are left out (they name the job; they are not
    what it asks). Secret fields count only when ``key`` (the app client's secret) is given: the
    fingerprint is then an HMAC under that key, so the store holds nothing a password could be
    guessed back from. Without a key they are left out, and a reused id that differs only in a
    password is not told apart.
    """
    document = job.model_dump(mode="python", exclude={"job_id", "version", "batch"})
    canonical = json.dumps(_revealed(document, reveal=key is not None), sort_keys=True)
    digest = hmac.new((key or "").encode(), canonical.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _revealed(value: Any, *, reveal: bool) -> Any:
    if isinstance(value, dict):
        return {
            k: _revealed(v, reveal=reveal)
            for k, v in value.items()
            if reveal or not isinstance(v, Secret)
        }
    if isinstance(value, Secret):
        return value.get_secret_value()
    return value


class ClaimLost(Exception):
    """Raised by :meth:`IdempotencyStore.complete` when the caller no longer owns the job: its
    lease lapsed and another worker claimed the job (or finished it) meanwhile.

    The caller writes nothing and publishes nothing: the job's owner now answers for it.
    """


class IdempotencyStore(Protocol):
    """Where claims and results live."""

    async def claim(self, key: str, lease_s: float, fingerprint: str) -> Claim:
        """Take the job (OWNED), or say it is COMPLETED or BUSY.

        ``fingerprint`` is stored with the first claim of the key; every answer carries the one
        stored, for the caller to compare.
        """
        ...

    async def extend(self, key: str, token: str, lease_s: float) -> None:
        """Renew the caller's lease (heartbeat)."""
        ...

    async def complete(self, key: str, token: str, result: str, ttl_s: float) -> None:
        """Store the job's result for ``ttl_s``; later claims answer COMPLETED.

        Raise :class:`ClaimLost` unless ``token`` still owns the job.
        """
        ...

    async def release(self, key: str, token: str, history: JobHistory) -> None:
        """Give the job up for a later delivery, which will find ``history``."""
        ...


@dataclass
class _Record:
    completed: bool
    token: str
    lease_until: float
    history: JobHistory
    result: str | None
    expires_at: float
    fingerprint: str | None


class MemoryStore:
    """An in-process store: duplicates are caught within one worker process only."""

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._claims_since_sweep = 0

    async def claim(self, key: str, lease_s: float, fingerprint: str) -> Claim:
        """See :meth:`IdempotencyStore.claim`."""
        now = time.time()
        self._sweep(now)
        record = self._records.get(key)
        if record is not None and record.expires_at <= now:
            record = None
        if record is not None:
            if record.completed:
                return Claim(
                    ClaimState.COMPLETED, result=record.result, fingerprint=record.fingerprint
                )
            if record.lease_until > now:
                return Claim(
                    ClaimState.BUSY,
                    lease_left_s=record.lease_until - now,
                    fingerprint=record.fingerprint,
                )
        history = record.history if record is not None else JobHistory()
        stored = record.fingerprint if record is not None else fingerprint
        token = uuid.uuid4().hex
        # Pessimistic until released: a crash mid-call leaves "Cognito may have acted".
        pessimistic = JobHistory(True, history.failures, history.deferrals, history.done)
        self._records[key] = _Record(
            False, token, now + lease_s, pessimistic, None, now + _IN_PROGRESS_TTL_S, stored
        )
        return Claim(ClaimState.OWNED, token=token, history=history, fingerprint=stored)

    async def extend(self, key: str, token: str, lease_s: float) -> None:
        """See :meth:`IdempotencyStore.extend`."""
        record = self._records.get(key)
        if record is not None and record.token == token and not record.completed:
            record.lease_until = time.time() + lease_s

    async def complete(self, key: str, token: str, result: str, ttl_s: float) -> None:
        """See :meth:`IdempotencyStore.complete`."""
        record = self._records.get(key)
        if record is None or record.completed or record.token != token:
            raise ClaimLost(key)
        self._records[key] = _Record(
            True, token, 0.0, JobHistory(), result, time.time() + ttl_s, record.fingerprint
        )

    async def release(self, key: str, token: str, history: JobHistory) -> None:
        """See :meth:`IdempotencyStore.release`."""
        record = self._records.get(key)
        if record is not None and record.token == token and not record.completed:
            record.lease_until = 0.0
            record.history = history
            # Kept a while so the next delivery finds the job's history.
            record.expires_at = time.time() + _IN_PROGRESS_TTL_S

    def _sweep(self, now: float) -> None:
        self._claims_since_sweep += 1
        if self._claims_since_sweep < 1000:
            return
        self._claims_since_sweep = 0
        for key in [k for k, r in self._records.items() if r.expires_at <= now]:
            del self._records[key]


class DynamoDbStore:
    """A DynamoDB table shared by every task: conditional writes decide who owns a job.

    Table: partition key ``pk`` (string); TTL attribute ``expires_at`` (epoch seconds).
    """

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def claim(self, key: str, lease_s: float, fingerprint: str) -> Claim:
        """See :meth:`IdempotencyStore.claim`.

        DynamoDB deletes an item some time after its ``expires_at`` (up to days later): until
        then an expired item is still read, and is taken for a new key here, as the memory store
        takes it.
        """
        for _ in range(_CLAIM_TRIES):
            claim = await self._claim_once(key, lease_s, fingerprint)
            if claim is not None:
                return claim
        # Replaced under our feet every time: someone else holds it now.
        return Claim(ClaimState.BUSY, lease_left_s=lease_s)

    async def _claim_once(self, key: str, lease_s: float, fingerprint: str) -> Claim | None:
        now = time.time()
        token = uuid.uuid4().hex
        try:
            # An update, not a put: the job's history from earlier deliveries stays.
            answer = await self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression=(
                    "SET #state = :in_progress, #token = :token, lease_until = :lease, "
                    # Pessimistic until released: a crash mid-call leaves "Cognito may have acted".
                    "ambiguous = :true, expires_at = :expires, "
                    "fingerprint = if_not_exists(fingerprint, :fingerprint)"
                ),
                # New, or an in-progress claim whose lease lapsed (its worker died or gave up)
                # and whose history has not expired (an expired one is replaced whole, below).
                ConditionExpression=(
                    "attribute_not_exists(pk) OR (#state = :in_progress AND lease_until < :now "
                    "AND expires_at >= :now_s)"
                ),
                ExpressionAttributeNames={"#state": "state", "#token": "token"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": "in_progress"},
                    ":token": {"S": token},
                    ":lease": {"N": f"{now + lease_s:.3f}"},
                    ":true": {"BOOL": True},
                    ":expires": {"N": str(int(now + _IN_PROGRESS_TTL_S))},
                    ":fingerprint": {"S": fingerprint},
                    ":now": {"N": f"{now:.3f}"},
                    ":now_s": {"N": str(int(now))},
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return await self._existing(key, lease_s, fingerprint, now)
        old: dict[str, Any] = dict(answer.get("Attributes") or {})
        return Claim(
            ClaimState.OWNED,
            token=token,
            history=_history(old),
            fingerprint=old.get("fingerprint", {}).get("S", fingerprint),
        )

    async def _existing(
        self, key: str, lease_s: float, fingerprint: str, now: float
    ) -> Claim | None:
        """What the item that refused the claim says; None when it changed meanwhile."""
        answer = await self._client.get_item(
            TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True
        )
        item: dict[str, Any] = dict(answer.get("Item") or {})
        if not item:
            return None  # deleted meanwhile (its TTL): claim it afresh
        expires_at = item.get("expires_at", {}).get("N")
        if expires_at is not None and int(expires_at) < int(now):
            return await self._replace_expired(key, expires_at, lease_s, fingerprint, now)
        fingerprint = item.get("fingerprint", {}).get("S")
        if item.get("state", {}).get("S") == "completed":
            return Claim(ClaimState.COMPLETED, result=item["result"]["S"], fingerprint=fingerprint)
        lease_until = float(item.get("lease_until", {}).get("N", "0"))
        return Claim(
            ClaimState.BUSY, lease_left_s=max(0.0, lease_until - now), fingerprint=fingerprint
        )

    async def _replace_expired(
        self, key: str, expires_at: str, lease_s: float, fingerprint: str, now: float
    ) -> Claim | None:
        """Claim an expired item as a new key: nothing of it (history, fingerprint, result) is
        kept. Of claimers racing for it, the one whose write finds the expiry it read wins."""
        token = uuid.uuid4().hex
        try:
            await self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": key},
                    "state": {"S": "in_progress"},
                    "token": {"S": token},
                    "lease_until": {"N": f"{now + lease_s:.3f}"},
                    "ambiguous": {"BOOL": True},
                    "expires_at": {"N": str(int(now + _IN_PROGRESS_TTL_S))},
                    "fingerprint": {"S": fingerprint},
                },
                ConditionExpression="expires_at = :seen",
                ExpressionAttributeValues={":seen": {"N": expires_at}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return None  # another claimer replaced it first: look again
        return Claim(ClaimState.OWNED, token=token, fingerprint=fingerprint)

    async def extend(self, key: str, token: str, lease_s: float) -> None:
        """See :meth:`IdempotencyStore.extend`."""
        await self._owned_update(
            key,
            token,
            "SET lease_until = :lease",
            {":lease": {"N": f"{time.time() + lease_s:.3f}"}},
        )

    async def complete(self, key: str, token: str, result: str, ttl_s: float) -> None:
        """See :meth:`IdempotencyStore.complete`."""
        try:
            await self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression=(
                    "SET #state = :completed, #result = :result, expires_at = :expires "
                    "REMOVE lease_until, ambiguous, failures, deferrals, done"
                ),
                # Only the owner writes the result: a worker whose lease lapsed and whose job
                # another worker claimed since must not overwrite that worker's record.
                ConditionExpression="#token = :token AND #state = :in_progress",
                ExpressionAttributeNames={
                    "#state": "state",
                    "#token": "token",
                    "#result": "result",
                },
                ExpressionAttributeValues={
                    ":completed": {"S": "completed"},
                    ":in_progress": {"S": "in_progress"},
                    ":token": {"S": token},
                    ":result": {"S": result},
                    ":expires": {"N": str(int(time.time() + ttl_s))},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ClaimLost(key) from None
            raise

    async def release(self, key: str, token: str, history: JobHistory) -> None:
        """See :meth:`IdempotencyStore.release`."""
        await self._owned_update(
            key,
            token,
            "SET lease_until = :zero, ambiguous = :ambiguous, failures = :failures, "
            "deferrals = :deferrals, done = :done",
            {
                ":zero": {"N": "0"},
                ":ambiguous": {"BOOL": history.may_have_acted},
                ":failures": {"N": str(history.failures)},
                ":deferrals": {"N": str(history.deferrals)},
                ":done": {"L": [{"S": operation} for operation in history.done]},
            },
        )

    async def _owned_update(
        self, key: str, token: str, update: str, values: dict[str, Any]
    ) -> None:
        try:
            await self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression=update,
                ConditionExpression="#token = :token AND #state = :in_progress",
                ExpressionAttributeNames={"#token": "token", "#state": "state"},
                ExpressionAttributeValues={
                    ":token": {"S": token},
                    ":in_progress": {"S": "in_progress"},
                    **values,
                },
            )
        except ClientError as error:
            # Someone else owns it now (our lease lapsed): nothing of ours to change.
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise


def _history(item: dict[str, Any]) -> JobHistory:
    """The history kept in a DynamoDB item (none in a new one)."""
    if not item:
        return JobHistory()
    return JobHistory(
        may_have_acted=bool(item.get("ambiguous", {}).get("BOOL", False)),
        failures=int(item.get("failures", {}).get("N", "0")),
        deferrals=int(item.get("deferrals", {}).get("N", "0")),
        done=tuple(entry["S"] for entry in item.get("done", {}).get("L", [])),
    )
