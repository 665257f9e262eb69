"""The real worker process, end to end, against moto server (and the Cognito front) over HTTP.

What moto verifies and what it does not (see worker/local/aws.py):
- moto never checks the SecretHash on the five job operations; the Cognito front does, with its
  own HMAC. The hash itself is checked independently in test_secret_hash_is_accepted_by_moto
  (moto's InitiateAuth USER_SRP_AUTH check) and in tests/unit/test_secret_hash.py (Node vectors).
- moto has no ResendConfirmationCode: the front answers it from the user's state in moto.
- moto does not check confirmation codes that it did not issue itself: a confirm succeeding here
  proves the request was well-formed and signed, not that a code was right.
"""

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.support.harness import (
    by_job_id,
    create_confirmed_user,
    create_unconfirmed_user,
    enqueue,
    job,
    queue_depth,
    read_results,
    run_worker,
    user_status,
    worker_env,
)
from worker.cognito.secret_hash import secret_hash
from worker.local.aws import Endpoints, Stack, aws_client, provision

from .conftest import BOTH_EMULATORS

pytestmark = BOTH_EMULATORS
PASSWORD = "Valid-Passw0rd!"


def test_every_job_type_reaches_cognito_and_its_result_the_topic(stack: Stack) -> None:
    create_unconfirmed_user(stack, "carl")
    create_unconfirmed_user(stack, "dana")
    create_confirmed_user(stack, "erin")
    create_confirmed_user(stack, "fay")
    message_ids = enqueue(
        stack,
        job("sign_up", job_id="j-sign-up", username="ann", password=PASSWORD,
            user_attributes={"email": "ann@example.com", "given_name": "Ann"},
            client_metadata={"source": "bulk"}, user_context={"ip_address": "192.0.2.10"}),
        job("confirm_sign_up", job_id="j-confirm", username="carl", confirmation_code="123456"),
        job("resend_confirmation_code", job_id="j-resend", username="dana"),
        job("forgot_password", job_id="j-forgot", username="erin"),
        job("confirm_forgot_password", job_id="j-reset", username="fay",
            confirmation_code="123456", password="New-Passw0rd!"),
        job("forgot_password", username="erin"),  # no job id: the SQS MessageId stands in
    )  # fmt: skip

    run = run_worker(stack)

    assert run.returncode == 0, run.stdout + run.stderr
    results = read_results(stack)
    assert len(results) == 6
    outcome = by_job_id(results)
    assert {r.body["status"] for r in results} == {"succeeded"}

    idp = aws_client("cognito-idp", stack.endpoints.moto)
    ann = idp.admin_get_user(UserPoolId=stack.user_pool_id, Username="ann")
    sub = next(a["Value"] for a in ann["UserAttributes"] if a["Name"] == "sub")
    assert ann["UserStatus"] == "UNCONFIRMED"
    assert outcome["j-sign-up"]["user_sub"] == sub
    assert outcome["j-sign-up"]["user_confirmed"] is False
    assert user_status(stack, "carl") == "CONFIRMED"
    assert outcome["j-confirm"]["user_confirmed"] is True
    assert outcome["j-resend"]["code_delivery"] == {
        "destination": "d***@e***", "delivery_medium": "EMAIL", "attribute_name": "email",
    }  # fmt: skip
    assert outcome["j-forgot"]["code_delivery"]["delivery_medium"] == "EMAIL"
    # The new password works: moto's InitiateAuth checks it.
    idp.admin_initiate_auth(
        UserPoolId=stack.user_pool_id, ClientId=stack.client_id, AuthFlow="ADMIN_NO_SRP_AUTH",
        AuthParameters={"USERNAME": "fay", "PASSWORD": "New-Passw0rd!",
                        "SECRET_HASH": secret_hash("fay", stack.client_id, stack.client_secret)},
    )  # fmt: skip
    assert outcome[message_ids[5]]["type"] == "forgot_password"
    for result in results:
        assert result.attributes == {
            "job_type": result.body["type"],
            "status": "succeeded",
            "client_id": stack.client_id,
            "lane": "interactive",
        }
        assert result.body["lane"] == "interactive"
        assert result.body["attempts"] == 1
        assert result.body["received_at"] <= result.body["finished_at"]
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    assert queue_depth(stack, stack.dead_letter_queue_url) == 0
    (line,) = [e for e in run.events("job finished") if e["job_id"] == "j-sign-up"]
    assert line["status"] == "succeeded"
    assert line["attempts"] == 1
    assert line["duration_ms"] > 0


