"""Client-side rate limiting per Cognito quota category, adaptive like TCP's congestion control.

Cognito counts requests per account and quota category, across every caller. Each category gets a
pacer that spaces calls evenly at its current rate. The ``RATE_*`` budgets belong to the whole
fleet: each task paces at its share (the budget divided by the tasks alive, see
:mod:`worker.cognito.fleet`), so the fleet together stays within the budget. What the fleet does not
see is the rest of the quota's traffic (the application's own users): a TooManyRequestsException
cuts the rate by a tenth, and calm raises it additively back up to the share (additive increase,
multiplicative decrease), so the fleet yields when that traffic takes more than its headroom.

Tasks that pace independently bunch: each at ``r`` calls a second puts ``ceil(r)`` calls in some
one-second windows, so ``n`` of them can put ``n * ceil(r)`` in one window, above the fleet's
``n * r`` (three tasks at 6.5 RPS: 21 calls in a window of a 20 RPS quota). So, while a task
paces at its full share, its calls keep to a grid on the wall clock that every task shares, at
its own place on it: task ``k`` of ``n`` calls at ``(m + k / n) / r`` seconds. Together the
fleet's calls are then spaced evenly, ``1 / (n * r)`` apart, as if one pacer sent them all.

Two lanes share each pacer (see :class:`worker.contract.jobs.Lane`): an interactive caller takes
the next slot ahead of every waiting bulk caller, and bulk callers take every slot the interactive
ones leave. A bulk call already waiting out its slot gives that slot up to an interactive caller
that arrives meanwhile and takes the next one, so an interactive caller waits at most one spacing,
never behind a bulk call. ``reserved_share`` of the rate can be kept from bulk callers altogether,
for interactive bursts that come faster than a receive: bulk calls are then spaced at the rest.

Slots are kept, but a busy event loop can set a call off late and the next one on time, so two
leave closer than the spacing: in any one second (counted a little longer, for the way to Cognito),
a pacer lets no more calls leave than its rate rounded up.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from enum import StrEnum
from typing import TYPE_CHECKING

from worker.contract.jobs import Lane

if TYPE_CHECKING:
    from worker.cognito.fleet import Standing


class QuotaCategory(StrEnum):
    """Cognito's request-rate quota categories of the operations the worker calls."""

    USER_CREATION = "UserCreation"
    USER_ACCOUNT_RECOVERY = "UserAccountRecovery"
    USER_RESOURCE_READ = "UserResourceRead"


#: Which quota each operation draws on (Cognito's "Quotas in Amazon Cognito").
CATEGORY_OF_OPERATION = {
    "SignUp": QuotaCategory.USER_CREATION,
    "ConfirmSignUp": QuotaCategory.USER_CREATION,
    "ForgotPassword": QuotaCategory.USER_ACCOUNT_RECOVERY,
    "ConfirmForgotPassword": QuotaCategory.USER_ACCOUNT_RECOVERY,
    "ResendConfirmationCode": QuotaCategory.USER_RESOURCE_READ,
    "AdminCreateUser": QuotaCategory.USER_CREATION,
    "AdminSetUserPassword": QuotaCategory.USER_ACCOUNT_RECOVERY,
}

# Calls are paced a little under the budget: requests set off evenly still reach Cognito a few
# milliseconds closer or further apart, and a quota counted per second would see that as a burst.
PACING_HEADROOM = 0.97
# The one-second cap counts departures over a little more than Cognito's second: a call reaches
# Cognito some milliseconds after it leaves, and not always the same number, so calls that left
# just over a second apart can arrive within one. (Measured against the proxy's strict window:
# one worker at the default quotas was throttled on 3-5 of 2,000 calls with a 1.00 s count, on
# 0-1 with 1.02 s.)
_COUNTED_OVER_S = 1.02
# A slot this close past a point of the grid is taken as on it (seconds; see _on_grid).
_ON_GRID_WITHIN_S = 0.001


