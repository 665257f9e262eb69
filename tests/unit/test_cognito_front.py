"""The local AWS's Cognito front: what it does apart from moto (see worker/local/aws.py)."""

import asyncio
import json
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from worker.local.aws import CognitoFront, _check_email, _Client, _hash


async def test_a_burst_of_calls_for_a_client_not_yet_known_looks_the_client_up_once() -> None:
    # The front learns each app client's secret from moto the first time it is named. A worker
    # starting sends tens of calls at once; each of them listing every pool through moto, one
    # after another, kept the first calls of a run waiting up to two seconds.
    front = CognitoFront("http://127.0.0.1:9")  # moto is not reached: the lookup is replaced
    lookups = 0

    def look_up_clients() -> None:
        nonlocal lookups
        lookups += 1
        time.sleep(0.05)
        front._clients["client-1"] = _Client("us-east-1_pool", "the-secret")

    front._refresh_clients = look_up_clients  # type: ignore[method-assign]
    calls = [
        {
            "ClientId": "client-1",
            "Username": name,
            "SecretHash": _hash(name, "client-1", "the-secret"),
        }
        for name in (f"user-{i}" for i in range(20))
    ]
    clients = await asyncio.gather(*(front._check_secret_hash(call) for call in calls))
    assert lookups == 1
    assert {client.user_pool_id for client in clients} == {"us-east-1_pool"}


@pytest.mark.parametrize(
    "email", ["ann@example.com@example.com", "ann", "ann@example", "ann smith@example.com", ""]
)
async def test_an_email_that_is_not_an_address_is_refused_as_cognito_refuses_it(
    email: str,
) -> None:
    # moto stores any text as an email, or creates the user and answers HTTP 500.
    front = CognitoFront("http://127.0.0.1:9")  # moto is not reached: refused before
    front._clients["client-1"] = _Client("us-east-1_pool", "the-secret")
    sign_up = {
        "ClientId": "client-1",
        "Username": "ann",
        "SecretHash": _hash("ann", "client-1", "the-secret"),
        "Password": "Corr3ct-Horse!",
        "UserAttributes": [{"Name": "email", "Value": email}],
    }
    create = {"UserPoolId": "us-east-1_pool", "Username": "ann", "UserAttributes": [
        {"Name": "email", "Value": email}]}  # fmt: skip
    async with TestClient(TestServer(front.app())) as client:
        for operation, request in (("SignUp", sign_up), ("AdminCreateUser", create)):
            answer = await client.post(
                "/",
                data=json.dumps(request),
                headers={"X-Amz-Target": f"AWSCognitoIdentityProviderService.{operation}"},
            )
            assert answer.status == 400
            assert await answer.json(content_type=None) == {
                "__type": "InvalidParameterException",
                "message": "Invalid email address format.",
            }


@pytest.mark.parametrize("email", ["ann@example.com", "zoë+tag@example.co.uk", "a.b@c.d"])
def test_an_email_address_passes(email: str) -> None:
    _check_email({"UserAttributes": [{"Name": "email", "Value": email}]})
