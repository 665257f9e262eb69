"""What the gateway asks of Cognito, where the emulator cannot show it.

moto sends no messages whatever ``MessageAction`` says, so the promise that an import sends the
user nothing is checked here, on the request itself.
"""

from typing import Any

import pytest

from worker.cognito.gateway import CognitoGateway
from worker.contract.jobs import MalformedJob, decode_job
from worker.settings import AppClient

APP_CLIENT = AppClient(client_id="client1", user_pool_id="us-east-1_pool", client_secret=None)


class RecordingClient:
    """Stands in for the aiobotocore Cognito client: records each call and answers it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def admin_create_user(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("AdminCreateUser", request))
        return {"User": {"Attributes": [{"Name": "sub", "Value": "sub-1"}]}}

    async def admin_set_user_password(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("AdminSetUserPassword", request))
        return {}


async def test_an_import_creates_silently_then_sets_the_password_permanently() -> None:
    client = RecordingClient()
    gateway = CognitoGateway({"us-east-1": client})  # type: ignore[dict-item]
    job = decode_job(
        '{"version": 1, "type": "import_user", "username": "mia", "password": "Pa55-word!",'
        ' "user_attributes": {"email": "mia@example.com", "email_verified": "true"},'
        ' "client_metadata": {"source": "migration"}}'
    )

    created = await gateway.execute(job, APP_CLIENT, "job-1", "AdminCreateUser")
    confirmed = await gateway.execute(job, APP_CLIENT, "job-1", "AdminSetUserPassword")

    (create_name, create), (set_name, set_password) = client.calls
    assert create_name == "AdminCreateUser"
    assert create["MessageAction"] == "SUPPRESS"
    assert "TemporaryPassword" not in create  # the real password is never sent as a temporary one
    assert "DesiredDeliveryMediums" not in create
    assert create["UserAttributes"] == [
        {"Name": "email", "Value": "mia@example.com"},
        {"Name": "email_verified", "Value": "true"},
    ]
    assert create["ClientMetadata"] == {"source": "migration", "job_id": "job-1"}
    assert set_name == "AdminSetUserPassword"
    assert set_password == {
        "UserPoolId": "us-east-1_pool",
        "Username": "mia",
        "Password": "Pa55-word!",
        "Permanent": True,
    }
    assert created.user_sub == "sub-1"
    assert confirmed.user_confirmed is True


async def test_an_invitation_lets_cognito_send_its_message_by_the_chosen_medium() -> None:
    client = RecordingClient()
    gateway = CognitoGateway({"us-east-1": client})  # type: ignore[dict-item]
    job = decode_job(
        '{"version": 1, "type": "invite_user", "username": "ines",'
        ' "user_attributes": {"email": "ines@example.com", "email_verified": "true"},'
        ' "delivery_mediums": ["EMAIL", "SMS"]}'
    )

    invited = await gateway.execute(job, APP_CLIENT, "job-2")

    ((name, create),) = client.calls
    assert name == "AdminCreateUser"
    # No MessageAction: Cognito's default, which sends the invitation; no password of ours.
    assert "MessageAction" not in create
    assert "TemporaryPassword" not in create
    assert create["DesiredDeliveryMediums"] == ["EMAIL", "SMS"]
    assert create["UserAttributes"] == [
        {"Name": "email", "Value": "ines@example.com"},
        {"Name": "email_verified", "Value": "true"},
    ]
    assert create["ClientMetadata"] == {"job_id": "job-2"}
    assert invited.user_sub == "sub-1"
    assert invited.user_confirmed is False


def test_an_invitation_is_by_email_unless_told_and_takes_no_password() -> None:
    job = decode_job('{"version": 1, "type": "invite_user", "username": "ines"}')
    assert getattr(job, "delivery_mediums", None) == ["EMAIL"]
    for bad, reason in (
        ('"password": "Pa55-word!"', "invite_user.password: Extra inputs are not permitted"),
        ('"delivery_mediums": []', "invite_user.delivery_mediums: List should have at least 1"),
        ('"delivery_mediums": ["PIGEON"]', "invite_user.delivery_mediums.0: Input should be"),
    ):
        with pytest.raises(MalformedJob) as rejected:
            decode_job(f'{{"version": 1, "type": "invite_user", "username": "i", {bad}}}')
        assert reason in str(rejected.value), (bad, str(rejected.value))
