"""The local Cognito front's GetProvisionedLimit and UpdateProvisionedLimit, which moto lacks.

Each quota category the worker paces starts at Cognito's documented free rate (UserCreation 50,
UserAccountRecovery 30, UserResourceRead 50 RPS). UpdateProvisionedLimit sets an adjustable
category between that rate and a local account maximum, as Cognito does up to the Service Quotas
maximum; UserAccountRecovery cannot be raised. What this cannot show: the real account-level
maximum, and billing for provisioned capacity. No quota is enforced here: the limits are only
reported (the tests' fault proxy enforces quotas where a test needs one).
"""

from __future__ import annotations

import threading
from typing import Any

OPERATIONS = frozenset({"GetProvisionedLimit", "UpdateProvisionedLimit"})
# (free rate, whether the account can raise it), per the Cognito quotas page.
FREE_LIMITS_RPS: dict[str, tuple[int, bool]] = {
    "UserCreation": (50, True),
    "UserAccountRecovery": (30, False),
    "UserResourceRead": (50, True),
}
LOCAL_ACCOUNT_MAXIMUM_RPS = 1000


class ProvisionedLimitError(Exception):
    """An error answer of the Cognito API: its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ProvisionedLimits:
    """The account's provisioned rate of each category, as the local front reports them."""

    def __init__(self) -> None:
        self._provisioned = {name: free for name, (free, _) in FREE_LIMITS_RPS.items()}
        self._lock = threading.Lock()

    def handle(self, operation: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Answer one operation."""
        category = self._category(parameters)
        free, adjustable = FREE_LIMITS_RPS[category]
        with self._lock:
            if operation == "UpdateProvisionedLimit":
                self._update(category, free, adjustable, parameters.get("RequestedLimitValue"))
            provisioned = self._provisioned[category]
        return {
            "Limit": {
                "FreeLimitValue": free,
                "LimitDefinition": {"LimitClass": "API_CATEGORY",
                                    "Attributes": {"Category": category}},
                "ProvisionedLimitValue": provisioned,
            }
        }  # fmt: skip

    @staticmethod
    def _category(parameters: dict[str, Any]) -> str:
        definition = parameters.get("LimitDefinition") or {}
        category = str((definition.get("Attributes") or {}).get("Category", ""))
        if definition.get("LimitClass") != "API_CATEGORY" or category not in FREE_LIMITS_RPS:
            known = ", ".join(FREE_LIMITS_RPS)
            raise ProvisionedLimitError(
                "InvalidParameterException",
                f"LimitDefinition must be LimitClass API_CATEGORY with a Category of {known}",
            )
        return category

    def _update(self, category: str, free: int, adjustable: bool, requested: Any) -> None:
        if not adjustable:
            raise ProvisionedLimitError(
                "InvalidParameterException", f"the {category} limit cannot be adjusted"
            )
        if not isinstance(requested, int) or not free <= requested <= LOCAL_ACCOUNT_MAXIMUM_RPS:
            raise ProvisionedLimitError(
                "InvalidParameterException",
                f"RequestedLimitValue must be between {free} and {LOCAL_ACCOUNT_MAXIMUM_RPS}",
            )
        self._provisioned[category] = requested
