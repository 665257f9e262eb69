"""The fleet roster against dynalite's DynamoDB over HTTP (and the memory store's fleet of one).

dynalite evaluates UpdateItem's nested map paths, ReturnValues=ALL_NEW and condition expressions
as DynamoDB documents them, and a conditional write as one step; it deletes nothing by TTL, and
DynamoDB's TTL deletion is not timely either, which is why entries carry their own deadline and
the roster never relies on the item's TTL.
"""

import asyncio
from collections.abc import AsyncIterator

import aioboto3
import pytest

from worker.cognito.fleet import (
    ROSTER_KEY,
    DynamoDbRoster,
    FleetMembership,
    SoloRoster,
    Standing,
    fleet_membership,
)
from worker.cognito.ratelimit import QuotaCategory, RateLimiter
from worker.local.aws import REGION, Endpoints, aws_client, create_idempotency_table


@pytest.fixture
async def roster(endpoints: Endpoints) -> AsyncIterator[DynamoDbRoster]:
    table = create_idempotency_table(endpoints)
    session = aioboto3.Session(
        region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
    )
    async with session.client("dynamodb", endpoint_url=endpoints.tables) as client:
        yield DynamoDbRoster(client, table)


def entries(endpoints: Endpoints, roster: DynamoDbRoster) -> set[str]:
    item = aws_client("dynamodb", endpoints.tables).get_item(
        TableName=roster._table, Key={"pk": {"S": ROSTER_KEY}}, ConsistentRead=True
    )["Item"]
    return set(item["members"]["M"])


async def test_the_memory_store_is_a_fleet_of_one() -> None:
    solo = SoloRoster()
    assert await solo.beat("a", 4) == Standing(size=1, place=0)
    assert await solo.beat("b", 4) == Standing(size=1, place=0)


async def test_each_member_counts_every_live_entry(roster: DynamoDbRoster) -> None:
    assert await roster.beat("b", 30) == Standing(1, 0)  # the first ever: creates the roster
    assert await roster.beat("c", 30) == Standing(2, 1)
    assert await roster.beat("a", 30) == Standing(3, 0)  # places go by member id
    assert await roster.beat("b", 30) == Standing(3, 1)  # a renewal is no new member
    assert await roster.beat("c", 30) == Standing(3, 2)


async def test_many_tasks_joining_at_once_each_get_an_entry(roster: DynamoDbRoster) -> None:
    await asyncio.gather(*(roster.beat(f"m{i}", 30) for i in range(8)))
    assert (await roster.beat("m0", 30)).size == 8


async def test_a_member_that_leaves_frees_its_share_at_once(
    roster: DynamoDbRoster, endpoints: Endpoints
) -> None:
    await roster.beat("a", 30)
    await roster.beat("b", 30)
    await roster.leave("b")
    assert (await roster.beat("a", 30)).size == 1
    assert entries(endpoints, roster) == {"a"}


async def test_a_dead_members_entry_lapses_and_is_pruned(
    roster: DynamoDbRoster, endpoints: Endpoints
) -> None:
    await roster.beat("alive", 30)
    await roster.beat("dead", 0.5)  # stops beating: dies
    assert (await roster.beat("alive", 30)).size == 2
    await asyncio.sleep(0.7)
    assert (await roster.beat("alive", 30)).size == 1
    assert entries(endpoints, roster) == {"alive"}


async def test_leaving_a_roster_that_does_not_exist_is_harmless(roster: DynamoDbRoster) -> None:
    await roster.leave("nobody")
    assert (await roster.beat("a", 30)).size == 1


async def test_membership_sets_the_share_joins_waits_and_leaves(roster: DynamoDbRoster) -> None:
    budgets = {QuotaCategory.USER_CREATION: 40.0, QuotaCategory.USER_ACCOUNT_RECOVERY: 30.0}
    first, second = RateLimiter(budgets), RateLimiter(budgets)
    one = FleetMembership(roster, first.set_standing, heartbeat_s=0.2, entry_life_s=1.0)
    two = FleetMembership(roster, second.set_standing, heartbeat_s=0.2, entry_life_s=1.0)
    async with fleet_membership(one):
        assert first.pacer("SignUp").budget_rps == 40.0
        loop = asyncio.get_running_loop()
        joined_at = loop.time()
        async with fleet_membership(two):
            # The newcomer waited until the first had seen it, and both pace at half.
            assert loop.time() - joined_at >= 0.2
            assert first.pacer("SignUp").budget_rps == 20.0
            assert second.pacer("SignUp").budget_rps == 20.0
            assert second.pacer("ForgotPassword").budget_rps == 15.0
        await asyncio.sleep(0.5)  # two heartbeats of the first
        assert first.pacer("SignUp").budget_rps == 40.0
