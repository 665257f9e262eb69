"""The adaptive pacer: even spacing at the rate, multiplicative cuts, additive recovery."""

import asyncio
import time

import pytest

from worker.ratelimit import (
    CATEGORY_OF_OPERATION,
    PACING_HEADROOM,
    AdaptivePacer,
    QuotaCategory,
    RateLimiter,
)


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
