"""What of the stack no emulator here creates or evaluates, checked in the template's own text.

tests/integration/test_stack_deploys.py creates the stack in moto's CloudFormation, less the
resource types moto has no model for (tests/support/stack.py NOT_IN_MOTO): the queue and topic
policies, the auto scaling target and policy, and the alarms. moto also drops the table's TTL and
the task definition's TaskRoleArn. tests/integration/test_task_role.py runs the task role's policy
under moto's IAM enforcement, which evaluates no condition, no resource policy, and resources for
SQS only. All of that is checked here, as written.
"""

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from worker.operations.emf import NAMESPACE, SERVICE

STACK = Path(__file__).parents[2] / "deploy" / "cloudformation.yaml"

#: Every condition key the template uses, none of which moto (or fauxqs) evaluates, and the
#: test here (or in test_key_policy.py) that checks it as written.
CONDITION_KEYS = {
    "aws:SecureTransport": "test_no_request_without_tls_reaches_the_queues_or_the_topic",
    "aws:PrincipalArn": "test_only_the_task_role_receives_from_the_queues (and test_key_policy)",
    "kms:ViaService": "test_key_policy, test_the_execution_role_decrypts_the_secret_only_via_sm",
    "aws:PrincipalIsAWSService": "test_key_policy",
    "aws:SourceAccount": "test_the_roles_are_assumed_by_ecs_tasks_of_this_account_only",
    "aws:SourceArn": "test_the_roles_are_assumed_by_ecs_tasks_of_this_account_only",
    "kms:EncryptionContext:aws:logs:arn": "test_the_log_group_may_use_the_key_for_itself_only",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(STACK))
    return loaded


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == kind}


