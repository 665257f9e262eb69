"""The stack's KMS key policy, read from the template's text: who may get at a field's plaintext.

moto's KMS evaluates no key policy (moto 5.2.5: Decrypt succeeds for any caller, and under a
disabled key), so what the policy denies cannot be shown by a call here; it is checked as written.
"""

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

STACK = Path(__file__).parents[2] / "deploy" / "cloudformation.yaml"

#: Every KMS action that yields a field's plaintext, or its data key under another key, or the
#: power to hand either to someone else.
ACTIONS_THAT_OPEN_A_FIELD = [
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:CreateGrant",
]


def key_statements() -> list[dict[str, Any]]:
    template = cfn_yaml.load(str(STACK))
    statements: list[dict[str, Any]] = template["Resources"]["SecretsKey"]["Properties"][
        "KeyPolicy"
    ]["Statement"]
    return statements


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def covers(patterns: list[str], action: str) -> bool:
    return any(fnmatchcase(action.lower(), pattern.lower()) for pattern in patterns)


@pytest.mark.parametrize("action", ACTIONS_THAT_OPEN_A_FIELD)
def test_the_key_policy_denies_every_way_to_a_fields_plaintext_but_the_workers(
    action: str,
) -> None:
    (deny,) = [s for s in key_statements() if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*"
    assert covers(actions(deny), action), f"{action} is not denied to other principals"
    condition = deny["Condition"]
    # The exemptions, all of which must hold for the Deny to pass a caller by: the task role,
    # a call made through SQS or SNS (for their own data keys), or an AWS service itself.
    assert set(condition) == {"ArnNotEquals", "StringNotEquals", "BoolIfExists"}
    assert list(condition["ArnNotEquals"]) == ["aws:PrincipalArn"]
    assert "role/${AWS::StackName}-task" in str(condition["ArnNotEquals"]["aws:PrincipalArn"])
    via = [str(service) for service in condition["StringNotEquals"]["kms:ViaService"]]
    assert len(via) == 2
    assert via[0].startswith("{'Fn::Sub': 'sqs.")
    assert via[1].startswith("{'Fn::Sub': 'sns.")
    assert condition["BoolIfExists"] == {"aws:PrincipalIsAWSService": "false"}


def test_no_statement_grants_a_way_to_the_plaintext_to_anyone_unconditioned() -> None:
    """Beside the account's delegation to IAM (which the Deny bounds), every statement that
    allows one of those actions names a service or a condition that keeps it to its own data."""
    for statement in key_statements():
        if statement["Effect"] != "Allow" or statement["Sid"] == "KeyAdministration":
            continue
        opening = [a for a in ACTIONS_THAT_OPEN_A_FIELD if covers(actions(statement), a)]
        if opening:
            assert "Condition" in statement, statement["Sid"]
