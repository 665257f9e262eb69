"""The task role under IAM enforcement: its grants are enough for the worker, and each is needed.

A moto server of its own enforces IAM (tests/support/iam_aws.py, which also says what moto checks
and what it does not). An administrator creates the stack in its CloudFormation (accepting every
job type, as a deployment that runs imports would), and an IAM user holds the task role's policy
as the template writes it, resolved against the created resources. The worker runs with that
user's key and the task definition's environment. An operator holding the permissions
docs/imports.md lists runs ``cognito-worker import --wait`` beside it.

Where moto checks less than AWS, the tests do not lean on it:

- SNS, KMS, DynamoDB and Cognito are checked by action alone (the user's statements for them get
  the resource ``*``, see ``as_moto_evaluates``); that each statement names the stack's own
  resource is checked in the template's text (tests/unit/test_deploy_stack.py). SQS is checked by
  resource: the task role may receive from both lanes' jobs queues and send to their DLQs, and
  is refused receiving from either DLQ.
- No resource policy is evaluated: not the KMS key's (so the Deny that keeps Decrypt to the task
  role, and what the producers may do, are tested in tests/unit/test_key_policy.py), not the
  queue policy (only the task role receives, TLS only) nor the topic policy, which moto's
  CloudFormation does not even create.
- No condition is evaluated: ``aws:SecureTransport``, ``aws:PrincipalArn``, ``kms:ViaService``,
  ``aws:PrincipalIsAWSService``, ``aws:SourceAccount``, ``aws:SourceArn``,
  ``kms:EncryptionContext:aws:logs:arn``. They are tested against the template's text.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.harness import (
    Published,
    WorkerRun,
    finish,
    run_worker,
    start_worker,
    wait_for,
    worker_env,
)
from tests.support.iam_aws import IamAws, Keys, as_moto_evaluates, cognito_front, enforcing_moto
from tests.support.stack import (
    Deployed,
    deploy,
    load_template,
    operator_policy,
    parameters,
    task_role_policy,
)
from worker.cognito.fleet import ROSTER_KEY
from worker.cognito.secret_hash import secret_hash
from worker.contract.fields import FieldEncryptor
from worker.local.aws import REGION, Endpoints, Stack
from worker.producer import look_up_jobs, prepare_job

PASSWORD = "Iam-Passw0rd!"
NEW_PASSWORD = "Iam-New-Passw0rd!"


@dataclass(frozen=True)
class IamStack:
    """The stack in the enforcing moto, the task role's key, and how the harness reaches it."""

    aws: IamAws
    deployed: Deployed
    policy: dict[str, Any]  # the task role's, resolved from the template
    adapted: dict[str, Any]  # the same, as moto can evaluate it
    task: Keys
    stack: Stack
    environment: dict[str, str]  # the worker's, from the task definition

    @property
    def outputs(self) -> dict[str, str]:
        return self.deployed.outputs


@pytest.fixture(scope="module")
def iam_aws() -> Iterator[IamAws]:
    with enforcing_moto() as aws:
        yield aws


