"""A task's membership of the fleet, on a roster kept in memory: joining, beating, leaving, failing.

The DynamoDB roster is tested over HTTP against moto (tests/integration/test_fleet_roster.py).
"""

import asyncio
import time

from botocore.exceptions import EndpointConnectionError

from worker.cognito.fleet import FleetMembership, SoloRoster, Standing, fleet_membership
from worker.cognito.ratelimit import QuotaCategory, RateLimiter


class SharedRoster:
    """Entries with deadlines, as the DynamoDB roster keeps them; can be made to fail."""

    def __init__(self) -> None:
        self.deadlines: dict[str, float] = {}
        self.failing = False

    async def beat(self, member: str, life_s: float) -> Standing:
        if self.failing:
            raise EndpointConnectionError(endpoint_url="http://dynamodb")
        now = time.monotonic()
        self.deadlines[member] = now + life_s
        alive = sorted(name for name, deadline in self.deadlines.items() if deadline > now)
        return Standing(len(alive), alive.index(member))

    async def leave(self, member: str) -> None:
        self.deadlines.pop(member, None)


def limiter() -> RateLimiter:
    return RateLimiter({QuotaCategory.USER_CREATION: 30.0})


async def test_a_task_alone_takes_the_whole_budget_without_waiting() -> None:
    own = limiter()
    started = time.monotonic()
    async with fleet_membership(FleetMembership(SharedRoster(), own.set_standing)):
        assert time.monotonic() - started < 0.5
        assert own.pacer("SignUp").budget_rps == 30.0


async def test_the_memory_store_means_a_fleet_of_one() -> None:
    first, second = limiter(), limiter()
    async with (
        fleet_membership(FleetMembership(SoloRoster(), first.set_standing, heartbeat_s=0.05)),
        fleet_membership(FleetMembership(SoloRoster(), second.set_standing, heartbeat_s=0.05)),
    ):
        await asyncio.sleep(0.1)
        assert first.pacer("SignUp").budget_rps == second.pacer("SignUp").budget_rps == 30.0


async def test_three_tasks_share_and_a_dead_ones_share_returns_after_its_entry_lapses() -> None:
    roster = SharedRoster()
    limiters = [limiter() for _ in range(3)]
    members = [
        FleetMembership(roster, own.set_standing, heartbeat_s=0.05, entry_life_s=0.2)
        for own in limiters
    ]
    for member in members:
        await member.join()
    beating = [asyncio.create_task(member.keep_beating()) for member in members]
    await asyncio.sleep(0.1)
    assert [own.pacer("SignUp").budget_rps for own in limiters] == [10.0, 10.0, 10.0]
    beating[2].cancel()  # dies: no leave, its entry lapses
    await asyncio.sleep(0.4)
    assert [own.pacer("SignUp").budget_rps for own in limiters[:2]] == [15.0, 15.0]
    for task in beating[:2]:
        task.cancel()


async def test_a_failed_heartbeat_keeps_the_share_it_had() -> None:
    roster = SharedRoster()
    first, second = limiter(), limiter()
    one = FleetMembership(roster, first.set_standing, heartbeat_s=0.05, entry_life_s=5)
    two = FleetMembership(roster, second.set_standing, heartbeat_s=0.05, entry_life_s=5)
    async with fleet_membership(one), fleet_membership(two):
        await asyncio.sleep(0.1)
        roster.failing = True
        await asyncio.sleep(0.2)  # several failed beats: logged, and the share stays half
        assert first.pacer("SignUp").budget_rps == 15.0
        roster.failing = False
    assert roster.deadlines == {}  # both left
