"""deploy/cloudformation.yaml created in moto's CloudFormation, and the worker run on what it made.

The stack is created in the session's local AWS (moto server over HTTP). moto cannot create five
of the template's resource types (tests/support/stack.py lists them, each with what it is); they
are left out of the template handed to moto and covered by tests of the template's own text in
tests/unit/test_deploy_stack.py. Everything else is created, and the worker runs with the task
definition's own environment, as ECS would start it, on the stack's queues, topic, table and key.
What moto's CloudFormation drops is not checked here either, but in the template's text: the
table's TimeToLiveSpecification, the task definition's TaskRoleArn; nor does moto's SQS encrypt
with the queues' key.
"""

import ast
import dataclasses
import json
import uuid

import pytest
from moto.cloudformation.parsing import get_model_map

from tests.support.harness import read_results, run_worker
from tests.support.stack import NOT_IN_MOTO, Deployed, deploy, load_template, parameters
from worker.contract.fields import FieldEncryptor
from worker.local.aws import REGION, Endpoints, Stack, aws_client
from worker.producer import prepare_job

PASSWORD = "Stack-Passw0rd!"


@pytest.fixture
def pool(local_endpoints: Endpoints) -> tuple[str, str, str]:
    """A user pool and its app client (with a secret), which the stack takes as parameters."""
    idp = aws_client("cognito-idp", local_endpoints.moto)
    pool_id = idp.create_user_pool(PoolName=f"stack-{uuid.uuid4().hex[:6]}")["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="stack-client", GenerateSecret=True
    )["UserPoolClient"]
    return pool_id, client["ClientId"], client["ClientSecret"]


@pytest.fixture
def deployed(local_endpoints: Endpoints, pool: tuple[str, str, str]) -> Deployed:
    pool_id, client_id, _secret = pool
    cloudformation = aws_client("cloudformation", local_endpoints.moto)
    return deploy(cloudformation, f"cw-{uuid.uuid4().hex[:8]}", parameters(pool_id, client_id))


def test_what_is_left_out_is_exactly_what_moto_cannot_create(local_endpoints: Endpoints) -> None:
    template = load_template()
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert {t for t in types if t not in get_model_map()} == set(NOT_IN_MOTO)

    # Handed the whole template, moto reports success and creates none of them: the stack lists
    # one resource with no logical id for each.
    cloudformation = aws_client("cloudformation", local_endpoints.moto)
    name = f"whole-{uuid.uuid4().hex[:8]}"
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[
            {"ParameterKey": k, "ParameterValue": v}
            for k, v in parameters("us-east-1_Whole1", "whole1").items()
        ],
    )
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    listed = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    skipped = [s for s in listed if not s["LogicalResourceId"]]
    expected = [r for r in template["Resources"].values() if r["Type"] in NOT_IN_MOTO]
    assert len(skipped) == len(expected) == 11