@pytest.fixture(scope="module")
def iam(iam_aws: IamAws) -> Iterator[IamStack]:
    aws = iam_aws
    idp = aws.client("cognito-idp")
    pool_id = idp.create_user_pool(
        PoolName="iam",
        AutoVerifiedAttributes=["email"],
        AccountRecoverySetting={"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
    )["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="iam-client", GenerateSecret=True
    )["UserPoolClient"]
    name = f"iam-{uuid.uuid4().hex[:6]}"
    deployed = deploy(
        aws.client("cloudformation"),
        name,
        parameters(pool_id, client["ClientId"], AcceptedJobTypes="all"),
    )
    policy = task_role_policy(deployed, aws.client("sqs"), aws.client("dynamodb"))
    adapted, _changes = as_moto_evaluates(policy)
    task = aws.principal("task-role", adapted)

    sqs = aws.client("sqs")
    results_url = sqs.create_queue(QueueName=f"{name}-results")["QueueUrl"]
    results_arn = sqs.get_queue_attributes(QueueUrl=results_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    aws.client("sns").subscribe(
        TopicArn=deployed.outputs["ResultsTopicArn"],
        Protocol="sqs",
        Endpoint=results_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    with cognito_front(aws) as front:
        stack = Stack(
            endpoints=Endpoints(moto=aws.url, cognito=front),
            user_pool_id=pool_id,
            client_id=client["ClientId"],
            client_secret=client["ClientSecret"],
            jobs_queue_url=deployed.outputs["JobsQueueUrl"],
            dead_letter_queue_url=deployed.outputs["DeadLetterQueueUrl"],
            results_topic_arn=deployed.outputs["ResultsTopicArn"],
            results_queue_url=results_url,
            bulk_jobs_queue_url=deployed.outputs["BulkJobsQueueUrl"],
            bulk_dead_letter_queue_url=deployed.outputs["BulkDeadLetterQueueUrl"],
        )
        environment = {
            **deployed.task_environment(aws.client("ecs")),
            "COGNITO_CLIENT_SECRET": client["ClientSecret"],  # the task definition's `secrets`
            "RECEIVE_WAIT_S": "1",  # so that --exit-when-idle ends soon
            "HEALTH_PORT": "0",
            # The task role's key: every call the worker makes is signed with it.
            "AWS_ACCESS_KEY_ID": task.access_key_id,
            "AWS_SECRET_ACCESS_KEY": task.secret_access_key,
        }
        yield IamStack(aws, deployed, policy, adapted, task, stack, environment)


@pytest.fixture
def producer_env(iam: IamStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process's own KMS calls (the producer's) go to the enforcing moto, as the
    administrator (moto does not read the key policy's ProducersEncrypt anyway)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", iam.aws.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", iam.aws.admin.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", iam.aws.admin.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def encrypted(iam: IamStack, **fields: Any) -> str:
    """A job body with its password and code encrypted under the stack's key."""
    job = {"version": 1, **fields}
    return prepare_job(job, encryptor=FieldEncryptor(iam.outputs["SecretsKeyArn"])).body


def send(iam: IamStack, *bodies: str, queue: str = "JobsQueueUrl") -> None:
    sqs = iam.aws.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=iam.outputs[queue], MessageBody=body)


def results(iam: IamStack) -> list[Published]:
    """Everything published so far, read (and deleted) from the subscribed queue."""
    sqs = iam.aws.client("sqs")
    read: list[Published] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=iam.stack.results_queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return read
        for message in messages:
            attributes = {
                k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()
            }
            read.append(Published(json.loads(message["Body"]), attributes, message["Body"]))
            sqs.delete_message(
                QueueUrl=iam.stack.results_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )


def dead_letters(iam: IamStack, queue: str = "DeadLetterQueueUrl") -> list[dict[str, Any]]:
    sqs = iam.aws.client("sqs")
    messages: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=iam.outputs[queue],
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=iam.outputs[queue], ReceiptHandle=message["ReceiptHandle"])
    return messages


def user(iam: IamStack, username: str, *, confirmed: bool) -> None:
    """A user in the pool, made by the administrator (or signed up, when unconfirmed)."""
    idp = iam.aws.client("cognito-idp")
    if confirmed:
        idp.admin_create_user(
            UserPoolId=iam.stack.user_pool_id,
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": f"{username}@example.com"},
                {"Name": "email_verified", "Value": "true"},
            ],
        )
        idp.admin_set_user_password(
            UserPoolId=iam.stack.user_pool_id,
            Username=username,
            Password=PASSWORD,
            Permanent=True,
        )
    else:
        idp.sign_up(
            ClientId=iam.stack.client_id,
            Username=username,
            Password=PASSWORD,
            SecretHash=secret_hash(username, iam.stack.client_id, iam.stack.client_secret),
            UserAttributes=[{"Name": "email", "Value": f"{username}@example.com"}],
        )


def denied(call: Any, **arguments: Any) -> bool:
    """Whether moto refuses the call for want of permission (moto answers SQS, KMS, DynamoDB
    and Cognito refusals as an XML AccessDenied under a bare 403 code; SNS as AccessDenied)."""
    try:
        call(**arguments)
    except ClientError as error:
        text = json.dumps(error.response, default=str)
        if "AccessDenied" in text or "is not authorized to perform" in text:
            return True
        raise
    return False


def roster_members(iam: IamStack) -> set[str]:
    item = (
        iam.aws.client("dynamodb")
        .get_item(
            TableName=iam.outputs["IdempotencyTableName"],
            Key={"pk": {"S": ROSTER_KEY}},
            ConsistentRead=True,
        )
        .get("Item", {})
    )
    return set(item.get("members", {}).get("M", {}))


def no_refusal_in(run: WorkerRun) -> None:
    seen = run.stdout + run.stderr
    for sign in ("AccessDenied", "not authorized", "InvalidClientTokenId", "SignatureDoesNotMatch"):
        assert sign not in seen, seen[-4000:]


def test_the_policy_given_is_the_templates_and_moto_needs_only_these_changes(
    iam: IamStack,
) -> None:
    statements = {s["Sid"]: s for s in iam.policy["Statement"]}
    assert statements["ConsumeJobs"]["Resource"] == iam.outputs["JobsQueueArn"]
    assert statements["ConsumeBulkJobs"]["Resource"] == iam.outputs["BulkJobsQueueArn"]
    assert statements["PublishResults"]["Resource"] == iam.outputs["ResultsTopicArn"]
    assert statements["FieldAndQueueKey"]["Resource"] == iam.outputs["SecretsKeyArn"]
    assert statements["IdempotencyStore"]["Resource"].endswith(
        f":table/{iam.outputs['IdempotencyTableName']}"
    )
    assert statements["CognitoImports"]["Resource"] == (
        f"arn:aws:cognito-idp:us-east-1:123456789012:userpool/{iam.stack.user_pool_id}"
    )
    _adapted, changes = as_moto_evaluates(iam.policy)
    assert changes == [
        "ConsumeJobs: + sqs:DeleteMessageBatch, sqs:ChangeMessageVisibilityBatch "
        "(moto's names for batches)",
        "DeadLetterMalformed: + sqs:SendMessageBatch (moto's names for batches)",
        "ConsumeBulkJobs: + sqs:DeleteMessageBatch, sqs:ChangeMessageVisibilityBatch "
        "(moto's names for batches)",
        "BulkDeadLetterMalformed: + sqs:SendMessageBatch (moto's names for batches)",
        f"PublishResults: resource {iam.outputs['ResultsTopicArn']} -> * "
        "(moto checks sns by action only)",
        "PublishResults: + sns:PublishBatch (moto's names for batches)",
        f"CognitoImports: resource {statements['CognitoImports']['Resource']} -> * "
        "(moto checks cognito-idp by action only)",
        f"FieldAndQueueKey: resource {iam.outputs['SecretsKeyArn']} -> * "
        "(moto checks kms by action only)",
        f"IdempotencyStore: resource {statements['IdempotencyStore']['Resource']} -> * "
        "(moto checks dynamodb by action only)",
    ]


def test_every_job_type_and_the_store_work_with_the_task_roles_grants_in_a_fleet_of_two(
    iam: IamStack, producer_env: None
) -> None:
    user(iam, "una", confirmed=False)  # confirm_sign_up
    user(iam, "ulla", confirmed=False)  # resend_confirmation_code
    user(iam, "fern", confirmed=True)  # forgot_password
    user(iam, "flo", confirmed=True)  # confirm_forgot_password
    # Another task of the fleet, already in the roster when the second one starts: both beat
    # (UpdateItem, PutItem) and count each other through the stack's table.
    first = start_worker(iam.stack, **iam.environment)
    try:
        wait_for(lambda: len(roster_members(iam)) == 1, timeout_s=30)
        send(
            iam,
            encrypted(iam, type="sign_up", job_id="t-sign-up", username="sam", password=PASSWORD,
                      user_attributes={"email": "sam@example.com"}),
            encrypted(iam, type="confirm_sign_up", job_id="t-confirm", username="una",
                      confirmation_code="123456"),
            encrypted(iam, type="resend_confirmation_code", job_id="t-resend", username="ulla"),
            encrypted(iam, type="forgot_password", job_id="t-forgot", username="fern"),
            encrypted(iam, type="confirm_forgot_password", job_id="t-reset", username="flo",
                      confirmation_code="123456", password=NEW_PASSWORD),
            # Rejected: plaintext where the stack requires encryption (copied nowhere), and a
            # body that is no job (copied to the DLQ: SendMessage on it).
            json.dumps({"version": 1, "type": "sign_up", "job_id": "t-plain",
                        "username": "pat", "password": PASSWORD}),
            json.dumps({"version": 1, "type": "sign_up", "job_id": "t-no-job"}),
        )  # fmt: skip
        # The bulk lane, under its own grants: an import's job, and a body that is no job
        # (copied to the bulk lane's DLQ: SendMessage on that one).
        send(
            iam,
            encrypted(iam, type="import_user", job_id="t-import", username="ivo",
                      password=PASSWORD, user_attributes={"email": "ivo@example.com"}),
            json.dumps({"version": 1, "type": "import_user", "job_id": "t-bulk-no-job"}),
            queue="BulkJobsQueueUrl",
        )  # fmt: skip
        second = run_worker(iam.stack, **iam.environment)
    finally:
        first.send_signal(signal.SIGTERM)
        first_run = finish(first)

    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert first_run.returncode == 0, first_run.stdout[-3000:] + first_run.stderr[-3000:]
    for run in (first_run, second):
        no_refusal_in(run)
        # The probe at start (ConfirmSignUp, then AdminGetUser on the pool) under the grants.
        assert run.events("configuration verified at start"), run.stdout[-3000:]
        assert run.events("fleet heartbeat failed") == []
    assert [e["tasks"] for e in second.events("joined the fleet")] == [2]
    assert roster_members(iam) == set()  # both left

    published = results(iam)
    outcome: dict[str, list[str]] = {}
    for result in published:
        outcome.setdefault(result.body["job_id"], []).append(result.body["status"])
    lanes = {r.body["job_id"]: r.body.get("lane") for r in published}
    assert lanes["t-import"] == "bulk"
    assert lanes["t-sign-up"] == "interactive"
    assert outcome == {
        "t-sign-up": ["succeeded"],
        "t-confirm": ["succeeded"],
        "t-resend": ["succeeded"],
        "t-forgot": ["succeeded"],
        "t-reset": ["succeeded"],
        "t-import": ["succeeded"],
        "t-plain": ["rejected"],
        "t-no-job": ["rejected"],
        "t-bulk-no-job": ["rejected"],
    }, [r.body for r in published if r.body["status"] != "succeeded"]
    idp = iam.aws.client("cognito-idp")
    assert idp.admin_get_user(UserPoolId=iam.stack.user_pool_id, Username="ivo")["UserStatus"] == (
        "CONFIRMED"
    )
    (letter,) = dead_letters(iam)
    assert json.loads(letter["Body"])["job_id"] == "t-no-job"
    assert "rejection_reason" in letter["MessageAttributes"]
    (bulk_letter,) = dead_letters(iam, "BulkDeadLetterQueueUrl")
    assert json.loads(bulk_letter["Body"])["job_id"] == "t-bulk-no-job"
    for queue in ("JobsQueueUrl", "BulkJobsQueueUrl"):
        depth = iam.aws.client("sqs").get_queue_attributes(
            QueueUrl=iam.outputs[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert set(depth.values()) == {"0"}, queue

    # The sign-up delivered again: its claim is refused, and the store's record (GetItem) answers
    # it with the stored result; SignUp does not reach Cognito again (it would fail: the user
    # exists).
    duplicate = encrypted(
        iam, type="sign_up", job_id="t-sign-up", username="sam", password=PASSWORD,
        user_attributes={"email": "sam@example.com"},
    )  # fmt: skip
    send(iam, duplicate)
    again = run_worker(iam.stack, **iam.environment)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    no_refusal_in(again)
    (repeated,) = results(iam)
    first_result = next(r.body for r in published if r.body["job_id"] == "t-sign-up")
    assert repeated.body["status"] == "succeeded"
    assert repeated.body["user_sub"] == first_result["user_sub"]


@pytest.fixture(scope="module")
def ciphertext(iam: IamStack) -> bytes:
    blob: bytes = iam.aws.client("kms").encrypt(
        KeyId=iam.outputs["SecretsKeyArn"], Plaintext=b"field"
    )["CiphertextBlob"]
    return blob


def without(policy: dict[str, Any], sid: str) -> dict[str, Any]:
    return {**policy, "Statement": [s for s in policy["Statement"] if s["Sid"] != sid]}


#: Each grant, and a call of the worker's it alone allows.
GRANTS = {
    "ConsumeJobs": ("sqs", "receive_message", "jobs"),
    "DeadLetterMalformed": ("sqs", "send_message", "dlq"),
    "ConsumeBulkJobs": ("sqs", "receive_message", "bulk"),
    "BulkDeadLetterMalformed": ("sqs", "send_message", "bulk-dlq"),
    "PublishResults": ("sns", "publish", "topic"),
    "FieldAndQueueKey": ("kms", "decrypt", "key"),
    "IdempotencyStore": ("dynamodb", "get_item", "table"),
    "CognitoImports": ("cognito-idp", "admin_get_user", "pool"),
}


def arguments(iam: IamStack, target: str, ciphertext: bytes) -> dict[str, Any]:
    return {
        "jobs": {"QueueUrl": iam.outputs["JobsQueueUrl"], "WaitTimeSeconds": 0},
        "dlq": {"QueueUrl": iam.outputs["DeadLetterQueueUrl"], "MessageBody": "{}"},
        "bulk": {"QueueUrl": iam.outputs["BulkJobsQueueUrl"], "WaitTimeSeconds": 0},
        "bulk-dlq": {"QueueUrl": iam.outputs["BulkDeadLetterQueueUrl"], "MessageBody": "{}"},
        "topic": {"TopicArn": iam.outputs["ResultsTopicArn"], "Message": "{}"},
        "key": {"CiphertextBlob": ciphertext},
        "table": {"TableName": iam.outputs["IdempotencyTableName"], "Key": {"pk": {"S": "x"}}},
        "pool": {"UserPoolId": iam.stack.user_pool_id, "Username": "gina"},
    }[target]


@pytest.mark.parametrize("sid", sorted(GRANTS))
def test_each_grant_is_needed(iam: IamStack, ciphertext: bytes, sid: str) -> None:
    """A principal with every grant of the task role but one is refused what that one allows;
    the task role itself is not."""
    service, operation, target = GRANTS[sid]
    lacking = iam.aws.principal(f"lacks-{sid}", without(iam.adapted, sid))
    call_arguments = arguments(iam, target, ciphertext)
    if sid == "CognitoImports":
        user(iam, "gina", confirmed=True)  # a user the call can find
    assert denied(getattr(iam.aws.client(service, lacking), operation), **call_arguments)
    assert not denied(getattr(iam.aws.client(service, iam.task), operation), **call_arguments)
    dead_letters(iam)  # the DLQ probes' messages
    dead_letters(iam, "BulkDeadLetterQueueUrl")


def test_without_the_pool_grant_the_probe_at_start_opens_the_breaker_and_says_why(
    iam: IamStack,
) -> None:
    """The pool check of the configuration probe is AdminGetUser: a task role without it would
    fail every import and every lost sign-up answer, and is told at start, before any job."""
    lacking = iam.aws.principal("lacks-pool-read", without(iam.adapted, "CognitoImports"))
    run = run_worker(
        iam.stack,
        **{
            **iam.environment,
            "AWS_ACCESS_KEY_ID": lacking.access_key_id,
            "AWS_SECRET_ACCESS_KEY": lacking.secret_access_key,
        },
    )
    assert run.returncode == 3, run.stdout[-3000:]
    (gave_up,) = run.events(
        "burst mode gives up: every app client's configuration is broken; nothing was received"
    )
    assert gave_up["clients"] == {
        iam.stack.client_id: "AccessDeniedException (check the task role's Cognito permissions)"
    }


def test_a_principal_without_the_grants_is_refused_the_queue_the_key_and_the_table(
    iam: IamStack, ciphertext: bytes
) -> None:
    nobody = iam.aws.principal("no-grants", None)
    assert denied(
        iam.aws.client("sqs", nobody).receive_message,
        QueueUrl=iam.outputs["JobsQueueUrl"],
        WaitTimeSeconds=0,
    )
    assert denied(iam.aws.client("kms", nobody).decrypt, CiphertextBlob=ciphertext)
    table = {"TableName": iam.outputs["IdempotencyTableName"], "Key": {"pk": {"S": "x"}}}
    assert denied(iam.aws.client("dynamodb", nobody).get_item, **table)
    # The same calls with the task role's key go through: the refusals are the grants' doing.
    assert not denied(
        iam.aws.client("sqs", iam.task).receive_message,
        QueueUrl=iam.outputs["JobsQueueUrl"],
        WaitTimeSeconds=0,
    )
    plaintext = iam.aws.client("kms", iam.task).decrypt(CiphertextBlob=ciphertext)["Plaintext"]
    assert plaintext == b"field"
    assert not denied(iam.aws.client("dynamodb", iam.task).get_item, **table)


def test_the_task_role_cannot_do_what_the_worker_never_does(iam: IamStack) -> None:
    sqs = iam.aws.client("sqs", iam.task)
    dynamodb = iam.aws.client("dynamodb", iam.task)
    idp = iam.aws.client("cognito-idp", iam.task)
    kms = iam.aws.client("kms", iam.task)
    sns = iam.aws.client("sns", iam.task)
    table = iam.outputs["IdempotencyTableName"]
    assert denied(idp.admin_delete_user, UserPoolId=iam.stack.user_pool_id, Username="fern")
    assert denied(idp.list_users, UserPoolId=iam.stack.user_pool_id)
    assert denied(dynamodb.delete_table, TableName=table)
    assert denied(dynamodb.delete_item, TableName=table, Key={"pk": {"S": ROSTER_KEY}})
    assert denied(dynamodb.scan, TableName=table)
    assert denied(sqs.purge_queue, QueueUrl=iam.outputs["JobsQueueUrl"])
    assert denied(sqs.send_message, QueueUrl=iam.outputs["JobsQueueUrl"], MessageBody="{}")
    assert denied(sqs.purge_queue, QueueUrl=iam.outputs["BulkJobsQueueUrl"])
    assert denied(sqs.send_message, QueueUrl=iam.outputs["BulkJobsQueueUrl"], MessageBody="{}")
    # SQS is where moto checks the resource: the DLQ may be sent to, never read.
    assert denied(
        sqs.receive_message, QueueUrl=iam.outputs["DeadLetterQueueUrl"], WaitTimeSeconds=0
    )
    assert denied(kms.schedule_key_deletion, KeyId=iam.outputs["SecretsKeyArn"])
    assert denied(kms.encrypt, KeyId=iam.outputs["SecretsKeyArn"], Plaintext=b"x")
    assert denied(sns.subscribe, TopicArn=iam.outputs["ResultsTopicArn"], Protocol="sqs",
                  Endpoint="arn:aws:sqs:us-east-1:123456789012:elsewhere")  # fmt: skip
    assert denied(iam.aws.client("iam", iam.task).list_users)
    # Still alive: nothing above was done.
    admin = iam.aws.client("dynamodb")
    assert admin.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"


def test_moto_ignores_what_the_key_policy_would_refuse(iam: IamStack, ciphertext: bytes) -> None:
    """moto reads no key policy: here a principal the key policy's OnlyTheWorkerDecrypts denies
    (any but the task role, outside SQS and SNS) decrypts once IAM allows it. What the key policy
    refuses is tested in its text (tests/unit/test_key_policy.py), never through moto. Should this
    fail, moto has begun to read key policies, and those tests can move here."""
    other = iam.aws.principal(
        "decrypts-elsewhere",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}],
        },
    )
    answer = iam.aws.client("kms", other).decrypt(CiphertextBlob=ciphertext)
    assert base64.b64encode(answer["Plaintext"]) == base64.b64encode(b"field")


