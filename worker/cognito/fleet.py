"""The fleet budget: the ``RATE_*`` settings are shared by every running task, each at its share.

Tasks learn how many of them are alive from a roster in the store they already share. Each task
holds an entry in it that lapses :data:`ENTRY_LIFE_S` after its last heartbeat, and beats every
:data:`HEARTBEAT_S`; its share of each budget is the budget divided by the entries alive.

- A task that starts joins before its first Cognito call. When it finds others already there it
  waits one heartbeat period more, so that every one of them has seen it and lowered its own share
  before it adds its calls: the fleet stays within the budget while it grows.
- A task that stops leaves the roster once its last job is done; one that dies stops beating and
  its entry lapses. Either way the others take up its share at their next heartbeat, within
  seconds.
- Each task also learns its place among the members (their ids in order), which the pacers use to
  interleave the fleet's calls (:mod:`worker.cognito.ratelimit`).

With the memory store there is no shared store, so a task is a fleet of one. With DynamoDB the
roster is one item of the idempotency table, ``pk`` = :data:`ROSTER_KEY`, holding a map of member
id to the epoch second its entry lapses. One item, not one per task: counting items would need a
scan of the whole table, which holds every job's record. One UpdateItem per heartbeat both
refreshes the caller's entry and returns the roster.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from worker.telemetry.logs import get_logger

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

log = get_logger("fleet")

#: How often a task renews its entry and recounts the fleet, in seconds.
HEARTBEAT_S = 1.0
#: How long an entry lives after its last heartbeat: three missed beats.
ENTRY_LIFE_S = 4.0
#: The roster's key in the idempotency table. ``!`` never occurs in a job key (client ids are
#: word characters), so the roster cannot collide with a job's record.
ROSTER_KEY = "!fleet#roster"
#: How long DynamoDB keeps the roster item once no task beats any more (its TTL attribute).
ROSTER_ITEM_TTL_S = 86400


class Standing(NamedTuple):
    """A task's view of the fleet: how many tasks are alive, and its own place among them."""

    size: int
    place: int  # 0 .. size - 1, by member id


SOLO = Standing(1, 0)


class Roster(Protocol):
    """Where the fleet's members are counted."""

    async def beat(self, member: str, life_s: float) -> Standing:
        """Renew ``member``'s entry for ``life_s``; return its standing among the live members."""
        ...

    async def leave(self, member: str) -> None:
        """Remove ``member``'s entry at once."""
        ...


class SoloRoster:
    """No shared store: every task is a fleet of one, and paces at the whole budget."""

    async def beat(self, member: str, life_s: float) -> Standing:
        """See :meth:`Roster.beat`."""
        return SOLO

    async def leave(self, member: str) -> None:
        """See :meth:`Roster.leave`."""


class DynamoDbRoster:
    """The roster as one item of the idempotency table (see the module's docstring)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def beat(self, member: str, life_s: float) -> Standing:
        """See :meth:`Roster.beat`."""
        now = time.time()
        until = {"N": f"{now + life_s:.3f}"}
        expires = {"N": str(int(now + ROSTER_ITEM_TTL_S))}
        try:
            answer = await self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": ROSTER_KEY}},
                UpdateExpression="SET members.#me = :until, expires_at = :expires",
                ExpressionAttributeNames={"#me": member},
                ExpressionAttributeValues={":until": until, ":expires": expires},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            # The first task ever: there is no roster (or no map in it) to set an entry in yet.
            if error.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            if not await self._create(member, until, expires):
                return await self.beat(member, life_s)  # another task created it meanwhile
            return SOLO
        members = answer.get("Attributes", {}).get("members", {}).get("M", {})
        deadlines = {name: float(value["N"]) for name, value in members.items()}
        alive = sorted({name for name, deadline in deadlines.items() if deadline > now} | {member})
        lapsed = {name: v for name, v in deadlines.items() if v <= now and name != member}
        if lapsed:
            await self._prune(lapsed)
        return Standing(len(alive), alive.index(member))

    async def _create(self, member: str, until: Any, expires: Any) -> bool:
        try:
            await self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": ROSTER_KEY},
                    "members": {"M": {member: until}},
                    "expires_at": expires,
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    async def _prune(self, lapsed: dict[str, float]) -> None:
        """Remove lapsed entries, unless one was renewed meanwhile (its task came back)."""
        names = {f"#m{i}": name for i, name in enumerate(lapsed)}
        values = {f":v{i}": {"N": f"{lapsed[name]:.3f}"} for i, name in enumerate(lapsed)}
        try:
            await self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": ROSTER_KEY}},
                UpdateExpression="REMOVE " + ", ".join(f"members.{n}" for n in names),
                ConditionExpression=" AND ".join(
                    f"members.#m{i} = :v{i}" for i in range(len(lapsed))
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            # Renewed or removed by another task already: left for a later heartbeat.
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    async def leave(self, member: str) -> None:
        """See :meth:`Roster.leave`."""
        with contextlib.suppress(ClientError):  # no roster, no entry: nothing to remove
            await self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": ROSTER_KEY}},
                UpdateExpression="REMOVE members.#me",
                ExpressionAttributeNames={"#me": member},
            )


class FleetMembership:
    """One task's place in the fleet: tells ``on_change`` how many tasks share the budget, and
    this task's place among them."""

    def __init__(
        self,
        roster: Roster,
        on_change: Callable[[Standing], None],
        *,
        heartbeat_s: float = HEARTBEAT_S,
        entry_life_s: float = ENTRY_LIFE_S,
        member: str | None = None,
    ) -> None:
        self.member = member or uuid.uuid4().hex
        self.standing = SOLO
        self._roster = roster
        self._on_change = on_change
        self._heartbeat_s = heartbeat_s
        self._entry_life_s = entry_life_s

    async def join(self) -> None:
        """Take this task's share; when others are there, wait until each of them has seen it."""
        self._update(await self._roster.beat(self.member, self._entry_life_s))
        if self.standing.size > 1:
            # Every other member beats within one period, and lowers its share when it does.
            await asyncio.sleep(self._heartbeat_s * 1.2)
            self._update(await self._roster.beat(self.member, self._entry_life_s))

    async def keep_beating(self) -> None:
        """Renew the entry and recount every heartbeat period, until cancelled."""
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                self._update(await self._roster.beat(self.member, self._entry_life_s))
            except (BotoCoreError, ClientError, OSError) as error:
                # The share stays as it was; the adaptive back-off covers what this misses.
                log.warning("fleet heartbeat failed", error=f"{type(error).__name__}: {error}")

    async def leave(self) -> None:
        """Free this task's share at once (the others take it up at their next heartbeat)."""
        try:
            await self._roster.leave(self.member)
        except (BotoCoreError, ClientError, OSError) as error:
            log.warning(
                "could not leave the fleet; the entry lapses by itself",
                error=f"{type(error).__name__}: {error}",
                lapses_in_s=self._entry_life_s,
            )

    @property
    def size(self) -> int:
        """How many tasks share the budget, this one included."""
        return self.standing.size

    def _update(self, standing: Standing) -> None:
        if standing.size != self.standing.size:
            log.info("fleet size changed", member=self.member, tasks=standing.size, was=self.size)
        self.standing = standing
        self._on_change(standing)


@asynccontextmanager
async def fleet_membership(membership: FleetMembership) -> AsyncIterator[FleetMembership]:
    """Join before the block, beat throughout it, and leave after it."""
    await membership.join()
    log.info("joined the fleet", member=membership.member, tasks=membership.size)
    beating = asyncio.create_task(membership.keep_beating())
    try:
        yield membership
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        await membership.leave()
