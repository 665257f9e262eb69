"""The fleet's budgets held within the rates Cognito enforces (``CAP_BUDGETS_AT_ENFORCED_LIMITS``).

A budget above the account's enforced rate would be throttled: every task's calls over it come
back ``TooManyRequestsException`` and cost the live application its share too. With the setting
on, the worker reads each category's enforced rate (GetProvisionedLimit, :mod:`limits`) at start
and every ``ENFORCED_LIMITS_INTERVAL_S``, and paces at the lower of it and the ``RATE_*`` budget,
logging each change. Where the pools lie in several Regions, each category takes the lowest rate
of those Regions: one limiter paces them all. A reading that fails (no
``cognito-idp:GetProvisionedLimit``, Cognito out of reach) keeps the budgets as they are and says
so; the next reading tries again. A cap never raises a budget: the setting is the most the
operator allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from worker.cognito.limits import enforced_limit
from worker.cognito.ratelimit import QuotaCategory, RateLimiter

log = structlog.get_logger(__name__)


class UnreportedLimit(Exception):
    """Cognito answered without an enforced rate for the category."""


class EnforcedLimitsWatch:
    """Reads the enforced rates of every Region's Cognito and caps the limiter's budgets."""

    def __init__(self, limiter: RateLimiter, cognito_by_region: Mapping[str, Any]) -> None:
        self._limiter = limiter
        self._cognito_by_region = cognito_by_region
        self._failure: str | None = None  # the last failure said, so a lasting one is said once

    async def read_and_cap(self) -> None:
        """One reading: cap each category at its enforced rate, or leave it if unreadable."""
        failures = []
        for category in self._limiter.pacers:
            try:
                limit = await self._lowest_enforced_rps(category)
            except (ClientError, BotoCoreError, OSError, TimeoutError, UnreportedLimit) as error:
                failures.append((category, _reason(error)))
                continue
            before = self._limiter.fleet_budgets_rps[category]
            budget = self._limiter.cap(category, limit)
            if budget != before:
                configured = self._limiter.configured_budgets_rps[category]
                capped = budget < configured
                log.warning(
                    "budget capped at the enforced limit"
                    if capped
                    else "budget back at its setting",
                    category=category.value,
                    setting_rps=configured,
                    enforced_rps=limit,
                    budget_rps=budget,
                )
        self._say(failures)

    async def _lowest_enforced_rps(self, category: QuotaCategory) -> float:
        rates = []
        for client in self._cognito_by_region.values():
            limit = await asyncio.wait_for(enforced_limit(client, category), timeout=10)
            if limit.provisioned_rps <= 0:
                raise UnreportedLimit(f"no enforced rate reported for {category.value}")
            rates.append(float(limit.provisioned_rps))
        return min(rates)

    def _say(self, failures: list[tuple[QuotaCategory, str]]) -> None:
        if not failures:
            if self._failure is not None:
                log.info("enforced limits readable again")
            self._failure = None
            return
        reason = failures[0][1]
        if reason != self._failure:
            log.warning(
                "enforced limit unreadable: the budgets stay as they are",
                categories=[c.value for c, _ in failures],
                budgets_rps={c.value: self._limiter.fleet_budgets_rps[c] for c, _ in failures},
                reason=reason,
            )
            self._failure = reason


def _reason(error: BaseException) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".strip(": ")
    return f"{type(error).__name__}: {error}"


@asynccontextmanager
async def enforced_limits_watch(
    watch: EnforcedLimitsWatch, interval_s: float
) -> AsyncIterator[EnforcedLimitsWatch]:
    """Read once before the block (the first call is paced within the limits), then every
    ``interval_s`` throughout it."""
    await watch.read_and_cap()

    async def keep_reading() -> None:
        while True:
            await asyncio.sleep(interval_s)
            await watch.read_and_cap()

    reading = asyncio.create_task(keep_reading())
    try:
        yield watch
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
