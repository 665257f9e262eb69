"""CAP_BUDGETS_AT_ENFORCED_LIMITS: the fleet's budgets held within the rates Cognito enforces."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from worker.cognito.limit_watch import EnforcedLimitsWatch
from worker.cognito.ratelimit import QuotaCategory, RateLimiter

CREATION = QuotaCategory.USER_CREATION
RECOVERY = QuotaCategory.USER_ACCOUNT_RECOVERY
READ = QuotaCategory.USER_RESOURCE_READ


class Cognito:
    """Answers GetProvisionedLimit as Cognito's API reference gives it, from a table of rates;
    or refuses it, as Cognito does a role without cognito-idp:GetProvisionedLimit."""

    def __init__(self, rates: dict[str, int], refuse: bool = False) -> None:
        self.rates = rates
        self.refuse = refuse

    async def get_provisioned_limit(self, LimitDefinition: dict[str, Any]) -> dict[str, Any]:
        if self.refuse:
            error = {"Code": "AccessDeniedException", "Message": "not authorized"}
            raise ClientError({"Error": error}, "GetProvisionedLimit")
        category = LimitDefinition["Attributes"]["Category"]
        return {"Limit": {"ProvisionedLimitValue": self.rates[category], "FreeLimitValue": 50}}


def limiter(creation: float = 80, recovery: float = 30, read: float = 50) -> RateLimiter:
    return RateLimiter({CREATION: creation, RECOVERY: recovery, READ: read})


async def test_a_budget_above_the_enforced_rate_is_capped_and_the_share_follows() -> None:
    paced = limiter()
    paced.set_fleet_size(2)
    cognito = Cognito({"UserCreation": 50, "UserAccountRecovery": 30, "UserResourceRead": 50})
    with capture_logs() as logs:
        await EnforcedLimitsWatch(paced, {"us-east-1": cognito}).read_and_cap()
    assert paced.fleet_budgets_rps == {CREATION: 50, RECOVERY: 30, READ: 50}
    assert paced.pacers[CREATION].budget_rps == 25  # half of the capped budget, for two tasks
    (capped,) = [line for line in logs if line["event"] == "budget capped at the enforced limit"]
    assert capped.items() >= {
        "category": "UserCreation", "setting_rps": 80, "enforced_rps": 50, "budget_rps": 50,
    }.items()  # fmt: skip


async def test_a_raised_limit_lifts_the_cap_but_never_above_the_setting() -> None:
    paced = limiter()
    cognito = Cognito({"UserCreation": 50, "UserAccountRecovery": 30, "UserResourceRead": 50})
    watch = EnforcedLimitsWatch(paced, {"us-east-1": cognito})
    await watch.read_and_cap()
    cognito.rates["UserCreation"] = 120
    with capture_logs() as logs:
        await watch.read_and_cap()
    assert paced.fleet_budgets_rps[CREATION] == 80
    assert paced.pacers[CREATION].budget_rps == 80
    assert [line["event"] for line in logs] == ["budget back at its setting"]


async def test_an_unreadable_limit_leaves_the_budgets_and_is_said_once() -> None:
    paced = limiter(creation=40)
    watch = EnforcedLimitsWatch(paced, {"us-east-1": Cognito({}, refuse=True)})
    with capture_logs() as logs:
        await watch.read_and_cap()
        await watch.read_and_cap()
    assert paced.fleet_budgets_rps == {CREATION: 40, RECOVERY: 30, READ: 50}
    (unreadable,) = logs
    assert unreadable["event"] == "enforced limit unreadable: the budgets stay as they are"
    assert unreadable["reason"] == "AccessDeniedException: not authorized"
    assert unreadable["categories"] == ["UserCreation", "UserAccountRecovery", "UserResourceRead"]


async def test_pools_in_two_regions_take_the_lower_rate_of_each_category() -> None:
    paced = limiter(creation=100, read=100)
    east = Cognito({"UserCreation": 90, "UserAccountRecovery": 30, "UserResourceRead": 50})
    west = Cognito({"UserCreation": 60, "UserAccountRecovery": 30, "UserResourceRead": 70})
    await EnforcedLimitsWatch(paced, {"us-east-1": east, "us-west-2": west}).read_and_cap()
    assert paced.fleet_budgets_rps == {CREATION: 60, RECOVERY: 30, READ: 50}


async def test_an_answer_without_a_rate_is_not_taken_for_a_rate_of_zero() -> None:
    paced = limiter()
    cognito = Cognito({"UserCreation": 0, "UserAccountRecovery": 30, "UserResourceRead": 50})
    with capture_logs() as logs:
        await EnforcedLimitsWatch(paced, {"us-east-1": cognito}).read_and_cap()
    assert paced.fleet_budgets_rps[CREATION] == 80
    assert [line["event"] for line in logs] == [
        "enforced limit unreadable: the budgets stay as they are"
    ]