def test_the_stack_holds_every_other_resource_as_the_template_says(
    deployed: Deployed, local_endpoints: Endpoints
) -> None:
    template = load_template()
    assert set(deployed.resources) == set(template["Resources"]) - set(deployed.left_out)
    assert sorted(deployed.outputs) == sorted(template["Outputs"])

    sqs = aws_client("sqs", local_endpoints.moto)
    jobs = sqs.get_queue_attributes(
        QueueUrl=deployed.outputs["JobsQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    dlq = sqs.get_queue_attributes(
        QueueUrl=deployed.outputs["DeadLetterQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    key_id = deployed.outputs["SecretsKeyArn"].rsplit("/", 1)[1]
    assert jobs["QueueArn"] == deployed.outputs["JobsQueueArn"]
    assert json.loads(jobs["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq["QueueArn"],
        "maxReceiveCount": 1000,
    }
    assert (jobs["VisibilityTimeout"], jobs["MessageRetentionPeriod"]) == ("60", "345600")
    assert dlq["MessageRetentionPeriod"] == "1209600"
    assert jobs["KmsMasterKeyId"] == dlq["KmsMasterKeyId"] == key_id

    # The bulk lane, as created: the same as the interactive one but for its own DLQ.
    bulk = sqs.get_queue_attributes(
        QueueUrl=deployed.outputs["BulkJobsQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    bulk_dlq = sqs.get_queue_attributes(
        QueueUrl=deployed.outputs["BulkDeadLetterQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    assert bulk["QueueArn"] == deployed.outputs["BulkJobsQueueArn"]
    assert bulk_dlq["QueueArn"] not in (jobs["QueueArn"], dlq["QueueArn"], bulk["QueueArn"])
    assert json.loads(bulk["RedrivePolicy"]) == {
        "deadLetterTargetArn": bulk_dlq["QueueArn"],
        "maxReceiveCount": 1000,
    }
    alike = ("VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
             "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds")  # fmt: skip
    assert {k: bulk[k] for k in alike} == {k: jobs[k] for k in alike}
    assert {k: bulk_dlq[k] for k in alike} == {k: dlq[k] for k in alike}

    topic = aws_client("sns", local_endpoints.moto).get_topic_attributes(
        TopicArn=deployed.outputs["ResultsTopicArn"]
    )["Attributes"]
    assert topic["KmsMasterKeyId"] == key_id

    dynamodb = aws_client("dynamodb", local_endpoints.moto)
    table_name = deployed.outputs["IdempotencyTableName"]
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    # moto's CloudFormation drops the table's TimeToLiveSpecification (its TTL stays DISABLED):
    # the TTL is checked in the template's text (tests/unit/test_deploy_stack.py).

    kms = aws_client("kms", local_endpoints.moto)
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    aliases = kms.list_aliases(KeyId=key_id)["Aliases"]
    assert [a["AliasName"] for a in aliases] == [f"alias/cognito-worker/{deployed.name}"]
    assert deployed.resources["TaskRole"] == f"{deployed.name}-task"  # the key policy names it

    # The role Cognito assumes to log an import job, with the template's trust and policy (moto
    # stores them; that Cognito alone may assume it, on these log groups only, no emulator here
    # evaluates: tests/unit/test_stack_text.py reads them).
    iam = aws_client("iam", local_endpoints.moto)
    role_name = deployed.outputs["ImportLogsRoleArn"].rsplit("/", 1)[1]
    role = iam.get_role(RoleName=role_name)["Role"]
    assert role["Arn"] == deployed.outputs["ImportLogsRoleArn"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "cognito-idp.amazonaws.com"}
    (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    # moto 5.2.5's CloudFormation stores a role's inline policy as the Python text of the
    # template's dict (single quotes), not as JSON: read it as such.
    (logs,) = ast.literal_eval(document)["Statement"]
    assert logs["Resource"] == (
        f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/cognito/userpools/"
        f"{deployed.parameters['CognitoUserPoolId']}/*"
    )


def stack_for_worker(
    deployed: Deployed, endpoints: Endpoints, pool: tuple[str, str, str]
) -> tuple[Stack, dict[str, str]]:
    """The deployed stack as the harness drives it (with a results queue subscribed to its
    topic, as a consumer would), and the worker's environment from the task definition."""
    sqs = aws_client("sqs", endpoints.moto)
    results_url = sqs.create_queue(QueueName=f"{deployed.name}-results")["QueueUrl"]
    results_arn = sqs.get_queue_attributes(QueueUrl=results_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    aws_client("sns", endpoints.moto).subscribe(
        TopicArn=deployed.outputs["ResultsTopicArn"],
        Protocol="sqs",
        Endpoint=results_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    pool_id, client_id, secret = pool
    stack = Stack(
        endpoints=endpoints,
        user_pool_id=pool_id,
        client_id=client_id,
        client_secret=secret,
        jobs_queue_url=deployed.outputs["JobsQueueUrl"],
        dead_letter_queue_url=deployed.outputs["DeadLetterQueueUrl"],
        results_topic_arn=deployed.outputs["ResultsTopicArn"],
        results_queue_url=results_url,
        bulk_jobs_queue_url=deployed.outputs["BulkJobsQueueUrl"],
        bulk_dead_letter_queue_url=deployed.outputs["BulkDeadLetterQueueUrl"],
    )
    environment = deployed.task_environment(aws_client("ecs", endpoints.moto))
    return stack, {
        **environment,
        # What ECS would add or what differs locally: the secret (the task definition's
        # `secrets`), a short long poll so that --exit-when-idle ends soon, and a free port.
        "COGNITO_CLIENT_SECRET": secret,
        "RECEIVE_WAIT_S": "1",
        "HEALTH_PORT": "0",
    }


def test_the_worker_runs_on_the_stacks_outputs_with_its_task_definition(
    deployed: Deployed,
    local_endpoints: Endpoints,
    pool: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # moto's CloudFormation creates the table in moto's own DynamoDB, not in dynalite: the
    # worker uses it there (one claim, no race: what atomicity rests on is tested on dynalite).
    in_moto = dataclasses.replace(local_endpoints, dynamodb=None)
    stack, environment = stack_for_worker(deployed, in_moto, pool)
    # What the worker reads from the task definition is the stack's own.
    assert environment["JOBS_QUEUE_URL"] == deployed.outputs["JobsQueueUrl"]
    assert environment["BULK_JOBS_QUEUE_URL"] == deployed.outputs["BulkJobsQueueUrl"]
    assert environment["BULK_DEAD_LETTER_QUEUE_URL"] == deployed.outputs["BulkDeadLetterQueueUrl"]
    assert environment["INTERACTIVE_RESERVED_SHARE"] == "0"
    assert environment["RESULTS_TOPIC_ARN"] == deployed.outputs["ResultsTopicArn"]
    assert environment["IDEMPOTENCY_TABLE"] == deployed.outputs["IdempotencyTableName"]
    assert environment["FIELD_ENCRYPTION_KEY_ARNS"] == deployed.outputs["SecretsKeyArn"]
    assert environment["REQUIRE_ENCRYPTED_FIELDS"] == "true"

    # A producer encrypts the password under the stack's key (required by the stack).
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", local_endpoints.moto)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # One job in each lane: a live sign-up on the jobs queue, an import's on the bulk queue.
    sqs = aws_client("sqs", local_endpoints.moto)
    for queue, job_id, username in (
        ("JobsQueueUrl", "stack-sign-up", "stella"),
        ("BulkJobsQueueUrl", "stack-bulk-sign-up", "bruno"),
    ):
        body = prepare_job(
            {
                "version": 1,
                "type": "sign_up",
                "job_id": job_id,
                "username": username,
                "password": PASSWORD,
                "user_attributes": {"email": f"{username}@example.com"},
            },
            encryptor=FieldEncryptor(deployed.outputs["SecretsKeyArn"]),
        ).body
        assert PASSWORD not in body
        sqs.send_message(QueueUrl=deployed.outputs[queue], MessageBody=body)

    run = run_worker(stack, **environment)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = {r.body["job_id"]: r for r in read_results(stack)}
    assert {job_id: (r.body["status"], r.body["lane"]) for job_id, r in results.items()} == {
        "stack-sign-up": ("succeeded", "interactive"),
        "stack-bulk-sign-up": ("succeeded", "bulk"),
    }
    assert {r.attributes["job_type"] for r in results.values()} == {"sign_up"}
    idp = aws_client("cognito-idp", local_endpoints.moto)
    for username in ("stella", "bruno"):
        user = idp.admin_get_user(UserPoolId=stack.user_pool_id, Username=username)
        assert user["UserStatus"] == "UNCONFIRMED", username
    # The claims and the stored results went to the stack's table.
    items = json.dumps(
        aws_client("dynamodb", local_endpoints.moto).scan(
            TableName=deployed.outputs["IdempotencyTableName"]
        )["Items"]
    )
    assert "stack-sign-up" in items, items
    assert "stack-bulk-sign-up" in items, items
    for queue in (
        "JobsQueueUrl",
        "DeadLetterQueueUrl",
        "BulkJobsQueueUrl",
        "BulkDeadLetterQueueUrl",
    ):
        assert stack.queue_depth(deployed.outputs[queue]) == 0, queue
