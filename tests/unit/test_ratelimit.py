"""The adaptive pacer: even spacing at the rate, multiplicative cuts, additive recovery."""

import asyncio
import itertools
import math
import time

import pytest

from worker.cognito.ratelimit import (
    CATEGORY_OF_OPERATION,
    PACING_HEADROOM,
    AdaptivePacer,
    QuotaCategory,
    RateLimiter,
)
from worker.contract.jobs import Lane


def test_slots_are_spaced_at_the_rate_a_little_under_the_budget() -> None:
    pacer = AdaptivePacer(50)
    waits = [pacer.reserve() for _ in range(11)]
    assert waits[0] == pytest.approx(0, abs=0.005)
    # The eleventh call of a burst waits ten intervals of 1/(0.97 x 50) s.
    assert waits[10] == pytest.approx(10 / (50 * PACING_HEADROOM), abs=0.01)


def test_a_throttle_cuts_the_rate_once_per_burst() -> None:
    pacer = AdaptivePacer(50, decrease_factor=0.8)
    pacer.throttled()
    pacer.throttled()  # the same burst of answers: no second cut
    assert pacer.rate_rps == pytest.approx(50 * PACING_HEADROOM * 0.8)


def test_calm_raises_the_rate_back_to_the_ceiling_and_no_further() -> None:
    pacer = AdaptivePacer(50, decrease_factor=0.8, increase_rps_per_s=20)
    pacer.throttled()
    cut = pacer.rate_rps
    time.sleep(1.3)  # recovery starts after a second of calm
    pacer.reserve()
    assert cut < pacer.rate_rps <= pacer.ceiling_rps
    time.sleep(1.0)
    pacer.reserve()
    assert pacer.rate_rps == pytest.approx(pacer.ceiling_rps)
    assert pacer.ceiling_rps < 50  # never paced at or over the budget itself


def test_the_rate_never_falls_below_the_floor() -> None:
    pacer = AdaptivePacer(2, floor_rps=1)
    for _ in range(20):
        pacer._last_cut = 0.0  # as if each throttle came in a separate burst
        pacer.throttled()
    assert pacer.rate_rps == 1


def test_every_operation_has_a_category() -> None:
    limiter = RateLimiter(dict.fromkeys(QuotaCategory, 10.0))
    for operation in CATEGORY_OF_OPERATION:
        assert limiter.pacer(operation).budget_rps == 10.0


def test_each_task_paces_at_its_share_of_the_fleet_budget() -> None:
    limiter = RateLimiter(
        {QuotaCategory.USER_CREATION: 40.0, QuotaCategory.USER_ACCOUNT_RECOVERY: 30.0}
    )
    limiter.set_fleet_size(4)
    assert limiter.pacer("SignUp").budget_rps == 10.0
    assert limiter.pacer("ForgotPassword").budget_rps == 7.5
    assert limiter.pacer("SignUp").rate_rps == pytest.approx(10.0 * PACING_HEADROOM)
    limiter.set_fleet_size(1)  # the others left: the whole budget again
    assert limiter.pacer("SignUp").ceiling_rps == pytest.approx(40.0 * PACING_HEADROOM)
    assert limiter.pacer("SignUp").rate_rps == pytest.approx(40.0 * PACING_HEADROOM)
    limiter.set_fleet_size(0)  # never fewer than this task itself
    assert limiter.pacer("SignUp").budget_rps == 40.0


def busiest_second(slots: list[float]) -> int:
    """The most calls in any one-second window (the quota's count), for slots in seconds."""
    ordered = sorted(slots)
    return max(
        sum(1 for later in ordered[i:] if later - start < 1.0) for i, start in enumerate(ordered)
    )


def fleet_slots(tasks: int, share_rps: float, calls: int, *, on_grid: bool) -> list[float]:
    """When each of ``tasks`` pacers, started together, would send its first ``calls`` calls."""
    now = time.monotonic()
    slots = []
    for place in range(tasks):
        pacer = AdaptivePacer(share_rps)
        if on_grid:
            pacer.set_place(place, tasks)
        slots += [now + pacer.reserve() for _ in range(calls)]
    return slots


def test_a_fleet_on_its_grid_never_bunches_past_its_budget_in_any_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The clocks stand still: the pacers are made one after another, and on a busy machine the
    # time that passes meanwhile would shift one grid against the others.
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    # Three tasks at a third of 20 RPS each: 6.47 calls a second each after the headroom.
    share = 20 / 3
    fleet_rate = 3 * share * PACING_HEADROOM
    # Paced apart, their calls can meet: 3 x 7 = 21 calls in one second, over the 20 of the budget.
    assert busiest_second(fleet_slots(3, share, 40, on_grid=False)) == 21
    # On the grid they interleave as one pacer at 19.4 RPS would send them.
    on_grid = sorted(fleet_slots(3, share, 40, on_grid=True))
    assert busiest_second(on_grid) == math.ceil(fleet_rate) == 20
    gaps = [later - earlier for earlier, later in itertools.pairwise(on_grid)]
    assert min(gaps) == pytest.approx(1 / fleet_rate, abs=0.002)  # not 0, as when they meet


