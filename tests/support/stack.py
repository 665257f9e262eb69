"""deploy/cloudformation.yaml created in moto's CloudFormation, and its task role's policy resolved.

moto 5.2.5's CloudFormation skips a resource type it has no model for: it logs a warning, lists
the resource with an empty logical id, and still reports the stack CREATE_COMPLETE. So the
template is not handed over whole. :func:`template_for_moto` takes out the resources moto cannot
create, each with the reason, and the stack must then hold every resource that is left (the tests
check it). What is taken out is covered by tests of the template's own text
(tests/unit/test_deploy_stack.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).parents[2] / "deploy" / "cloudformation.yaml"
ACCOUNT = "123456789012"  # moto's default account
PARTITION = "aws"

#: The template's resource types moto's CloudFormation has no model for, and what they are.
NOT_IN_MOTO = {
    "AWS::SQS::QueuePolicy": "the queues' resource policy (TLS only, only the task role receives)",
    "AWS::SNS::TopicPolicy": "the topic's resource policy (TLS only)",
    "AWS::ApplicationAutoScaling::ScalableTarget": "the service's auto scaling range",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "backlog-per-task target tracking",
    "AWS::CloudWatch::Alarm": "the alarms on the queues and the worker's own figures",
}


def load_template() -> dict[str, Any]:
    """The template with its short-form tags (!Sub, !Ref...) in their long JSON form."""
    template: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return template


def template_for_moto() -> tuple[dict[str, Any], dict[str, str]]:
    """The template without the resources moto cannot create; and those, logical id to reason."""
    template = load_template()
    removed = {
        name: f"{resource['Type']}: {NOT_IN_MOTO[resource['Type']]}"
        for name, resource in template["Resources"].items()
        if resource["Type"] in NOT_IN_MOTO
    }
    for name in removed:
        del template["Resources"][name]
    # Nothing left may refer to what was taken out, or moto would fail on it.
    text = json.dumps(template)
    for name in removed:
        if f'"{name}"' in text or f"${{{name}" in text:
            raise ValueError(f"{name} is left out for moto, but the template still refers to it")
    return template, removed


def parameters(user_pool_id: str, client_id: str, **overrides: str) -> dict[str, str]:
    """Values for the required parameters. The network, image, secret and alarm topic are never
    used by moto (no task is started), so any well-formed value does."""
    return {
        "ImageUri": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/cognito-worker:1.0.0",
        "EcrRepositoryArn": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/cognito-worker",
        "SubnetIds": "subnet-0aaa,subnet-0bbb",
        "SecurityGroupIds": "sg-0ccc",
        "CognitoUserPoolId": user_pool_id,
        "CognitoClientId": client_id,
        "ClientSecretArn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:cw-secret-AbCdEf",
        "AlarmTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:ops-alerts",
        "ProducerPrincipalArns": f"arn:aws:iam::{ACCOUNT}:role/backoffice",
        **overrides,
    }


@dataclass(frozen=True)
class Deployed:
    """A created stack: its outputs, its resources' physical ids, and what was left out."""

    name: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    left_out: dict[str, str]  # logical id -> why

    def task_environment(self, ecs: Any) -> dict[str, str]:
        """The worker container's environment, as moto's ECS holds the task definition."""
        task_definition = ecs.describe_task_definition(
            taskDefinition=self.resources["TaskDefinition"]
        )["taskDefinition"]
        (container,) = task_definition["containerDefinitions"]
        return {pair["name"]: pair["value"] for pair in container["environment"]}


