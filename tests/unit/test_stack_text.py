"""What of the stack no emulator here creates or evaluates, checked in the template's own text.

tests/integration/test_stack_deploys.py creates the stack in moto's CloudFormation, less the
resource types moto has no model for (tests/support/stack.py NOT_IN_MOTO): the queue and topic
policies, the auto scaling target and policy, and the alarms. moto also drops the table's TTL and
the task definition's TaskRoleArn. tests/integration/test_task_role.py runs the task role's policy
under moto's IAM enforcement, which evaluates no condition, no resource policy, and resources for
SQS only. All of that is checked here, as written.
"""

import json
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


#: Both lanes' queues: the interactive jobs queue and its DLQ, the bulk jobs queue and its DLQ.
QUEUES = ["JobsQueue", "DeadLetterQueue", "BulkJobsQueue", "BulkDeadLetterQueue"]
GETATT_QUEUES = [{"Fn::GetAtt": [queue, "Arn"]} for queue in QUEUES]


def test_no_request_without_tls_reaches_the_queues_or_the_topic(template: dict[str, Any]) -> None:
    queues = template["Resources"]["QueuePolicies"]["Properties"]
    assert queues["Queues"] == [{"Ref": queue} for queue in QUEUES]
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
    of each grant is this: one of the stack's resources (or the configured pool), never ``*``,
    but for GetProvisionedLimit, which reads the account's rates and takes no resource."""
    (policy,) = template["Resources"]["TaskRole"]["Properties"]["Policies"]
    granted = []
    for statement in policy["PolicyDocument"]["Statement"]:
        if "Fn::If" in statement:
            condition, statement, otherwise = statement["Fn::If"]
            assert condition in {"UseDynamoDb", "CapsBudgets"}
            assert otherwise == {"Ref": "AWS::NoValue"}
        assert statement["Effect"] == "Allow"
        assert "Condition" not in statement  # moto would not evaluate one
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert "*" not in action, action
        granted.append((statement["Sid"], statement["Resource"]))
    assert granted == [
        ("ConsumeJobs", {"Fn::GetAtt": ["JobsQueue", "Arn"]}),
        ("DeadLetterMalformed", {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}),
        ("ConsumeBulkJobs", {"Fn::GetAtt": ["BulkJobsQueue", "Arn"]}),
        ("BulkDeadLetterMalformed", {"Fn::GetAtt": ["BulkDeadLetterQueue", "Arn"]}),
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
        ("EnforcedRates", "*"),
        ("FieldAndQueueKey", {"Fn::GetAtt": ["SecretsKey", "Arn"]}),
        ("IdempotencyStore", {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}),
    ]
    enforced_rates = policy["PolicyDocument"]["Statement"][6]["Fn::If"][1]
    assert enforced_rates["Action"] == "cognito-idp:GetProvisionedLimit"


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
    # Both lanes' backlogs, summed, over the running tasks.
    assert metrics["e1"]["Expression"] == "(m1 + m3) / m2"
    for metric_id, queue in (("m1", "JobsQueue"), ("m3", "BulkJobsQueue")):
        assert metrics[metric_id]["MetricStat"]["Stat"] == "Sum"
        visible = metrics[metric_id]["MetricStat"]["Metric"]
        assert (visible["Namespace"], visible["MetricName"]) == (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
        )
        assert visible["Dimensions"] == [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
        ]
    running = metrics["m2"]["MetricStat"]["Metric"]
    assert running["MetricName"] == "RunningTaskCount"
    assert {"Name": "ServiceName", "Value": {"Fn::GetAtt": ["Service", "Name"]}} in running[
        "Dimensions"
    ]