def test_secret_hash_is_accepted_by_moto(stack: Stack) -> None:
    """moto checks SECRET_HASH in InitiateAuth USER_SRP_AUTH only: sign up through the worker,
    then authenticate with the worker's hash directly against moto (bypassing the front)."""
    enqueue(stack, job("sign_up", job_id="j1", username="srp.user-1", password=PASSWORD,
                       user_attributes={"email": "srp@example.com"}))  # fmt: skip
    assert run_worker(stack).returncode == 0
    assert by_job_id(read_results(stack))["j1"]["status"] == "succeeded"
    idp = aws_client("cognito-idp", stack.endpoints.moto)

    def srp(hash_value: str) -> str:
        try:
            idp.initiate_auth(
                ClientId=stack.client_id, AuthFlow="USER_SRP_AUTH",
                AuthParameters={"USERNAME": "srp.user-1", "SRP_A": "1", "SECRET_HASH": hash_value},
            )  # fmt: skip
        except idp.exceptions.ClientError as error:
            return str(error.response["Error"]["Code"])
        return "accepted"

    good = secret_hash("srp.user-1", stack.client_id, stack.client_secret)
    # Past the hash check, moto stops at the user's state: the hash was accepted.
    assert srp(good) in {"UserNotConfirmedException", "accepted"}
    assert srp(secret_hash("srp.user-1", stack.client_id, "not-the-secret")) == (
        "NotAuthorizedException"
    )


def test_permanent_errors_fail_the_job_and_delete_the_message(stack: Stack) -> None:
    create_confirmed_user(stack, "bob")
    enqueue(
        stack,
        job("sign_up", job_id="exists", username="bob", password=PASSWORD),
        job("sign_up", job_id="weak", username="walt", password="short"),
        job("confirm_sign_up", job_id="nobody", username="ghost", confirmation_code="1"),
        job("confirm_sign_up", job_id="again", username="bob", confirmation_code="1"),
    )
    run = run_worker(stack)
    assert run.returncode == 0
    outcome = by_job_id(read_results(stack))
    assert outcome["exists"]["status"] == "failed"
    assert outcome["exists"]["error"]["code"] == "UsernameExistsException"
    assert outcome["exists"]["error"]["retryable"] is False
    assert outcome["weak"]["error"]["code"] == "InvalidPasswordException"
    assert outcome["nobody"]["error"]["code"] == "UserNotFoundException"
    assert user_status(stack, "walt") is None
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    assert queue_depth(stack, stack.dead_letter_queue_url) == 0