IMPORTS_DOC = Path(__file__).parents[2] / "docs" / "imports.md"


def documented_import_actions() -> list[str]:
    """The actions docs/imports.md says the identity running ``import --wait`` needs."""
    text = " ".join(IMPORTS_DOC.read_text(encoding="utf-8").split())
    paragraph = text[text.index("The IAM identity running the import then needs") :]
    paragraph = paragraph[: paragraph.index("--lane interactive")]
    # The import sends to the bulk lane by default: the docs name that queue's ARN output.
    assert "on the bulk jobs queue (`BulkJobsQueueArn`" in paragraph, paragraph
    return re.findall(r"`((?:sqs|sns):\w+)`", paragraph)


def test_an_operator_with_the_documented_import_permissions_imports_and_waits(
    iam: IamStack, tmp_path: Path
) -> None:
    actions = documented_import_actions()
    assert {"sqs:SendMessage", "sqs:CreateQueue", "sns:Subscribe"} <= set(actions), actions
    # The docs name no resource but the bulk jobs queue's (the results queue is created on the fly).
    key_statements = {
        s["Sid"]: s
        for s in load_template()["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]
    }
    operator_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "SendJobs", "Effect": "Allow", "Action": "sqs:SendMessage",
             "Resource": iam.outputs["BulkJobsQueueArn"]},
            {"Sid": "FollowResults", "Effect": "Allow",
             "Action": [a for a in actions if a != "sqs:SendMessage"], "Resource": "*"},
            # In AWS the key policy's ProducersEncrypt grants these to the ProducerPrincipalArns;
            # moto reads no key policy, so the operator holds them as its own.
            {"Sid": "ProducersEncrypt", "Effect": "Allow",
             "Action": key_statements["ProducersEncrypt"]["Action"], "Resource": "*"},
        ],
    }  # fmt: skip
    adapted, _changes = as_moto_evaluates(operator_policy)
    operator = iam.aws.principal("operator", adapted)
    (tmp_path / "people.csv").write_text(
        f"username,password,email\nola,{PASSWORD},ola@example.com\n"
        f"oren,{PASSWORD},oren@example.com\n",
        encoding="utf-8",
    )
    worker = start_worker(iam.stack, **iam.environment)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "worker", "import", "people.csv", "--type", "sign_up",
             "--import-id", "ops-1", "--kms-key-arn", iam.outputs["SecretsKeyArn"],
             "--wait", "--wait-timeout-s", "60", "--report", "r.csv",
             "--progress-interval-s", "0.2"],
            env=worker_env(iam.stack, AWS_ACCESS_KEY_ID=operator.access_key_id,
                           AWS_SECRET_ACCESS_KEY=operator.secret_access_key),
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        worker.send_signal(signal.SIGTERM)
        ran = finish(worker)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    no_refusal_in(ran)
    assert "results: 2/2 rows" in done.stdout, done.stdout
    report = (tmp_path / "r.csv").read_text(encoding="utf-8")
    assert report.count(",succeeded,") == 2, report
    # The temporary results queue and its subscription are gone: DeleteQueue, Unsubscribe.
    left = iam.aws.client("sqs").list_queues(QueueNamePrefix="cognito-worker-results-ops-1")
    assert left.get("QueueUrls", []) == []
    subscriptions = iam.aws.client("sns").list_subscriptions_by_topic(
        TopicArn=iam.outputs["ResultsTopicArn"]
    )["Subscriptions"]
    assert [s for s in subscriptions if "ops-1" in s["Endpoint"]] == []


