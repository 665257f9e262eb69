"""The request rates Cognito enforces for this account, read with GetProvisionedLimit.

Cognito reports each quota category's enforced rate (the *provisioned* value, in RPS) beside
its free default; an account can raise an adjustable category up to its Service Quotas maximum
with UpdateProvisionedLimit. The SDK pinned here (botocore 1.40) predates both operations, so
this module teaches a botocore session the one it needs: ``models/`` holds a
``service-2.sdk-extras.json`` that botocore's loader merges into its own cognito-idp model (the
mechanism botocore keeps for additions to a service model). The operation and shapes follow the
API reference (GetProvisionedLimit, LimitDefinitionType, LimitType). A botocore whose own model
already has the operation is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from botocore.loaders import Loader
from botocore.session import Session

from worker.cognito.ratelimit import QuotaCategory

MODELS = Path(__file__).parent / "models"
OPERATION = "GetProvisionedLimit"


@cache
def _sdk_has_the_operation() -> bool:
    """Whether botocore's own cognito-idp model already has GetProvisionedLimit."""
    model = Loader().load_service_model("cognito-idp", "service-2")
    return OPERATION in model.get("operations", {})


def teach_provisioned_limits(session: Session) -> Session:
    """Let clients made by ``session`` call GetProvisionedLimit; return the session.

    Call before the session makes its first cognito-idp client: its loader caches models.
    """
    if not _sdk_has_the_operation():
        loader = session.get_component("data_loader")
        if str(MODELS) not in loader.search_paths:
            loader.search_paths.insert(0, str(MODELS))
    return session


@dataclass(frozen=True, slots=True)
class EnforcedLimit:
    """One category's rates, in requests per second."""

    category: QuotaCategory
    provisioned_rps: int  # what Cognito enforces now
    free_rps: int  # the default, included at no cost


async def enforced_limit(client: Any, category: QuotaCategory) -> EnforcedLimit:
    """Read one category's enforced rate through a cognito-idp client of a taught session.

    Raises the SDK's ClientError when Cognito refuses (no ``cognito-idp:GetProvisionedLimit``,
    a category it does not report) and its other errors when it cannot be reached.
    """
    answer = await client.get_provisioned_limit(
        LimitDefinition={"LimitClass": "API_CATEGORY", "Attributes": {"Category": category.value}}
    )
    limit = answer.get("Limit", {})
    return EnforcedLimit(
        category, int(limit.get("ProvisionedLimitValue", 0)), int(limit.get("FreeLimitValue", 0))
    )
