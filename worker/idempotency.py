"""Idempotency: a job id that was processed does not reach Cognito again.

Records are keyed by (client id, job id) and have two states. *In progress*: a worker owns the job
under a short lease (a crashed worker's claim lapses in seconds, not hours), and the record says
whether an earlier attempt may have reached Cognito without an answer. *Completed*: the published
result, kept for a TTL, so a duplicate delivery republishes it without calling Cognito.

Two stores: :class:`MemoryStore` for one process, :class:`DynamoDbStore` for many ECS tasks.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


class ClaimState(StrEnum):
    """What :meth:`IdempotencyStore.claim` found."""

    OWNED = "owned"  # the caller owns the job now: go ahead
    COMPLETED = "completed"  # done before: republish the stored result
    BUSY = "busy"  # another worker holds a live lease: leave it alone


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a claim. ``token`` identifies the owner in later calls."""

    state: ClaimState
    token: str = ""
    result: str | None = None  # the stored result's JSON, when COMPLETED
    interrupted: bool = False  # OWNED after an attempt that may have reached Cognito
    lease_left_s: float = 0.0  # BUSY: how long the other worker's lease still runs


def job_key(client_id: str, job_id: str) -> str:
    """The store key of a job."""
    return f"{client_id}#{job_id}"


class IdempotencyStore(Protocol):
    """Where claims and results live."""

    async def claim(self, key: str, lease_s: float) -> Claim:
        """Take the job (OWNED), or say it is COMPLETED or BUSY."""
        ...

    async def extend(self, key: str, token: str, lease_s: float) -> None:
        """Renew the caller's lease (heartbeat)."""
        ...

    async def complete(self, key: str, token: str, result: str, ttl_s: float) -> None:
        """Store the job's result for ``ttl_s``; later claims answer COMPLETED."""
        ...

    async def release(self, key: str, token: str, *, ambiguous: bool) -> None:
        """Give the job up for a later delivery; ``ambiguous``: Cognito may have acted."""
        ...


@dataclass
class _Record:
    completed: bool
    token: str
    lease_until: float
    ambiguous: bool
    result: str | None
    expires_at: float


class MemoryStore:
    """An in-process store: duplicates are caught within one worker process only."""

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._claims_since_sweep = 0

    async def claim(self, key: str, lease_s: float) -> Claim:
        """See :meth:`IdempotencyStore.claim`."""
        now = time.time()
        self._sweep(now)
        record = self._records.get(key)
        if record is not None and record.expires_at > now:
            if record.completed:
                return Claim(ClaimState.COMPLETED, result=record.result)
            if record.lease_until > now:
                return Claim(ClaimState.BUSY, lease_left_s=record.lease_until - now)
        interrupted = record is not None and not record.completed and record.ambiguous
        token = uuid.uuid4().hex
        # Pessimistic until released: a crash mid-call leaves "Cognito may have acted".
        self._records[key] = _Record(False, token, now + lease_s, True, None, now + lease_s)
        return Claim(ClaimState.OWNED, token=token, interrupted=interrupted)

    async def extend(self, key: str, token: str, lease_s: float) -> None:
        """See :meth:`IdempotencyStore.extend`."""
        record = self._records.get(key)
        if record is not None and record.token == token and not record.completed:
            record.lease_until = record.expires_at = time.time() + lease_s

    async def complete(self, key: str, token: str, result: str, ttl_s: float) -> None:
        """See :meth:`IdempotencyStore.complete`."""
        self._records[key] = _Record(True, token, 0.0, False, result, time.time() + ttl_s)

    async def release(self, key: str, token: str, *, ambiguous: bool) -> None:
        """See :meth:`IdempotencyStore.release`."""
        record = self._records.get(key)
        if record is not None and record.token == token and not record.completed:
            record.lease_until = 0.0
            record.ambiguous = ambiguous
            # Kept a while so the next delivery learns whether Cognito may have acted.
            record.expires_at = time.time() + 86400

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

    async def claim(self, key: str, lease_s: float) -> Claim:
        """See :meth:`IdempotencyStore.claim`."""
        now = time.time()
        token = uuid.uuid4().hex
        try:
            answer = await self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": key},
                    "state": {"S": "in_progress"},
                    "token": {"S": token},
                    "lease_until": {"N": f"{now + lease_s:.3f}"},
                    "ambiguous": {"BOOL": True},
                    "expires_at": {"N": str(int(now + 86400))},
                },
                # New, or an in-progress claim whose lease lapsed (its worker died or gave up).
                ConditionExpression=(
                    "attribute_not_exists(pk) OR (#state = :in_progress AND lease_until < :now)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": "in_progress"},
                    ":now": {"N": f"{now:.3f}"},
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return await self._existing(key, now)
        old = answer.get("Attributes") or {}
        interrupted = bool(old) and bool(old.get("ambiguous", {}).get("BOOL", False))
        return Claim(ClaimState.OWNED, token=token, interrupted=interrupted)

    async def _existing(self, key: str, now: float) -> Claim:
        answer = await self._client.get_item(
            TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True
        )
        item: dict[str, Any] = dict(answer.get("Item") or {})
        if item.get("state", {}).get("S") == "completed":
            return Claim(ClaimState.COMPLETED, result=item["result"]["S"])
        lease_until = float(item.get("lease_until", {}).get("N", "0"))
        return Claim(ClaimState.BUSY, lease_left_s=max(0.0, lease_until - now))

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
        await self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": key},
                "state": {"S": "completed"},
                "token": {"S": token},
                "result": {"S": result},
                "expires_at": {"N": str(int(time.time() + ttl_s))},
            },
        )

    async def release(self, key: str, token: str, *, ambiguous: bool) -> None:
        """See :meth:`IdempotencyStore.release`."""
        await self._owned_update(
            key,
            token,
            "SET lease_until = :zero, ambiguous = :ambiguous",
            {":zero": {"N": "0"}, ":ambiguous": {"BOOL": ambiguous}},
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