def statements(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


def condition_keys(node: Any) -> set[str]:
    """Every key under a Condition block anywhere in ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "Condition" and isinstance(value, dict):
                for operator in value.values():
                    found |= set(operator)
            else:
                found |= condition_keys(value)
    elif isinstance(node, list):
        for item in node:
            found |= condition_keys(item)
    return found


def test_every_condition_key_is_one_this_file_knows_to_check(template: dict[str, Any]) -> None:
    """A new condition in the template is one no emulator here evaluates: it needs a test here."""
    assert condition_keys(template["Resources"]) == set(CONDITION_KEYS)


GETATT_QUEUES = [{"Fn::GetAtt": ["JobsQueue", "Arn"]}, {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}]


def test_no_request_without_tls_reaches_the_queues_or_the_topic(template: dict[str, Any]) -> None:
    queues = template["Resources"]["QueuePolicies"]["Properties"]
    assert queues["Queues"] == [{"Ref": "JobsQueue"}, {"Ref": "DeadLetterQueue"}]
    plain = statements(queues["PolicyDocument"])["DenyPlainHttp"]
    assert (plain["Effect"], plain["Principal"], plain["Action"]) == ("Deny", "*", "sqs:*")
    assert plain["Resource"] == GETATT_QUEUES
    assert plain["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    topic = template["Resources"]["ResultsTopicPolicy"]["Properties"]
    assert topic["Topics"] == [{"Ref": "ResultsTopic"}]
    plain = statements(topic["PolicyDocument"])["DenyPlainHttp"]
    assert (plain["Effect"], plain["Principal"]) == ("Deny", "*")
    assert {"sns:Publish", "sns:Subscribe", "sns:SetTopicAttributes"} <= set(plain["Action"])
    assert plain["Resource"] == {"Ref": "ResultsTopic"}
    assert plain["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_task_role_receives_from_the_queues(template: dict[str, Any]) -> None:
    policy = template["Resources"]["QueuePolicies"]["Properties"]["PolicyDocument"]
    only = statements(policy)["OnlyTheWorkerReceives"]
    assert (only["Effect"], only["Principal"], only["Action"]) == (
        "Deny",
        "*",
        "sqs:ReceiveMessage",
    )
    assert only["Resource"] == GETATT_QUEUES
    assert only["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["TaskRole", "Arn"]}}
    }


def test_the_roles_are_assumed_by_ecs_tasks_of_this_account_only(
    template: dict[str, Any],
) -> None:
    for name in ("TaskRole", "TaskExecutionRole"):
        trust = template["Resources"][name]["Properties"]["AssumeRolePolicyDocument"]
        (statement,) = trust["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}, name
        assert statement["Condition"]["StringEquals"] == {
            "aws:SourceAccount": {"Ref": "AWS::AccountId"}
        }
        source = str(statement["Condition"]["ArnLike"]["aws:SourceArn"])
        assert ":ecs:${AWS::Region}:${AWS::AccountId}:" in source, name


def test_the_execution_role_decrypts_the_secret_only_via_sm(template: dict[str, Any]) -> None:
    (policy,) = template["Resources"]["TaskExecutionRole"]["Properties"]["Policies"]
    conditional = policy["PolicyDocument"]["Statement"][-1]["Fn::If"]
    assert conditional[0] == "HasSecretKmsKey"
    statement = conditional[1]
    assert (statement["Action"], statement["Resource"]) == (
        "kms:Decrypt",
        {"Ref": "SecretKmsKeyArn"},
    )
    via = statement["Condition"]["StringEquals"]["kms:ViaService"]
    assert via == {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}


def test_the_log_group_may_use_the_key_for_itself_only(template: dict[str, Any]) -> None:
    policy = template["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]
    logs = statements(policy)["LogGroup"]
    context = logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"]
    log_group = template["Resources"]["LogGroup"]["Properties"]["LogGroupName"]
    assert context["Fn::Sub"].endswith(":log-group:" + log_group["Fn::Sub"])


def test_every_task_role_grant_names_the_stacks_own_resource(template: dict[str, Any]) -> None:
    """moto checks the resource of SQS calls only; for SNS, KMS, DynamoDB and Cognito the scope
    of each grant is this: one of the stack's resources (or the configured pool), never ``*``."""
    (policy,) = template["Resources"]["TaskRole"]["Properties"]["Policies"]
    granted = []
    for statement in policy["PolicyDocument"]["Statement"]:
        if "Fn::If" in statement:
            assert statement["Fn::If"][0] == "UseDynamoDb"
            statement = statement["Fn::If"][1]
        assert statement["Effect"] == "Allow"
        assert "Condition" not in statement  # moto would not evaluate one
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert "*" not in action, action
        granted.append((statement["Sid"], statement["Resource"]))
    assert granted == [
        ("ConsumeJobs", {"Fn::GetAtt": ["JobsQueue", "Arn"]}),
        ("DeadLetterMalformed", {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}),
        ("PublishResults", {"Ref": "ResultsTopic"}),
        (
            "CognitoImports",
            {
                "Fn::Sub": [
                    "arn:${AWS::Partition}:cognito-idp:${PoolRegion}:${AWS::AccountId}:"
                    "userpool/${CognitoUserPoolId}",
                    {
                        "PoolRegion": {
                            "Fn::Select": [0, {"Fn::Split": ["_", {"Ref": "CognitoUserPoolId"}]}]
                        }
                    },
                ]
            },
        ),
        ("FieldAndQueueKey", {"Fn::GetAtt": ["SecretsKey", "Arn"]}),
        ("IdempotencyStore", {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}),
    ]


def test_the_task_definition_runs_as_the_task_role(template: dict[str, Any]) -> None:
    """moto's ECS drops TaskRoleArn from the task definition it stores."""
    properties = template["Resources"]["TaskDefinition"]["Properties"]
    assert properties["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert properties["ExecutionRoleArn"] == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}


def test_the_table_expires_records_on_the_attribute_the_worker_writes(
    template: dict[str, Any],
) -> None:
    """moto's CloudFormation drops TimeToLiveSpecification; the worker writes ``expires_at``."""
    properties = template["Resources"]["IdempotencyTable"]["Properties"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_auto_scaling_tracks_backlog_per_task_of_this_service(template: dict[str, Any]) -> None:
    target = template["Resources"]["ScalableTarget"]["Properties"]
    assert (target["ServiceNamespace"], target["ScalableDimension"]) == (
        "ecs",
        "ecs:service:DesiredCount",
    )
    assert target["ResourceId"] == {"Fn::Sub": "service/${Cluster}/${Service.Name}"}
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        {"Ref": "MinTaskCount"},
        {"Ref": "MaxTaskCount"},
    )
    policy = template["Resources"]["BacklogPerTaskScalingPolicy"]["Properties"]
    assert (policy["PolicyType"], policy["ScalingTargetId"]) == (
        "TargetTrackingScaling",
        {"Ref": "ScalableTarget"},
    )
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == {"Ref": "BacklogPerTaskTarget"}
    metrics = {m["Id"]: m for m in tracking["CustomizedMetricSpecification"]["Metrics"]}
    assert [m["Id"] for m in metrics.values() if m["ReturnData"]] == ["e1"]
    assert metrics["e1"]["Expression"] == "m1 / m2"
    visible = metrics["m1"]["MetricStat"]["Metric"]
    assert (visible["Namespace"], visible["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert visible["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["JobsQueue", "QueueName"]}}
    ]
    running = metrics["m2"]["MetricStat"]["Metric"]
    assert running["MetricName"] == "RunningTaskCount"
    assert {"Name": "ServiceName", "Value": {"Fn::GetAtt": ["Service", "Name"]}} in running[
        "Dimensions"
    ]


def test_every_alarm_is_heard_and_watches_this_stacks_figures(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 6
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopicArn"}], name
        assert properties["OKActions"] == [{"Ref": "AlarmTopicArn"}], name
        assert properties["TreatMissingData"] == "notBreaching", name
        namespace = properties.get("Namespace")
        if namespace == "AWS/SQS":
            (dimension,) = properties["Dimensions"]
            assert dimension["Name"] == "QueueName", name
            assert dimension["Value"]["Fn::GetAtt"][0] in {"JobsQueue", "DeadLetterQueue"}, name
        elif namespace is not None:
            # The worker's own figures, under the namespace and dimension it writes them with.
            assert namespace == NAMESPACE, name
            assert {"Name": "Service", "Value": SERVICE} in properties["Dimensions"], name