def test_a_pacer_on_its_grid_keeps_every_slot_while_callers_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The grid lives on the wall clock, read beside the monotonic one; the two reads are some
    # microseconds apart, and not always the same number. A slot one interval after the last,
    # on the grid, must not then look a hair past its grid point and skip to the next one: every
    # such skip loses a whole call of the task's share.
    pacer = AdaptivePacer(4)  # 3.88 calls a second: a third of a 12 RPS budget
    pacer.set_place(1, 3)
    wall = time.time
    jitter = itertools.cycle([0.0, 4e-6, -3e-6, 7e-6, -6e-6])
    monkeypatch.setattr(time, "time", lambda: wall() + next(jitter))
    slots = [time.monotonic() + pacer.reserve() for _ in range(400)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert max(gaps) == pytest.approx(1 / pacer.rate_rps, abs=1e-4)
    assert min(gaps) == pytest.approx(1 / pacer.rate_rps, abs=1e-4)


def test_a_pacer_off_its_full_share_leaves_the_grid() -> None:
    # Cut back by a throttle, the rate changes from call to call: no grid, no added wait.
    # (A slow rate, so that a snap to the grid, anywhere in an interval of a second, would show.)
    pacer = AdaptivePacer(2, decrease_factor=0.5, floor_rps=0.1)
    pacer.set_place(1, 2)
    pacer.throttled()
    first = pacer.reserve()
    # The throttle pushed the next slot one interval on; the grid would have moved it further.
    assert first == pytest.approx(1 / pacer.rate_rps, abs=0.005)
    assert pacer.reserve() - first == pytest.approx(1 / pacer.rate_rps, rel=1e-2)


async def test_no_more_calls_leave_in_one_second_than_the_rate_rounded_up() -> None:
    pacer = AdaptivePacer(10)  # 9.7 a second: at most 10 in any second
    # Ten calls left in the last half second (a late one and those on time after it, say).
    left_at = time.monotonic() - 0.5
    pacer._departures.extend([left_at] * 10)
    waited = await pacer.acquire()
    # Its slot was due at once; it waited for the oldest of the ten to be a second old.
    assert 0.45 <= waited < 1.0


async def test_the_backlog_is_the_waiting_callers_at_the_rate() -> None:
    pacer = AdaptivePacer(10)
    callers = [asyncio.create_task(pacer.acquire()) for _ in range(30)]
    await asyncio.sleep(0.05)  # the first has left; 29 wait, 9.7 a second
    assert pacer.backlog_s() == pytest.approx(29 / (10 * PACING_HEADROOM), rel=0.05)
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    assert pacer.waiting == 0


def test_a_cut_rate_stays_as_far_under_a_new_share() -> None:
    pacer = AdaptivePacer(40, decrease_factor=0.5)
    pacer.throttled()
    assert pacer.rate_rps == pytest.approx(20 * PACING_HEADROOM)
    pacer.set_budget(20)
    assert pacer.rate_rps == pytest.approx(10 * PACING_HEADROOM)
    pacer.set_budget(80)
    assert pacer.rate_rps == pytest.approx(40 * PACING_HEADROOM)
    assert pacer.ceiling_rps == pytest.approx(80 * PACING_HEADROOM)


async def test_a_new_share_applies_to_the_callers_already_waiting() -> None:
    pacer = AdaptivePacer(5)
    started = time.monotonic()
    waiting = [asyncio.ensure_future(pacer.acquire()) for _ in range(20)]
    await asyncio.sleep(0.05)
    pacer.set_budget(200)  # at 5 per second the twenty would need four seconds
    await asyncio.gather(*waiting)
    assert time.monotonic() - started < 2.0


async def test_a_smaller_share_slows_the_callers_already_waiting() -> None:
    pacer = AdaptivePacer(200)
    pacer.reserve()  # the next slot is now 5 ms away
    waiting = [asyncio.ensure_future(pacer.acquire()) for _ in range(6)]
    await asyncio.sleep(0)
    pacer.set_budget(5)  # 0.2 s apart from here on, not 5 ms
    started = time.monotonic()
    await asyncio.gather(*waiting)
    assert time.monotonic() - started >= 0.8


async def test_an_interactive_caller_takes_the_next_slot_ahead_of_waiting_bulk_callers() -> None:
    pacer = AdaptivePacer(20 / PACING_HEADROOM)  # one slot every 50 ms
    order: list[str] = []

    async def call(name: str, lane: Lane) -> None:
        await pacer.acquire(lane)
        order.append(name)

    bulk = [asyncio.create_task(call(f"bulk-{i}", Lane.BULK)) for i in range(8)]
    await asyncio.sleep(0.12)  # two or three bulk calls have left; the rest wait
    assert pacer.waiting_by_lane[Lane.BULK] >= 4
    left_when_it_came = len(order)
    live = asyncio.create_task(call("live", Lane.INTERACTIVE))
    await asyncio.gather(live, *bulk)
    # Next: the bulk call waiting out its slot gives the slot up.
    assert order.index("live") == left_when_it_came, order
    assert [name for name in order if name != "live"] == [f"bulk-{i}" for i in range(8)]


async def test_an_interactive_caller_behind_a_bulk_backlog_waits_at_most_one_spacing() -> None:
    pacer = AdaptivePacer(10 / PACING_HEADROOM)  # one slot every 100 ms
    departures: list[tuple[str, float]] = []

    async def call(name: str, lane: Lane) -> float:
        waited = await pacer.acquire(lane)
        departures.append((name, time.monotonic()))
        return waited

    started = time.monotonic()
    bulk = [asyncio.create_task(call(f"bulk-{i}", Lane.BULK)) for i in range(12)]
    waits = []
    for arrival in (0.13, 0.37, 0.61):  # each between two bulk slots
        await asyncio.sleep(arrival - (time.monotonic() - started))
        waits.append(await call(f"live-{arrival}", Lane.INTERACTIVE))
    await asyncio.gather(*bulk)
    assert max(waits) <= 0.1 + 0.02, waits
    # The slot given up was not an extra one: 15 calls, still 100 ms apart.
    times = [t for _, t in departures]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.1 - 0.01, gaps
    assert [n for n, _ in departures if n.startswith("bulk")] == [f"bulk-{i}" for i in range(12)]


async def test_bulk_callers_use_every_slot_the_interactive_ones_leave() -> None:
    pacer = AdaptivePacer(40 / PACING_HEADROOM)
    started = time.monotonic()
    await asyncio.gather(*(pacer.acquire(Lane.BULK) for _ in range(21)))
    # 21 calls at 40 a second: 20 intervals, the first call at once.
    assert time.monotonic() - started == pytest.approx(0.5, abs=0.08)


async def test_a_reserved_share_is_never_taken_by_bulk_callers() -> None:
    pacer = AdaptivePacer(40 / PACING_HEADROOM, reserved_share=0.5)
    started = time.monotonic()
    await asyncio.gather(*(pacer.acquire(Lane.BULK) for _ in range(11)))
    bulk_s = time.monotonic() - started
    # Half the rate: 10 intervals of 1/20 s.
    assert bulk_s == pytest.approx(0.5, abs=0.08)
    # Interactive callers still get the whole rate.
    started = time.monotonic()
    await asyncio.gather(*(pacer.acquire(Lane.INTERACTIVE) for _ in range(11)))
    assert time.monotonic() - started == pytest.approx(0.25, abs=0.08)


async def test_a_cancelled_waiter_gives_its_turn_on() -> None:
    pacer = AdaptivePacer(20 / PACING_HEADROOM)
    first = asyncio.create_task(pacer.acquire(Lane.BULK))
    second = asyncio.create_task(pacer.acquire(Lane.BULK))
    third = asyncio.create_task(pacer.acquire(Lane.INTERACTIVE))
    await asyncio.sleep(0)
    second.cancel()
    await asyncio.wait_for(asyncio.gather(first, third), timeout=1)
    assert pacer.waiting == 0
    assert second.cancelled()


async def test_waiters_cancelled_together_all_end_cancelled_and_the_pacer_goes_on() -> None:
    # A stop cancels every job waiting for the pacer at once; the turn passes over them.
    pacer = AdaptivePacer(20 / PACING_HEADROOM)
    holder = asyncio.create_task(pacer.acquire(Lane.BULK))
    waiters = [asyncio.create_task(pacer.acquire(Lane.BULK)) for _ in range(5)]
    await asyncio.sleep(0)
    for waiter in waiters:
        waiter.cancel()
    outcomes = await asyncio.gather(holder, *waiters, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[1:]), outcomes
    await asyncio.wait_for(pacer.acquire(Lane.INTERACTIVE), timeout=1)
    assert pacer.waiting == 0