def test_the_task_role_receives_from_the_bulk_queue_and_never_from_its_dlq(iam: IamStack) -> None:
    """SQS is where moto checks the resource: the role's grant on the bulk lane is its queue,
    and its DLQ may be sent to (a malformed bulk message), never read."""
    sqs = iam.aws.client("sqs", iam.task)
    assert not denied(
        sqs.receive_message, QueueUrl=iam.outputs["BulkJobsQueueUrl"], WaitTimeSeconds=0
    )
    assert denied(
        sqs.receive_message, QueueUrl=iam.outputs["BulkDeadLetterQueueUrl"], WaitTimeSeconds=0
    )
    assert not denied(
        sqs.send_message, QueueUrl=iam.outputs["BulkDeadLetterQueueUrl"], MessageBody="{}"
    )
    dead_letters(iam, "BulkDeadLetterQueueUrl")


def operator_tool(
    iam: IamStack, keys: Keys, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`python -m worker ARGS` as an operator runs it, with the task definition's settings and
    the operator's own key."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=worker_env(iam.stack, **{**iam.environment, "AWS_ACCESS_KEY_ID": keys.access_key_id,
                                     "AWS_SECRET_ACCESS_KEY": keys.secret_access_key}),
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_stacks_operator_policy_runs_check_dlq_and_job_and_nothing_less_does(
    iam: IamStack, tmp_path: Path
) -> None:
    policy = operator_policy(iam.deployed, iam.aws.client("sqs"), iam.aws.client("dynamodb"))
    adapted, _changes = as_moto_evaluates(policy)
    operator = iam.aws.principal("on-call", adapted)
    # A job the queue's redrive policy moved to the DLQ (the administrator stands in for SQS).
    stranded = f"stranded-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"version": 1, "job_id": stranded, "type": "forgot_password",
                       "username": "nobody-at-all"})  # fmt: skip
    send(iam, body, queue="DeadLetterQueueUrl")

    summary = operator_tool(iam, operator, tmp_path, "dlq", "summary", "--json")
    assert summary.returncode == 0, summary.stdout[-3000:] + summary.stderr[-3000:]
    assert json.loads(summary.stdout.splitlines()[-1])["read"] >= 1
    redriven = operator_tool(iam, operator, tmp_path, "dlq", "redrive", "--job-id", stranded)
    assert redriven.returncode == 0, redriven.stdout[-3000:] + redriven.stderr[-3000:]
    sqs = iam.aws.client("sqs")
    moved = sqs.receive_message(QueueUrl=iam.outputs["JobsQueueUrl"], WaitTimeSeconds=1)
    assert [json.loads(m["Body"])["job_id"] for m in moved.get("Messages", [])] == [stranded]
    for message in moved["Messages"]:  # not left for the other tests' workers
        sqs.delete_message(QueueUrl=iam.outputs["JobsQueueUrl"],
                           ReceiptHandle=message["ReceiptHandle"])  # fmt: skip
    looked_up = operator_tool(iam, operator, tmp_path, "job", stranded)
    assert looked_up.returncode == 3, looked_up.stdout + looked_up.stderr  # 3: no record of it
    # An import's --resume reads the rows an earlier run sent, a hundred a BatchGetItem.
    table = iam.outputs["IdempotencyTableName"]
    resumed = look_up_jobs(table, [stranded, "another"], client_id=iam.stack.client_id,
                           client=iam.aws.client("dynamodb", operator))  # fmt: skip
    assert resumed == {stranded: None, "another": None}
    checked = operator_tool(iam, operator, tmp_path, "check")
    # The probe's AdminGetUser on the pool (CheckPool): the pool found, under the policy alone.
    assert (
        f"ok   app client {iam.stack.client_id}: pool {iam.stack.user_pool_id} found"
        in checked.stdout
    ), checked.stdout
    for run in (summary, redriven, looked_up, checked):
        for sign in ("AccessDenied", "not authorized"):
            assert sign not in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-3000:]

    # Without it, the same commands are refused.
    stranger = iam.aws.principal("stranger", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]})  # fmt: skip
    refused = operator_tool(iam, stranger, tmp_path, "dlq", "summary")
    assert refused.returncode != 0
    assert "AccessDenied" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    looked_up = operator_tool(iam, stranger, tmp_path, "job", stranded)
    assert looked_up.returncode == 1, looked_up.stdout + looked_up.stderr
    with pytest.raises(ClientError, match="AccessDenied"):
        look_up_jobs(table, [stranded], client_id=iam.stack.client_id,
                     client=iam.aws.client("dynamodb", stranger))  # fmt: skip
