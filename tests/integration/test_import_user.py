"""The import job: a user ready to sign in with the given password, created in two IAM-signed calls.

What moto verifies here: the user's status and attributes, and the password (its
AdminInitiateAuth checks it). What it does not: moto never sends a message whatever
``MessageAction`` says, so "nothing is sent to the user" rests on the request the worker builds,
checked in tests/unit/test_cognito_requests.py.
"""

import time

from tests.support.fault_proxy import FaultProxy
from tests.support.harness import (
    by_job_id,
    enqueue,
    job,
    read_results,
    run_worker,
    signs_in,
    through,
)
from worker.local.aws import Stack, aws_client

PASSWORD = "Imported-Passw0rd!"


def attributes(stack: Stack, username: str) -> dict[str, str]:
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    user = idp.admin_get_user(UserPoolId=stack.user_pool_id, Username=username)
    return {a["Name"]: a["Value"] for a in user["UserAttributes"]} | {"status": user["UserStatus"]}


def test_an_import_leaves_the_user_confirmed_with_its_own_password(
    stack: Stack, proxy: FaultProxy
) -> None:
    enqueue(
        stack,
        job("import_user", job_id="imp-1", username="migrated", password=PASSWORD,
            user_attributes={"email": "migrated@example.com", "email_verified": "true",
                             "given_name": "Mia"}),
    )  # fmt: skip

    run = run_worker(stack, **through(proxy.url))

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    (result,) = read_results(stack)
    user = attributes(stack, "migrated")
    assert result.body["status"] == "succeeded", result.body
    assert result.body["type"] == "import_user"
    assert result.body["user_sub"] == user["sub"]
    assert result.body["user_confirmed"] is True
    assert result.body["attempts"] == 2  # two calls, no retry
    assert user["status"] == "CONFIRMED"
    assert user["email_verified"] == "true"
    assert user["given_name"] == "Mia"
    assert signs_in(stack, "migrated", PASSWORD)
    users = proxy.stats()["users"]
    assert users["AdminCreateUser"] == {"migrated": 1}
    assert users["AdminSetUserPassword"] == {"migrated": 1}
    assert "SignUp" not in users


def test_a_failed_second_call_is_resumed_without_creating_the_user_again(
    stack: Stack, proxy: FaultProxy
) -> None:
    enqueue(stack, job("import_user", job_id="imp-2", username="resumed", password=PASSWORD))
    # The password call fails in two deliveries (one attempt each); the third goes through.
    proxy.add_rule("internal_error", service="cognito", operation="AdminSetUserPassword", times=2)

    run = run_worker(stack, **through(proxy.url, RETRY_MAX_ATTEMPTS="1", RETRY_BACKOFF_CAP_S="1"))

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    (result,) = read_results(stack)
    assert result.body["status"] == "succeeded", result.body
    users = proxy.stats()["users"]
    assert users["AdminCreateUser"] == {"resumed": 1}
    assert users["AdminSetUserPassword"] == {"resumed": 3}
    assert attributes(stack, "resumed")["status"] == "CONFIRMED"
    assert signs_in(stack, "resumed", PASSWORD)
    assert len(run.events("job handed back to the queue")) == 2


def test_a_lost_create_answer_is_taken_for_ours_only_when_this_job_created_the_user(
    stack: Stack, proxy: FaultProxy
) -> None:
    # An administrator's user from before the job was sent, still waiting for its first password:
    # the state most like the one an import's first call leaves.
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    idp.admin_create_user(
        UserPoolId=stack.user_pool_id, Username="earlier", MessageAction="SUPPRESS"
    )
    time.sleep(2)  # beyond the second of clock slack the check allows
    # Cognito acts on both creates, and both answers are lost: the retry meets an existing user.
    proxy.add_rule("reset", service="cognito", operation="AdminCreateUser", when="after", times=2)
    enqueue(
        stack,
        job("import_user", job_id="ours", username="created-here", password=PASSWORD),
        job("import_user", job_id="theirs", username="earlier", password=PASSWORD),
    )

    run = run_worker(stack, **through(proxy.url))

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    outcome = by_job_id(read_results(stack))
    assert outcome["ours"]["status"] == "succeeded", outcome["ours"]
    assert outcome["ours"]["detail"] == "created_by_an_earlier_attempt"
    assert signs_in(stack, "created-here", PASSWORD)
    assert outcome["theirs"]["status"] == "failed", outcome["theirs"]
    assert outcome["theirs"]["error"]["code"] == "UsernameExistsException"
    users = proxy.stats()["users"]
    assert users["AdminSetUserPassword"] == {"created-here": 1}  # never on the other user
    assert attributes(stack, "earlier")["status"] == "FORCE_CHANGE_PASSWORD"
    assert proxy.stats()["effects"]["AdminCreateUser"] == {"created-here": 1}


def test_an_import_job_refuses_fields_the_administrators_api_does_not_take(
    stack: Stack,
) -> None:
    enqueue(
        stack,
        job("import_user", job_id="bad", username="ctx", password=PASSWORD,
            user_context={"ip_address": "192.0.2.1"}),
    )  # fmt: skip
    run = run_worker(stack)
    assert run.returncode == 0
    (result,) = read_results(stack)
    assert result.body["status"] == "rejected"
    assert result.body["error"]["message"] == "import_user.user_context: Input should be None"


def test_a_user_pool_in_another_region_than_the_task(stack: Stack, proxy: FaultProxy) -> None:
    # The task runs in us-east-1 (AWS_REGION); this pool lives in eu-west-1. The import's calls
    # are IAM-signed for a Region, and moto keeps each Region's pools apart: a client of the
    # task's Region answers ResourceNotFoundException there, as AWS does. (The five hashed calls
    # are unsigned: Cognito takes their Region from the endpoint's host name, which a local
    # endpoint does not carry, so moto finds their client in any Region and they prove nothing
    # about Regions here.)
    abroad = aws_client("cognito-idp", stack.endpoints.moto, "eu-west-1")
    pool_id = abroad.create_user_pool(PoolName="abroad")["UserPool"]["Id"]
    assert pool_id.startswith("eu-west-1_")
    client = abroad.create_user_pool_client(
        UserPoolId=pool_id, ClientName="abroad", GenerateSecret=True
    )["UserPoolClient"]
    clients = (
        f'{{"{stack.client_id}": {{"user_pool_id": "{stack.user_pool_id}", '
        f'"client_secret": "{stack.client_secret}"}}, '
        f'"{client["ClientId"]}": {{"user_pool_id": "{pool_id}", '
        f'"client_secret": "{client["ClientSecret"]}"}}}}'
    )
    enqueue(
        stack,
        job("import_user", job_id="home", username="hal", password=PASSWORD),
        job("import_user", job_id="abroad", client_id=client["ClientId"], username="ines",
            password=PASSWORD),
    )  # fmt: skip

    run = run_worker(
        stack, **through(proxy.url, COGNITO_CLIENTS=clients, COGNITO_CLIENT_ID="",
                         COGNITO_USER_POOL_ID="", COGNITO_CLIENT_SECRET=""),
    )  # fmt: skip

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    outcome = by_job_id(read_results(stack))
    assert outcome["home"]["status"] == "succeeded", outcome["home"]
    assert outcome["abroad"]["status"] == "succeeded", outcome["abroad"]
    assert abroad.admin_get_user(UserPoolId=pool_id, Username="ines")["UserStatus"] == "CONFIRMED"
    assert attributes(stack, "hal")["status"] == "CONFIRMED"
    assert not run.events("configuration error: this client takes no work until a probe passes")