class AdaptivePacer:
    """Spaces calls at ``rate`` per second; the rate adapts between ``floor`` and ``ceiling``.

    The ceiling is the budget less :data:`PACING_HEADROOM`.
    """

    def __init__(
        self,
        budget_rps: float,
        *,
        floor_rps: float = 1.0,
        decrease_factor: float = 0.9,
        increase_rps_per_s: float | None = None,
        reserved_share: float = 0.0,
    ) -> None:
        self._floor_setting = floor_rps
        self._bulk_share = 1.0 - reserved_share
        self._increase_setting = increase_rps_per_s
        self._decrease_factor = decrease_factor
        self.rate_rps = budget_rps * PACING_HEADROOM
        self._set_budget(budget_rps)
        self._next_slot = 0.0
        self._next_bulk_slot = 0.0
        self._last_update = time.monotonic()
        self._last_cut = 0.0
        # Where this task's calls fall on the fleet's grid (a fraction of one interval), or None
        # for a fleet of one, which needs no grid.
        self._phase: float | None = None
        # When the calls of the last second left, and how many callers of each lane wait.
        self._departures: collections.deque[float] = collections.deque()
        self.waiting_by_lane = dict.fromkeys(Lane, 0)
        # Callers wait their turn, interactive ones first, each lane in order of arrival; each
        # takes its slot only when the one before it is due, so a change of rate applies to the
        # callers already waiting, not one queue later.
        self._turn = _Turns()

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot, both lanes."""
        return sum(self.waiting_by_lane.values())

    def _set_budget(self, budget_rps: float) -> None:
        self.budget_rps = budget_rps
        self.ceiling_rps = budget_rps * PACING_HEADROOM
        self.floor_rps = min(self._floor_setting, self.ceiling_rps)
        # Back from one cut to the ceiling in about three seconds of calm.
        self._increase = self._increase_setting or max(
            0.5, self.ceiling_rps * (1 - self._decrease_factor) / 3
        )
        self.rate_rps = min(self.ceiling_rps, max(self.floor_rps, self.rate_rps))

    def set_budget(self, budget_rps: float) -> None:
        """Pace within a new budget (the share changed); a cut rate stays as far under it."""
        if budget_rps == self.budget_rps:
            return
        self._recover(time.monotonic())
        scaled = self.rate_rps * budget_rps / self.budget_rps
        self.rate_rps = scaled
        self._set_budget(budget_rps)

    def set_place(self, place: int, tasks: int) -> None:
        """Keep to place ``place`` (0-based) of ``tasks`` on the fleet's grid (see the module)."""
        self._phase = place / tasks if tasks > 1 else None

    def reserve(self, lane: Lane = Lane.INTERACTIVE) -> float:
        """Take the next free slot; return how long to wait for it, in seconds."""
        now = time.monotonic()
        self._recover(now)
        slot = max(now, self._next_slot)
        if lane is Lane.BULK and self._bulk_share < 1.0:
            # Bulk calls are spaced at their share only; the rest of the rate stays free.
            slot = max(slot, self._next_bulk_slot)
            self._next_bulk_slot = slot + 1.0 / (self.rate_rps * self._bulk_share)
        # Only at the full share: every task paces at the same rate then, so their grids
        # interleave. Below it (cut back, or climbing back) the rate changes from call to call,
        # and a grid that moved with it would only add waits.
        if self._phase is not None and self.rate_rps >= self.ceiling_rps:
            slot = self._on_grid(slot)
        self._next_slot = slot + 1.0 / self.rate_rps
        return slot - now

    def _on_grid(self, slot: float) -> float:
        """The first point of this task's grid at or after ``slot`` (monotonic seconds)."""
        assert self._phase is not None
        interval = 1.0 / self.rate_rps
        # The grid lives on the wall clock, the one clock the tasks share.
        wall_minus_monotonic = time.time() - time.monotonic()
        position = (slot + wall_minus_monotonic) / interval - self._phase
        # A slot already on the grid stays where it is. The two clocks are read some microseconds
        # apart, and not the same number each time, so a slot put on the grid one call ago can
        # look a hair past its point now; taken for late, it would skip a whole interval.
        steps = math.ceil(position - _ON_GRID_WITHIN_S / interval)
        return (steps + self._phase) * interval - wall_minus_monotonic

    async def acquire(self, lane: Lane = Lane.INTERACTIVE) -> float:
        """Wait for the next slot (ahead of bulk callers, for an interactive one); return the
        time waited."""
        started = time.monotonic()
        self.waiting_by_lane[lane] += 1
        try:
            given_up = False
            while True:
                await self._turn.take(lane, first=given_up)
                try:
                    earlier = (self._next_slot, self._next_bulk_slot)
                    wait = self.reserve(lane)
                    if lane is Lane.BULK:
                        reserved = (self._next_slot, self._next_bulk_slot)
                        given_up = await self._turn.wait_unless_interactive_comes(wait)
                        if given_up:
                            self._give_back(earlier, reserved)
                            continue  # the turn goes to the interactive caller, then back here
                    elif wait > 0:
                        await asyncio.sleep(wait)
                    await self._within_one_second()
                    return time.monotonic() - started
                finally:
                    self._turn.pass_on()
        finally:
            self.waiting_by_lane[lane] -= 1

    def _give_back(self, earlier: tuple[float, float], reserved: tuple[float, float]) -> None:
        """Undo a bulk call's reservation, so that the next caller takes the slot it held."""
        # A throttle meanwhile moved the next slot: its pause stands, and the slot is lost.
        if (self._next_slot, self._next_bulk_slot) == reserved:
            self._next_slot, self._next_bulk_slot = earlier

    async def _within_one_second(self) -> None:
        """Wait while this call would be one too many in the last second; then count it."""
        while True:
            now = time.monotonic()
            while self._departures and now - self._departures[0] >= _COUNTED_OVER_S:
                self._departures.popleft()
            if len(self._departures) < math.ceil(self.rate_rps):
                self._departures.append(now)
                return
            await asyncio.sleep(self._departures[0] + _COUNTED_OVER_S - now)

    def backlog_s(self, lane: Lane | None = None) -> float:
        """How long the callers waiting now (of ``lane``, or all) will take to leave, at the
        current rate."""
        waiting = self.waiting if lane is None else self.waiting_by_lane[lane]
        return waiting / self.rate_rps

    def throttled(self) -> None:
        """Cognito said TooManyRequests: cut the rate (once per burst of such answers)."""
        now = time.monotonic()
        self._recover(now)
        # The calls already on their way were paced at the old rate: one cut per round trip.
        if now - self._last_cut < max(0.5, 1.0 / self.rate_rps):
            return
        self._last_cut = now
        self.rate_rps = max(self.floor_rps, self.rate_rps * self._decrease_factor)
        self._next_slot = max(self._next_slot, now) + 1.0 / self.rate_rps

    def _recover(self, now: float) -> None:
        elapsed = now - self._last_update
        self._last_update = now
        if now - self._last_cut > 1.0:
            self.rate_rps = min(self.ceiling_rps, self.rate_rps + self._increase * elapsed)