def test_malformed_messages_are_rejected_and_moved_to_the_dlq(stack: Stack) -> None:
    bodies = [
        "not json at all",
        "[1, 2, 3]",
        job("delete_everything", job_id="m-unknown-type", username="ann"),
        job("sign_up", job_id="m-extra", username="ann", password=PASSWORD, admin=True),
        job("forgot_password", job_id="m-client", username="ann", client_id="notconfigured"),
        # Bodies that carry a password where the worker cannot tell it is one.
        '{"version": 1, "type": "sign_up", "username": "ann", "password": "' + PASSWORD,
        '{"version": 1, "type": "sign_up", "job_id": "m-twice", "username": "ann", '
        f'"password": "{PASSWORD}", "password": {{"encrypted": "AAAA"}}}}',
        job("sign_up", job_id="m-misspelt", username="ann", passwd=PASSWORD),
    ]
    message_ids = enqueue(stack, *bodies)
    run = run_worker(stack)
    assert run.returncode == 0
    results = read_results(stack)
    assert len(results) == len(bodies)
    assert {r.body["status"] for r in results} == {"rejected"}
    by_message = {r.body["sqs_message_id"]: r.body for r in results}
    assert by_message[message_ids[0]]["job_id"] is None
    assert "not JSON" in by_message[message_ids[0]]["error"]["message"]
    assert "not an object" in by_message[message_ids[1]]["error"]["message"]
    assert by_message[message_ids[2]]["job_id"] == "m-unknown-type"
    assert by_message[message_ids[3]]["type"] == "sign_up"
    assert "admin: Extra inputs are not permitted" in by_message[message_ids[3]]["error"]["message"]
    assert (
        "'notconfigured' is not a configured app client"
        in (by_message[message_ids[4]]["error"]["message"])
    )
    assert by_message[message_ids[6]]["error"]["message"] == (
        "duplicate key 'password': a JSON object names each field once"
    )
    assert all(r.body["error"]["code"] == "InvalidJob" for r in results)
    assert user_status(stack, "ann") is None
    # Nothing lost: every message is on the DLQ with its reason, matched to its result by
    # original_message_id. A copy keeps only what is provably not secret (docs/secrets.md):
    # the fields the contract names, never a password that is not encrypted, and of a body that
    # does not parse as one object its size alone.
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    dead: list[dict[str, Any]] = []
    while len(dead) < len(bodies):
        answer = sqs.receive_message(
            QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10,
            MessageAttributeNames=["All"], WaitTimeSeconds=1,
        )  # fmt: skip
        assert answer.get("Messages"), f"{len(dead)} of {len(bodies)} on the DLQ"
        dead += answer["Messages"]
    copies = {
        m["MessageAttributes"]["original_message_id"]["StringValue"]: json.loads(m["Body"])
        for m in dead
    }
    assert set(copies) == set(message_ids)
    unreadable = {"unreadable_body": {"bytes": len(bodies[0]), "kept": False}}
    assert copies[message_ids[0]] == unreadable
    assert copies[message_ids[1]] == {"unreadable_body": {"bytes": 9, "kept": False}}
    assert copies[message_ids[2]] == json.loads(bodies[2])
    assert copies[message_ids[3]] == {"version": 1, "type": "sign_up", "job_id": "m-extra",
                                      "username": "ann"}  # fmt: skip
    assert copies[message_ids[4]] == json.loads(bodies[4])
    assert copies[message_ids[5]] == {
        "unreadable_body": {"bytes": len(bodies[5].encode()), "kept": False}
    }
    assert "unreadable_body" in copies[message_ids[6]]
    assert copies[message_ids[7]] == {"version": 1, "type": "sign_up", "job_id": "m-misspelt",
                                      "username": "ann"}  # fmt: skip
    assert PASSWORD not in json.dumps([m["Body"] for m in dead])
    assert all(m["MessageAttributes"]["rejection_reason"]["StringValue"] for m in dead)
    assert queue_depth(stack, stack.jobs_queue_url) == 0


def test_without_a_dlq_setting_the_queues_redrive_policy_keeps_the_malformed(
    endpoints: Endpoints,
) -> None:
    stack = provision(endpoints, f"no-dlq-{uuid.uuid4().hex[:6]}", max_receive_count=1)
    enqueue(stack, "{broken")
    run = run_worker(stack, DEAD_LETTER_QUEUE_URL="", VISIBILITY_TIMEOUT_S="12", JOB_TIMEOUT_S="2")
    assert run.returncode == 0
    (result,) = read_results(stack)
    assert result.body["status"] == "rejected"
    # Not deleted by the worker: SQS moved it to the DLQ after maxReceiveCount receives.
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    assert queue_depth(stack, stack.dead_letter_queue_url) == 1