def deploy(cloudformation: Any, name: str, stack_parameters: dict[str, str]) -> Deployed:
    """Create the stack (the template less what moto lacks) and wait until it is complete."""
    template, left_out = template_for_moto()
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in stack_parameters.items()],
    )
    deadline = time.monotonic() + 60
    while True:
        (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        assert time.monotonic() < deadline, stack["StackStatus"]
        time.sleep(0.2)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return Deployed(
        name=name,
        parameters=stack_parameters,
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        resources={s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries},
        left_out=left_out,
    )


class Unresolved(Exception):
    """The template refers to something :func:`resolve` was not told."""


@dataclass(frozen=True)
class Context:
    """What the template's intrinsic functions resolve to in one created stack."""

    refs: dict[str, Any]  # parameters, pseudo parameters and resources (their Ref value)
    attributes: dict[str, str]  # "Logical.Attribute" -> value
    conditions: dict[str, bool]


_NO_VALUE = object()


def resolve(node: Any, context: Context) -> Any:
    """``node`` with Ref, Fn::GetAtt, Fn::Sub, Fn::Select, Fn::Split and Fn::If worked out; raise
    :class:`Unresolved` on anything else, rather than guess."""
    if isinstance(node, list):
        items = [resolve(item, context) for item in node]
        return [item for item in items if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return str(node) if isinstance(node, str) else node
    if len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref":
            if argument == "AWS::NoValue":
                return _NO_VALUE
            if argument not in context.refs:
                raise Unresolved(f"Ref {argument}")
            return context.refs[argument]
        if function == "Fn::GetAtt":
            key = ".".join(argument) if isinstance(argument, list) else str(argument)
            if key not in context.attributes:
                raise Unresolved(f"GetAtt {key}")
            return context.attributes[key]
        if function == "Fn::Sub":
            return _sub(argument, context)
        if function == "Fn::Select":
            index, values = resolve(argument, context)
            return values[int(index)]
        if function == "Fn::Split":
            separator, value = resolve(argument, context)
            return str(value).split(separator)
        if function == "Fn::If":
            condition, if_true, if_false = argument
            return resolve(if_true if context.conditions[condition] else if_false, context)
        if function.startswith("Fn::") or function == "Condition":
            raise Unresolved(function)
    resolved = {key: resolve(value, context) for key, value in node.items()}
    return {key: value for key, value in resolved.items() if value is not _NO_VALUE}


def _sub(argument: Any, context: Context) -> str:
    if isinstance(argument, list):
        text, variables = argument
        extra = {name: resolve(value, context) for name, value in variables.items()}
    else:
        text, extra = argument, {}
    out, rest = "", str(text)
    while "${" in rest:
        before, _, after = rest.partition("${")
        name, _, rest = after.partition("}")
        out += before
        if name in extra:
            out += str(extra[name])
        elif name in context.refs:
            out += str(context.refs[name])
        elif name in context.attributes:
            out += context.attributes[name]
        else:
            raise Unresolved(f"Sub ${{{name}}}")
    return out + rest


def task_role_policy(deployed: Deployed, sqs: Any, dynamodb: Any) -> dict[str, Any]:
    """The task role's policy document as the template writes it, resolved against the created
    resources (read from the services, not from moto's own reading of the template)."""
    (policy,) = load_template()["Resources"]["TaskRole"]["Properties"]["Policies"]
    document: dict[str, Any] = resolve(policy["PolicyDocument"], _context(deployed, sqs, dynamodb))
    return document


def operator_policy(deployed: Deployed, sqs: Any, dynamodb: Any) -> dict[str, Any]:
    """The stack's OperatorPolicy document, resolved as :func:`task_role_policy` is."""
    policy = load_template()["Resources"]["OperatorPolicy"]["Properties"]
    document: dict[str, Any] = resolve(policy["PolicyDocument"], _context(deployed, sqs, dynamodb))
    return document


def _context(deployed: Deployed, sqs: Any, dynamodb: Any) -> Context:
    queue_arn = {
        name: sqs.get_queue_attributes(
            QueueUrl=deployed.resources[name], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        for name in ("JobsQueue", "DeadLetterQueue", "BulkJobsQueue", "BulkDeadLetterQueue")
    }
    table = dynamodb.describe_table(TableName=deployed.outputs["IdempotencyTableName"])["Table"]
    return Context(
        refs={
            **deployed.parameters,
            "AWS::Partition": PARTITION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": "us-east-1",
            "AWS::StackName": deployed.name,
            "ResultsTopic": deployed.outputs["ResultsTopicArn"],
        },
        attributes={
            "JobsQueue.Arn": queue_arn["JobsQueue"],
            "DeadLetterQueue.Arn": queue_arn["DeadLetterQueue"],
            "BulkJobsQueue.Arn": queue_arn["BulkJobsQueue"],
            "BulkDeadLetterQueue.Arn": queue_arn["BulkDeadLetterQueue"],
            "SecretsKey.Arn": deployed.outputs["SecretsKeyArn"],
            "IdempotencyTable.Arn": table["TableArn"],
        },
        conditions={
            "UseDynamoDb": deployed.parameters.get("IdempotencyStore") != "memory",
            "CapsBudgets": deployed.parameters.get("CapBudgetsAtEnforcedLimits", "true") == "true",
        },
    )