class _Turns:
    """One caller at a time: the next turn goes to the first interactive caller waiting, else
    to the first bulk one."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: dict[Lane, collections.deque[asyncio.Future[None]]] = {
            lane: collections.deque() for lane in Lane
        }
        # Set while a bulk holder waits out its slot: an interactive caller's arrival ends it.
        self._bulk_wait: asyncio.Future[bool] | None = None

    async def take(self, lane: Lane, *, first: bool = False) -> None:
        """Wait for this caller's turn (ahead of its lane's other callers, if ``first``)."""
        if not self._held and not any(self._waiting.values()):
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiting[lane].appendleft(turn)
        else:
            self._waiting[lane].append(turn)
        if lane is Lane.INTERACTIVE and self._bulk_wait is not None and not self._bulk_wait.done():
            self._bulk_wait.set_result(True)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.pass_on()  # given the turn as it was cancelled: hand it on
            elif turn in self._waiting[lane]:  # (pass_on drops a cancelled turn it meets)
                self._waiting[lane].remove(turn)
            raise

    async def wait_unless_interactive_comes(self, seconds: float) -> bool:
        """Hold the turn ``seconds`` (a bulk caller waiting out its slot); True as soon as an
        interactive caller comes for the turn, which the holder should then give up."""
        if self._waiting[Lane.INTERACTIVE]:
            return True
        if seconds <= 0:
            return False
        loop = asyncio.get_running_loop()
        waited: asyncio.Future[bool] = loop.create_future()
        self._bulk_wait = waited
        timer = loop.call_later(seconds, _resolve, waited, False)
        try:
            return await waited
        finally:
            timer.cancel()
            self._bulk_wait = None

    def pass_on(self) -> None:
        """End the current turn: give it to the next caller, interactive ones first."""
        for lane in (Lane.INTERACTIVE, Lane.BULK):
            while self._waiting[lane]:
                turn = self._waiting[lane].popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._held = False


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class RateLimiter:
    """One :class:`AdaptivePacer` per quota category, shared by every job in flight.

    ``budgets_rps`` are the fleet's budgets; the pacers run at this task's share of them. A
    budget can be capped (:meth:`cap`) at the rate Cognito enforces, and the cap lifted.
    """

    def __init__(
        self, budgets_rps: dict[QuotaCategory, float], *, reserved_share: float = 0.0
    ) -> None:
        self.configured_budgets_rps = dict(budgets_rps)
        self.fleet_budgets_rps = dict(budgets_rps)
        self.pacers = {
            category: AdaptivePacer(rps, reserved_share=reserved_share)
            for category, rps in budgets_rps.items()
        }
        self._tasks = 1
        self._place = 0

    def set_fleet_size(self, tasks: int, place: int = 0) -> None:
        """Pace every category at its budget divided among ``tasks`` tasks, at place ``place``
        of the fleet's grid."""
        self._tasks = tasks = max(1, tasks)
        self._place = place
        for category, pacer in self.pacers.items():
            pacer.set_budget(self.fleet_budgets_rps[category] / tasks)
            pacer.set_place(place, tasks)

    def cap(self, category: QuotaCategory, limit_rps: float | None) -> float:
        """Hold the fleet's budget of ``category`` at most at ``limit_rps`` (None: no cap, the
        configured budget again); return the budget now in force."""
        configured = self.configured_budgets_rps[category]
        budget = configured if limit_rps is None else min(configured, limit_rps)
        if budget != self.fleet_budgets_rps[category]:
            self.fleet_budgets_rps[category] = budget
            self.pacers[category].set_budget(budget / self._tasks)
        return budget

    def set_standing(self, standing: Standing) -> None:
        """The fleet changed (see :mod:`worker.cognito.fleet`): pace at the new share."""
        self.set_fleet_size(standing.size, standing.place)

    def backlog_s(self, lane: Lane | None = None) -> float:
        """The longest a category's waiting callers (of ``lane``, or all) will take to leave
        (seconds)."""
        return max(pacer.backlog_s(lane) for pacer in self.pacers.values())

    def slowest_rate_rps(self) -> float:
        """The lowest rate a category is paced at now."""
        return min(pacer.rate_rps for pacer in self.pacers.values())

    def pacer(self, operation: str) -> AdaptivePacer:
        """The pacer of the category ``operation`` draws on."""
        return self.pacers[CATEGORY_OF_OPERATION[operation]]
