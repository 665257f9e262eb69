"""Client-side rate limiting per Cognito quota category, adaptive like TCP's congestion control.

Cognito counts requests per account and quota category, across every caller. Each category gets a
pacer that spaces calls evenly at its current rate. A TooManyRequestsException cuts the rate by a
tenth; calm raises it additively, back up to the configured budget. Several tasks that
share one quota each back off when it is exceeded and creep back when it is not, so together they
settle near it without anyone splitting the quota by hand (additive increase, multiplicative
decrease).
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

#: The default quotas, in requests per second per account and Region.
DEFAULT_QUOTA_RPS = {
    QuotaCategory.USER_CREATION: 50.0,
    QuotaCategory.USER_ACCOUNT_RECOVERY: 30.0,
    QuotaCategory.USER_RESOURCE_READ: 50.0,
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
        self.budget_rps = budget_rps
        ceiling_rps = budget_rps * PACING_HEADROOM
        self.ceiling_rps = ceiling_rps
        self.floor_rps = min(floor_rps, ceiling_rps)
        self.rate_rps = ceiling_rps
        self._decrease_factor = decrease_factor
        # Back from one cut to the ceiling in about three seconds of calm.
        self._increase = increase_rps_per_s or max(0.5, ceiling_rps * (1 - decrease_factor) / 3)
        self._next_slot = 0.0
        self._last_update = time.monotonic()
        self._last_cut = 0.0

    def reserve(self) -> float:
        """Take the next free slot; return how long to wait for it, in seconds."""
        now = time.monotonic()
        self._recover(now)
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / self.rate_rps
        return slot - now

    async def acquire(self) -> float:
        """Wait for the next slot; return the time waited."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

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
    """One :class:`AdaptivePacer` per quota category, shared by every job in flight."""

    def __init__(self, budgets_rps: dict[QuotaCategory, float]) -> None:
        self.pacers = {category: AdaptivePacer(rps) for category, rps in budgets_rps.items()}

    def pacer(self, operation: str) -> AdaptivePacer:
        """The pacer of the category ``operation`` draws on."""
        return self.pacers[CATEGORY_OF_OPERATION[operation]]