def test_several_app_clients_including_one_without_a_secret(stack: Stack) -> None:
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    public = idp.create_user_pool_client(
        UserPoolId=stack.user_pool_id, ClientName="public", GenerateSecret=False
    )["UserPoolClient"]["ClientId"]
    clients = (
        f'{{"{stack.client_id}": {{"user_pool_id": "{stack.user_pool_id}", '
        f'"client_secret": "{stack.client_secret}"}}, '
        f'"{public}": {{"user_pool_id": "{stack.user_pool_id}"}}}}'
    )
    enqueue(
        stack,
        job("sign_up", job_id="default", username="uma", password=PASSWORD),
        job("sign_up", job_id="public", client_id=public, username="vic", password=PASSWORD),
    )
    run = run_worker(
        stack, COGNITO_CLIENTS=clients, COGNITO_CLIENT_ID="", COGNITO_USER_POOL_ID="",
        COGNITO_CLIENT_SECRET="",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    results = read_results(stack)
    outcome = by_job_id(results)
    # The front refuses a hash sent for a client without a secret, and a missing one otherwise.
    assert outcome["default"]["status"] == "succeeded"
    assert outcome["default"]["client_id"] == stack.client_id
    assert outcome["public"]["status"] == "succeeded"
    assert outcome["public"]["client_id"] == public
    assert {r.attributes["client_id"] for r in results} == {stack.client_id, public}


def test_transient_errors_are_retried_then_handed_back_then_failed_and_dead_lettered(
    stack: Stack,
) -> None:
    """Straight to moto, ResendConfirmationCode answers HTTP 500 (moto lacks it): a real
    transient failure. Each delivery retries it in-process, then hands the message back with a
    backoff and no result; the fifth failed delivery (RETRY_MAX_DELIVERIES) publishes a retryable
    failure and moves the message to the DLQ, where a redrive can run it again."""
    create_unconfirmed_user(stack, "dana")
    enqueue(stack, job("resend_confirmation_code", job_id="r1", username="dana"))
    run = run_worker(
        stack,
        AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=stack.endpoints.moto,
        RETRY_MAX_ATTEMPTS="3",
        RETRY_BACKOFF_CAP_S="1",
    )
    assert run.returncode == 0
    (result,) = read_results(stack)
    assert result.body["status"] == "failed"
    assert result.body["error"]["retryable"] is True
    handed_back = run.events("job handed back to the queue")
    assert [event["receive_count"] for event in handed_back] == [1, 2, 3, 4]
    assert [event["visible_again_in_s"] for event in handed_back] == [1, 1, 1, 1]
    assert {event["attempts"] for event in handed_back} == {3}
    assert {event["error_class"] for event in handed_back} == {"TransientError"}
    assert len(run.events("cognito call will be retried")) == 2 * 5
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    (copy,) = sqs.receive_message(
        QueueUrl=stack.dead_letter_queue_url, MessageAttributeNames=["All"]
    )["Messages"]
    reason = copy["MessageAttributes"]["rejection_reason"]["StringValue"]
    assert reason.endswith("transient errors in 5 deliveries")


def test_without_a_dlq_setting_transient_failures_are_left_to_the_redrive_policy(
    endpoints: Endpoints,
) -> None:
    stack = provision(endpoints, f"no-dlq-{uuid.uuid4().hex[:6]}", max_receive_count=5)
    create_unconfirmed_user(stack, "dana")
    enqueue(stack, job("resend_confirmation_code", job_id="r2", username="dana"))
    run = run_worker(
        stack,
        AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=stack.endpoints.moto,
        DEAD_LETTER_QUEUE_URL="",
        RETRY_MAX_ATTEMPTS="1",
        RETRY_BACKOFF_CAP_S="1",
    )
    assert run.returncode == 0
    assert read_results(stack) == []
    handed_back = run.events("job handed back to the queue")
    assert [event["receive_count"] for event in handed_back] == [1, 2, 3, 4, 5]
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    assert queue_depth(stack, stack.dead_letter_queue_url) == 1


def test_a_wrong_client_secret_fails_no_job(stack: Stack) -> None:
    enqueue(stack, job("sign_up", job_id="w1", username="wendy", password=PASSWORD))
    run = run_worker(stack, COGNITO_CLIENT_SECRET="not-the-right-secret")
    assert run.returncode == 3  # burst mode gives up: nothing can be done until it is fixed
    assert read_results(stack) == []  # no failed result: the job is not to blame
    assert queue_depth(stack, stack.jobs_queue_url) == 1
    # The probe at start found it: the job was not even received.
    assert run.events("job handed back to the queue") == []
    (tripped,) = run.events("configuration error: this client takes no work until a probe passes")
    assert tripped["error_code"] == "NotAuthorizedException"
    assert "SecretHash does not match" in tripped["error_message"]
    assert user_status(stack, "wendy") is None


def test_by_default_import_user_is_refused_with_its_reason_and_kept_on_the_dlq(
    stack: Stack,
) -> None:
    """import_user creates a confirmed user with a permanent password and no message to the
    user: a deployment carries it out only where ACCEPTED_JOB_TYPES says so."""
    enqueue(
        stack,
        job("import_user", job_id="imp", username="mallory", password=PASSWORD,
            user_attributes={"email": "m@example.com", "email_verified": "true"}),
        job("sign_up", job_id="live", username="nina", password=PASSWORD),
    )  # fmt: skip
    environment = worker_env(stack)
    del environment["ACCEPTED_JOB_TYPES"]  # the worker's own default, as deployed
    run = subprocess.run([sys.executable, "-m", "worker", "run", "--exit-when-idle"],
                         env=environment, capture_output=True, text=True, timeout=90)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    outcome = by_job_id(read_results(stack))
    assert outcome["imp"]["status"] == "rejected"
    assert outcome["imp"]["error"]["code"] == "JobTypeNotAccepted"
    assert "ACCEPTED_JOB_TYPES" in outcome["imp"]["error"]["message"]
    assert outcome["live"]["status"] == "succeeded"
    assert user_status(stack, "mallory") is None
    (copy,) = drain_dead_letters(stack)
    assert json.loads(copy["Body"])["job_id"] == "imp"
    assert "password" not in json.loads(copy["Body"])  # a plaintext password is never kept


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": True}, "version"),
        ({"version": 1.0}, "version"),
        ({"job_id": "nul\u0000inside"}, "U+0000"),
        ({"job_id": "noncharacter\uffff"}, "U+FFFF"),
        ({"job_id": "bidi\u202eoverride"}, "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ],
)
def test_a_version_or_job_id_the_contract_refuses_is_rejected_readably(
    stack: Stack, change: dict[str, Any], reason: str
) -> None:
    body = json.dumps({"version": 1, "type": "sign_up", "job_id": "j", "username": "ann",
                       "password": PASSWORD, **change})  # fmt: skip
    (message_id,) = enqueue(stack, body)
    run = run_worker(stack)
    assert run.returncode == 0
    (result,) = read_results(stack)
    assert result.body["sqs_message_id"] == message_id
    assert result.body["status"] == "rejected"
    assert reason in result.body["error"]["message"], result.body["error"]
    assert result.body["job_id"] is None or result.body["job_id"].isprintable()
    # Results go out as SQS accepts them: no raw U+0000 / U+FFFF in the body.
    assert "\uffff" not in result.raw
    assert "\u0000" not in result.raw
    assert user_status(stack, "ann") is None


def drain_dead_letters(stack: Stack) -> list[dict[str, Any]]:
    """Every message on the stack's DLQ, with its attributes."""
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    messages: list[dict[str, Any]] = []
    while answer := sqs.receive_message(
        QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10,
        MessageAttributeNames=["All"], WaitTimeSeconds=0,
    ).get("Messages"):  # fmt: skip
        messages += answer
        sqs.delete_message_batch(
            QueueUrl=stack.dead_letter_queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                     for i, m in enumerate(answer)],
        )  # fmt: skip
    return messages