def test_every_alarm_is_heard_and_watches_this_stacks_figures(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 7
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopicArn"}], name
        assert properties["OKActions"] == [{"Ref": "AlarmTopicArn"}], name
        assert properties["TreatMissingData"] == "notBreaching", name
        namespace = properties.get("Namespace")
        if namespace == "AWS/SQS":
            (dimension,) = properties["Dimensions"]
            assert dimension["Name"] == "QueueName", name
            assert dimension["Value"]["Fn::GetAtt"][0] in set(QUEUES), name
        elif namespace is not None:
            # The worker's own figures, under the namespace and dimension it writes them with.
            assert namespace == NAMESPACE, name
            assert {"Name": "Service", "Value": SERVICE} in properties["Dimensions"], name


def sqs_alarms(template: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each alarm on a queue: the queue's logical id and the metric."""
    return {
        name: (alarm["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0],
               alarm["Properties"]["MetricName"])
        for name, alarm in resources(template, "AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("Namespace") == "AWS/SQS"
    }  # fmt: skip


def test_both_dead_letter_queues_alarm_and_the_age_alarm_watches_the_interactive_lane(
    template: dict[str, Any],
) -> None:
    """Live users wait on the interactive lane; the bulk lane's oldest job may wait for hours
    during an import, by design, so its age raises no alarm. A DLQ that is not empty does, in
    either lane."""
    assert sorted(sqs_alarms(template).values()) == [
        ("BulkDeadLetterQueue", "ApproximateNumberOfMessagesVisible"),
        ("DeadLetterQueue", "ApproximateNumberOfMessagesVisible"),
        ("JobsQueue", "ApproximateAgeOfOldestMessage"),
    ]
    alarms = template["Resources"]
    first, bulk = (
        alarms[name]["Properties"]
        for name in ("DeadLetterQueueNotEmptyAlarm", "BulkDeadLetterQueueNotEmptyAlarm")
    )
    alike = ("Statistic", "Period", "EvaluationPeriods", "Threshold", "ComparisonOperator")
    assert {k: first[k] for k in alike} == {k: bulk[k] for k in alike}
    age = alarms["OldestJobAgeAlarm"]["Properties"]
    assert age["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}


def test_the_bulk_lane_is_built_as_the_interactive_one(template: dict[str, Any]) -> None:
    """The same key, retention, visibility and redrive; each lane redrives to its own DLQ."""
    queues = template["Resources"]
    jobs, bulk = (dict(queues[name]["Properties"]) for name in ("JobsQueue", "BulkJobsQueue"))
    assert jobs.pop("RedrivePolicy") == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 1000,
    }
    assert bulk.pop("RedrivePolicy") == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["BulkDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 1000,
    }
    assert jobs == bulk
    assert jobs["KmsMasterKeyId"] == {"Ref": "SecretsKey"}
    assert queues["DeadLetterQueue"]["Properties"] == queues["BulkDeadLetterQueue"]["Properties"]
    for name in QUEUES:
        policies = (queues[name]["DeletionPolicy"], queues[name]["UpdateReplacePolicy"])
        assert policies == ("Delete", "Delete"), name

    environment = queues["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
    assert {"Name": "BULK_JOBS_QUEUE_URL", "Value": {"Ref": "BulkJobsQueue"}} in environment
    assert {"Name": "BULK_DEAD_LETTER_QUEUE_URL", "Value": {"Ref": "BulkDeadLetterQueue"}} in (
        environment
    )
    outputs = template["Outputs"]
    assert outputs["BulkJobsQueueUrl"]["Value"] == {"Ref": "BulkJobsQueue"}
    assert outputs["BulkJobsQueueArn"]["Value"] == {"Fn::GetAtt": ["BulkJobsQueue", "Arn"]}
    assert outputs["BulkDeadLetterQueueUrl"]["Value"] == {"Ref": "BulkDeadLetterQueue"}


def task_role_statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (policy,) = template["Resources"]["TaskRole"]["Properties"]["Policies"]
    found = {}
    for statement in policy["PolicyDocument"]["Statement"]:
        statement = statement["Fn::If"][1] if "Fn::If" in statement else statement
        found[statement["Sid"]] = statement
    return found


def test_the_task_role_takes_the_bulk_lane_as_the_interactive_one_and_reads_no_dlq(
    template: dict[str, Any],
) -> None:
    granted = task_role_statements(template)
    assert granted["ConsumeBulkJobs"]["Action"] == granted["ConsumeJobs"]["Action"]
    assert granted["BulkDeadLetterMalformed"]["Action"] == granted["DeadLetterMalformed"]["Action"]
    # What the role may do on each dead-letter queue, over every statement: send, never receive
    # (nor delete, purge...). The queue policy's OnlyTheWorkerReceives is no stand-in: it lets
    # the task role receive wherever IAM allows it.
    on_dead_letters = {
        queue: [
            action
            for statement in granted.values()
            if {"Fn::GetAtt": [queue, "Arn"]} in as_list(statement["Resource"])
            for action in as_list(statement["Action"])
        ]
        for queue in ("DeadLetterQueue", "BulkDeadLetterQueue")
    }
    assert on_dead_letters == {
        "DeadLetterQueue": ["sqs:SendMessage"],
        "BulkDeadLetterQueue": ["sqs:SendMessage"],
    }
    assert all(
        statement["Resource"] != "*"
        for sid, statement in granted.items()
        if sid != "EnforcedRates"  # GetProvisionedLimit takes no resource
    )


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def dashboard(template: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The dashboard's widgets (each ``${Name}`` stands inside a JSON string, so the body is
    JSON as written), and what the names stand for."""
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets: list[dict[str, Any]] = json.loads(body)["widgets"]
    return widgets, variables


def test_the_dashboard_shows_each_lane_apart_with_its_depth_and_oldest_age(
    template: dict[str, Any],
) -> None:
    widgets, variables = dashboard(template)
    assert variables["JobsQueueName"] == {"Fn::GetAtt": ["JobsQueue", "QueueName"]}
    assert variables["BulkJobsQueueName"] == {"Fn::GetAtt": ["BulkJobsQueue", "QueueName"]}
    assert variables["BulkDeadLetterQueueName"] == {
        "Fn::GetAtt": ["BulkDeadLetterQueue", "QueueName"]
    }

    def queue_metrics(widget: dict[str, Any]) -> set[tuple[str, str]]:
        return {
            (row[3], row[1])
            for row in widget["properties"]["metrics"]
            if row[0] == "AWS/SQS" and row[2] == "QueueName"
        }

    lanes = {
        "${JobsQueueName}": "${DeadLetterQueueName}",
        "${BulkJobsQueueName}": "${BulkDeadLetterQueueName}",
    }
    shown = [queue_metrics(widget) for widget in widgets if queue_metrics(widget)]
    assert len(shown) == 2
    for queue, dead_letters in lanes.items():
        (lane,) = [
            metrics for metrics in shown if (queue, "ApproximateNumberOfMessagesVisible") in metrics
        ]
        assert lane == {
            (queue, "ApproximateNumberOfMessagesVisible"),
            (queue, "ApproximateNumberOfMessagesNotVisible"),
            (queue, "ApproximateAgeOfOldestMessage"),
            (dead_letters, "ApproximateNumberOfMessagesVisible"),
        }


def test_cognito_alone_assumes_the_import_logs_role_for_this_pools_logs_only(
    template: dict[str, Any],
) -> None:
    """As AWS's guide gives it ("Creating the CloudWatch Logs IAM role"): trusted by the Cognito
    service, allowed the four logs actions; the guide's /aws/cognito/* narrowed to the log
    groups Cognito writes this pool's import jobs to (/aws/cognito/userpools/POOL_ID/POOL_NAME).
    moto's IAM evaluates neither a trust policy nor a logs resource, so this is read here."""
    role = template["Resources"]["ImportLogsRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Effect"], trust["Principal"], trust["Action"]) == (
        "Allow",
        {"Service": "cognito-idp.amazonaws.com"},
        "sts:AssumeRole",
    )
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
    ]
    arn, variables = statement["Resource"]["Fn::Sub"]
    assert arn == (
        "arn:${AWS::Partition}:logs:${PoolRegion}:${AWS::AccountId}:"
        "log-group:/aws/cognito/userpools/${CognitoUserPoolId}/*"
    )
    assert variables == {
        "PoolRegion": {"Fn::Select": [0, {"Fn::Split": ["_", {"Ref": "CognitoUserPoolId"}]}]}
    }
    assert "ManagedPolicyArns" not in role
    assert template["Outputs"]["ImportLogsRoleArn"]["Value"] == {
        "Fn::GetAtt": ["ImportLogsRole", "Arn"]
    }


def test_the_operator_policy_names_the_stacks_own_resources(template: dict[str, Any]) -> None:
    """moto checks SQS by resource and the rest by action: the scope of the operator policy's
    other grants is read here. Nothing but GetProvisionedLimit (no resource) is on ``*``, and
    the DLQ grants are on the DLQs alone."""
    document = template["Resources"]["OperatorPolicy"]["Properties"]["PolicyDocument"]
    granted = {}
    for statement in document["Statement"]:
        if "Fn::If" in statement:
            condition, statement, otherwise = statement["Fn::If"]
            assert (condition, otherwise) == ("UseDynamoDb", {"Ref": "AWS::NoValue"})
        assert statement["Effect"] == "Allow"
        granted[statement["Sid"]] = (statement["Action"], statement["Resource"])
    dead_letters = [{"Fn::GetAtt": [q, "Arn"]} for q in ("DeadLetterQueue", "BulkDeadLetterQueue")]
    assert granted["TriageDeadLetters"][1] == dead_letters
    assert granted["RedriveJobs"] == (
        "sqs:SendMessage",
        [{"Fn::GetAtt": [q, "Arn"]} for q in ("JobsQueue", "BulkJobsQueue")],
    )
    assert granted["ReadTopic"][1] == {"Ref": "ResultsTopic"}
    assert granted["QueueKey"][1] == {"Fn::GetAtt": ["SecretsKey", "Arn"]}
    assert granted["ReadTable"][1] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    assert [sid for sid, (_, resource) in granted.items() if resource == "*"] == ["EnforcedRates"]
    # check's probe of the pool: AdminGetUser on the stack's pool alone, as the task role has it.
    task_role = template["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    (imports,) = [s for s in task_role["Statement"] if s.get("Sid") == "CognitoImports"]
    assert granted["CheckPool"] == ("cognito-idp:AdminGetUser", imports["Resource"])
