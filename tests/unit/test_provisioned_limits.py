"""GetProvisionedLimit: the model addition for the pinned SDK, and the local front's answers."""

import botocore.session
import pytest

from worker.cognito import limits
from worker.local.provisioned_limits import ProvisionedLimitError, ProvisionedLimits

CREATION = {"LimitClass": "API_CATEGORY", "Attributes": {"Category": "UserCreation"}}
RECOVERY = {"LimitClass": "API_CATEGORY", "Attributes": {"Category": "UserAccountRecovery"}}


def test_a_taught_session_makes_clients_that_know_the_operation() -> None:
    plain = botocore.session.get_session().create_client("cognito-idp", region_name="us-east-1")
    taught = limits.teach_provisioned_limits(botocore.session.get_session()).create_client(
        "cognito-idp", region_name="us-east-1"
    )
    # The pinned botocore lacks it; once one has it, the model addition can go.
    assert not hasattr(plain, "get_provisioned_limit")
    assert hasattr(taught, "get_provisioned_limit")
    # The SDK validates the request by the added shapes, as by its own.
    with pytest.raises(botocore.exceptions.ParamValidationError):
        taught.get_provisioned_limit(LimitDefinition={"LimitClass": "API_CATEGORY"})


def test_a_botocore_that_has_the_operation_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "_sdk_has_the_operation", lambda: True)
    session = limits.teach_provisioned_limits(botocore.session.get_session())
    assert str(limits.MODELS) not in session.get_component("data_loader").search_paths


def test_the_local_front_reports_free_rates_and_raises_only_adjustable_ones() -> None:
    front = ProvisionedLimits()
    assert front.handle("GetProvisionedLimit", {"LimitDefinition": CREATION})["Limit"] == {
        "FreeLimitValue": 50,
        "LimitDefinition": CREATION,
        "ProvisionedLimitValue": 50,
    }
    raised = front.handle(
        "UpdateProvisionedLimit", {"LimitDefinition": CREATION, "RequestedLimitValue": 80}
    )
    assert raised["Limit"]["ProvisionedLimitValue"] == 80
    with pytest.raises(ProvisionedLimitError, match="cannot be adjusted"):
        front.handle(
            "UpdateProvisionedLimit", {"LimitDefinition": RECOVERY, "RequestedLimitValue": 40}
        )
    with pytest.raises(ProvisionedLimitError, match="between 50 and"):
        front.handle(
            "UpdateProvisionedLimit", {"LimitDefinition": CREATION, "RequestedLimitValue": 10}
        )
