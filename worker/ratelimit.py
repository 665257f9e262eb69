"""Client-side rate limiting per Cognito quota category, adaptive like TCP's congestion control.

Cognito counts requests per account and quota category, across every caller. Each category gets a
pacer that spaces calls evenly at its current rate. The ``RATE_*`` budgets belong to the whole
fleet: each task paces at its share (the budget divided by the tasks alive, see
:mod:`worker.fleet`), so the fleet together stays within the budget. What the fleet does not see
is the rest of the quota's traffic (the application's own users): a TooManyRequestsException cuts
the rate by a tenth, and calm raises it additively back up to the share (additive increase,
multiplicative decrease), so the fleet yields when that traffic takes more than its headroom.
"""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum


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
    ) -> None:
        self._floor_setting = floor_rps
        self._increase_setting = increase_rps_per_s
        self._decrease_factor = decrease_factor
        self.rate_rps = budget_rps * PACING_HEADROOM
        self._set_budget(budget_rps)
        self._next_slot = 0.0
        self._last_update = time.monotonic()
        self._last_cut = 0.0
        # Callers wait their turn in order; each takes its slot only when the one before it is
        # due, so a change of rate applies to the callers already waiting, not one queue later.
        self._turn = asyncio.Lock()

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

    def reserve(self) -> float:
        """Take the next free slot; return how long to wait for it, in seconds."""
        now = time.monotonic()
        self._recover(now)
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / self.rate_rps
        return slot - now

    async def acquire(self) -> float:
        """Wait for the next slot; return the time waited."""
        started = time.monotonic()
        async with self._turn:
            wait = self.reserve()
            if wait > 0:
                await asyncio.sleep(wait)
        return time.monotonic() - started

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


class RateLimiter:
    """One :class:`AdaptivePacer` per quota category, shared by every job in flight.

    ``budgets_rps`` are the fleet's budgets; the pacers run at this task's share of them.
    """

    def __init__(self, budgets_rps: dict[QuotaCategory, float]) -> None:
        self.fleet_budgets_rps = dict(budgets_rps)
        self.fleet_size = 1
        self.pacers = {category: AdaptivePacer(rps) for category, rps in budgets_rps.items()}

    def set_fleet_size(self, tasks: int) -> None:
        """Pace every category at its budget divided among ``tasks`` tasks."""
        self.fleet_size = max(1, tasks)
        for category, pacer in self.pacers.items():
            pacer.set_budget(self.fleet_budgets_rps[category] / self.fleet_size)

    def pacer(self, operation: str) -> AdaptivePacer:
        """The pacer of the category ``operation`` draws on."""
        return self.pacers[CATEGORY_OF_OPERATION[operation]]
