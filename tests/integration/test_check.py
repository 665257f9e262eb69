"""`cognito-worker check` against the local AWS: what an operator reads before a deploy."""

import dataclasses
import json
import subprocess
import sys
from typing import Any

import botocore.session
import pytest

from tests.support.harness import worker_env
from worker.cognito.limits import teach_provisioned_limits
from worker.local.aws import REGION, Stack, aws_client, create_idempotency_table


def check(stack: Stack, **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "check"],
        env=worker_env(stack, **overrides),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def lines_about(output: str, name: str) -> list[str]:
    return [line for line in output.splitlines() if f" {name}:" in line or f" {name} " in line]


def named(output: str, name: str) -> list[str]:
    """The lines of the check called exactly ``name`` (not those of a longer name ending so)."""
    return [line for line in output.splitlines() if line[5:].startswith(f"{name}:")]


def test_a_sound_configuration_passes_every_check(stack: Stack) -> None:
    table = create_idempotency_table(stack.endpoints)
    done = check(stack, IDEMPOTENCY_STORE="dynamodb", IDEMPOTENCY_TABLE=table)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], done.stdout
    names = " ".join(lines)
    for expected in (
        "credentials:",
        "jobs queue:",
        "jobs queue redrive:",
        "dead-letter queue:",
        "bulk jobs queue:",
        "bulk jobs queue redrive:",
        "bulk dead-letter queue:",
        "results topic:",
        "idempotency table:",
        f"app client {stack.client_id}:",
        "quota RATE_USER_CREATION_RPS:",
        "quota RATE_USER_ACCOUNT_RECOVERY_RPS:",
    ):
        assert expected in names, f"{expected!r} missing from:\n{done.stdout}"
    assert lines[-1].endswith("0 failed")
    assert stack.client_secret not in done.stdout + done.stderr


def test_the_table_ttl_is_reported_on_or_missing(stack: Stack) -> None:
    # dynalite, the tests' DynamoDB, has no TTL at all: its tables always say DISABLED. moto's
    # DynamoDB keeps the setting, so the table with TTL on expires_at lives there.
    in_moto = dataclasses.replace(stack.endpoints, dynamodb=None)
    with_ttl = check(
        stack,
        IDEMPOTENCY_STORE="dynamodb",
        IDEMPOTENCY_TABLE=create_idempotency_table(in_moto),
        AWS_ENDPOINT_URL_DYNAMODB=stack.endpoints.moto,
    )
    assert lines_about(with_ttl.stdout, "idempotency table TTL") == [
        "ok   idempotency table TTL: on expires_at"
    ], with_ttl.stdout
    without = check(
        stack,
        IDEMPOTENCY_STORE="dynamodb",
        IDEMPOTENCY_TABLE=create_idempotency_table(stack.endpoints),
    )
    (line,) = lines_about(without.stdout, "idempotency table TTL")
    assert line.startswith("warn idempotency table TTL: not enabled on expires_at"), line
    assert without.returncode == 0  # a warning, not a failure


def test_a_wrong_client_secret_fails_its_line_without_printing_a_secret(stack: Stack) -> None:
    wrong = "wrong-" + stack.client_secret[6:]
    done = check(stack, COGNITO_CLIENT_SECRET=wrong)
    assert done.returncode == 1, done.stdout
    (line,) = [line for line in done.stdout.splitlines() if "app client" in line]
    assert line.startswith("FAIL app client"), line
    assert "NotAuthorizedException" in line
    # The rest of the deployment is still checked and reported.
    assert "ok   jobs queue:" in done.stdout
    assert wrong not in done.stdout + done.stderr
    assert stack.client_secret not in done.stdout + done.stderr
    # Nothing was created in the pool by the check.
    users = aws_client("cognito-idp", stack.endpoints.moto).list_users(
        UserPoolId=stack.user_pool_id
    )["Users"]
    assert users == []


def test_a_wrong_user_pool_fails_its_line_naming_the_pool(stack: Stack) -> None:
    """The client and its secret are sound: only the pool is wrong, which ConfirmSignUp (it
    names no pool) cannot see. The probe's AdminGetUser can."""
    done = check(stack, COGNITO_USER_POOL_ID="us-east-1_nope")
    assert done.returncode == 1, done.stdout
    (line,) = lines_about(done.stdout, f"app client {stack.client_id}")
    assert line.startswith(f"FAIL app client {stack.client_id}: ResourceNotFoundException"), line
    assert "us-east-1_nope" in line
    assert "secret accepted" not in done.stdout
    assert stack.client_secret not in done.stdout + done.stderr


def test_the_right_pool_is_named_as_found(stack: Stack) -> None:
    done = check(stack)
    (line,) = lines_about(done.stdout, f"app client {stack.client_id}")
    assert line == (
        f"ok   app client {stack.client_id}: pool {stack.user_pool_id} found, secret accepted"
    )


def test_a_missing_queue_fails_naming_its_url_and_says_what_it_skipped(stack: Stack) -> None:
    missing = stack.jobs_queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    done = check(stack, JOBS_QUEUE_URL=missing)
    assert done.returncode == 1, done.stdout
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith(f"FAIL jobs queue: {missing}: "), line
    assert "NonExistentQueue" in line
    assert named(done.stdout, "jobs queue visibility") == [
        "skip jobs queue visibility: not checked: the jobs queue could not be read"
    ]
    assert named(done.stdout, "jobs queue redrive") == [
        "skip jobs queue redrive: not checked: the jobs queue could not be read"
    ]
    (dlq,) = named(done.stdout, "dead-letter queue")
    assert dlq.startswith("ok   dead-letter queue: reachable"), dlq
    assert "not compared with the jobs queue's redrive" in dlq
    assert done.stdout.splitlines()[-1].endswith(", 2 skipped, 1 failed"), done.stdout
    assert stack.client_secret not in done.stdout + done.stderr


def test_the_bulk_lanes_queues_are_checked_as_the_interactive_ones(stack: Stack) -> None:
    assert stack.bulk_jobs_queue_url
    assert stack.bulk_dead_letter_queue_url
    sound = check(stack)
    assert sound.returncode == 0, sound.stdout
    assert named(sound.stdout, "bulk jobs queue visibility") == [
        "ok   bulk jobs queue visibility: 60 s, JOB_TIMEOUT_S 30 s fits within it"
    ]
    (redrive,) = named(sound.stdout, "bulk jobs queue redrive")
    bulk_dlq = stack.bulk_dead_letter_queue_url.rsplit("/", 1)[-1]
    assert redrive == f"ok   bulk jobs queue redrive: to {bulk_dlq} after 1000 receives"
    assert named(sound.stdout, "bulk dead-letter queue") == [
        "ok   bulk dead-letter queue: reachable, 0 messages"
    ]
    # The bulk lane redriving into the interactive lane's DLQ is said.
    crossed = check(stack, BULK_DEAD_LETTER_QUEUE_URL=stack.dead_letter_queue_url)
    (line,) = named(crossed.stdout, "bulk dead-letter queue")
    assert line.startswith("warn bulk dead-letter queue: reachable"), line
    assert f"goes to another queue ({bulk_dlq})" in line

    missing = stack.bulk_jobs_queue_url.rsplit("/", 1)[0] + "/no-such-bulk-queue"
    done = check(stack, BULK_JOBS_QUEUE_URL=missing)
    assert done.returncode == 1, done.stdout
    (failed,) = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert failed.startswith(f"FAIL bulk jobs queue: {missing}: "), failed
    assert [line for line in done.stdout.splitlines() if line.startswith("skip")] == [
        "skip bulk jobs queue visibility: not checked: the bulk jobs queue could not be read",
        "skip bulk jobs queue redrive: not checked: the bulk jobs queue could not be read",
    ]
    assert "ok   jobs queue redrive:" in done.stdout  # the interactive lane is checked as ever


def provisioned_limits(stack: Stack) -> Any:
    """A cognito-idp client of the local front that knows GetProvisionedLimit and
    UpdateProvisionedLimit (moto does not; the front answers them, worker/local)."""
    session = teach_provisioned_limits(botocore.session.get_session())
    loader = session.get_component("data_loader")
    model = loader.load_service_model("cognito-idp", "service-2")
    # UpdateProvisionedLimit, as the API reference gives it: the worker never calls it.
    model["operations"]["UpdateProvisionedLimit"] = {
        **model["operations"]["GetProvisionedLimit"], "name": "UpdateProvisionedLimit",
        "input": {"shape": "UpdateProvisionedLimitRequest"},
        "output": {"shape": "GetProvisionedLimitResponse"},
    }  # fmt: skip
    model["shapes"]["UpdateProvisionedLimitRequest"] = {
        "type": "structure",
        "members": {"LimitDefinition": {"shape": "LimitDefinitionType"},
                    "RequestedLimitValue": {"shape": "IntegerType"}},
    }  # fmt: skip
    return session.create_client(
        "cognito-idp", region_name=REGION, endpoint_url=stack.endpoints.cognito,
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip


def quota_line(output: str, variable: str) -> str:
    (line,) = lines_about(output, f"quota {variable}")
    return line


def test_each_budget_is_checked_against_the_limit_cognito_enforces(stack: Stack) -> None:
    idp = provisioned_limits(stack)
    category = {"LimitClass": "API_CATEGORY", "Attributes": {"Category": "UserCreation"}}
    idp.update_provisioned_limit(LimitDefinition=category, RequestedLimitValue=80)
    try:
        done = check(stack, RATE_USER_CREATION_RPS="70", RATE_USER_ACCOUNT_RECOVERY_RPS="30",
                     RATE_USER_RESOURCE_READ_RPS="60")  # fmt: skip
    finally:  # the local front is shared by the tests: back to the free rate
        idp.update_provisioned_limit(LimitDefinition=category, RequestedLimitValue=50)
    assert done.returncode == 1, done.stdout
    # Raised by the account to 80: a budget of 70 fits (the documented 50 would have warned).
    assert quota_line(done.stdout, "RATE_USER_CREATION_RPS") == (
        "ok   quota RATE_USER_CREATION_RPS: 70 for the fleet; Cognito enforces 80 (free 50), "
        "shared by every task and caller"
    )
    # At the limit: nothing left for the application's own calls.
    assert quota_line(done.stdout, "RATE_USER_ACCOUNT_RECOVERY_RPS").startswith(
        "warn quota RATE_USER_ACCOUNT_RECOVERY_RPS: 30 for the fleet; Cognito enforces 30 "
        "(free 30): right only if every call of this category goes through the worker"
    )
    # Above it: throttled for sure.
    assert quota_line(done.stdout, "RATE_USER_RESOURCE_READ_RPS").startswith(
        "FAIL quota RATE_USER_RESOURCE_READ_RPS: 60 for the fleet; Cognito enforces 50"
    )


def test_a_limit_that_cannot_be_read_falls_back_to_the_documented_quota(stack: Stack) -> None:
    # moto has no GetProvisionedLimit: reached directly, it refuses the call.
    done = check(stack, RATE_USER_ACCOUNT_RECOVERY_RPS="40",
                 AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=stack.endpoints.moto)  # fmt: skip
    assert done.returncode == 1
    line = quota_line(done.stdout, "RATE_USER_ACCOUNT_RECOVERY_RPS")
    assert line.startswith(
        "FAIL quota RATE_USER_ACCOUNT_RECOVERY_RPS: 40 for the fleet is above the quota of 30"
    ), line
    creation = quota_line(done.stdout, "RATE_USER_CREATION_RPS")
    assert "(enforced limit not read: 500: an HTML error page, not an AWS answer;" in creation


def test_a_bad_setting_stops_check_like_run(stack: Stack) -> None:
    done = check(stack, JOBS_QUEUE_URL="", LOG_LEVEL="loud")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "cognito-worker: bad setting JOBS_QUEUE_URL: required",
        "cognito-worker: bad setting LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or "
        "'ERROR'",
    ]


def field_key(stack: Stack, **options: str) -> str:
    kms = aws_client("kms", stack.endpoints.moto)
    return str(kms.create_key(Description="field encryption", **options)["KeyMetadata"]["Arn"])


@pytest.mark.parametrize(
    "options",
    [
        {"KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT"},
        # As `aws kms create-key` makes it, with the defaults. (moto then leaves KeyUsage out of
        # DescribeKey's answer, where KMS names it; the check takes CreateKey's default.)
        {},
    ],
    ids=["explicit", "defaults"],
)
def test_an_enabled_symmetric_field_key_passes(stack: Stack, options: dict[str, str]) -> None:
    key = field_key(stack, **options)
    done = check(stack, FIELD_ENCRYPTION_KEY_ARNS=key)
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = lines_about(done.stdout, f"field key {key.rsplit('/', 1)[-1]}")
    assert line.startswith("ok   field key "), line
    assert f"enabled, symmetric, in {REGION}" in line
    assert "kms:Decrypt" in line  # says what it could not check, and who does


def test_a_disabled_missing_or_signing_field_key_fails(stack: Stack) -> None:
    kms = aws_client("kms", stack.endpoints.moto)
    good = field_key(stack, KeyUsage="ENCRYPT_DECRYPT")
    disabled = field_key(stack, KeyUsage="ENCRYPT_DECRYPT")
    kms.disable_key(KeyId=disabled.rsplit("/", 1)[-1])  # moto's DisableKey takes the id only
    signing = field_key(stack, KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")
    missing = good.rsplit("/", 1)[0] + "/00000000-0000-4000-8000-000000000000"
    # A key whose policy denies DescribeKey: moto enforces a key policy's Deny on DescribeKey
    # (not on Decrypt), so this denial is the emulator's own answer.
    denied = field_key(stack, KeyUsage="ENCRYPT_DECRYPT")
    deny = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "kms:DescribeKey", "Resource": "*"}
    ]}  # fmt: skip
    kms.put_key_policy(
        KeyId=denied.rsplit("/", 1)[-1], PolicyName="default", Policy=json.dumps(deny)
    )
    keys = (good, disabled, signing, missing, denied)
    done = check(stack, FIELD_ENCRYPTION_KEY_ARNS=",".join(keys))
    assert done.returncode == 1, done.stdout + done.stderr
    verdicts = {
        arn: lines_about(done.stdout, f"field key {arn.rsplit('/', 1)[-1]}")[0] for arn in keys
    }
    assert verdicts[good].startswith("ok   ")
    assert verdicts[disabled].startswith("FAIL ")
    assert "Disabled" in verdicts[disabled]
    assert verdicts[signing].startswith("FAIL ")
    assert "SIGN_VERIFY" in verdicts[signing]
    assert verdicts[missing].startswith("FAIL ")
    assert "NotFoundException" in verdicts[missing]
    assert verdicts[denied].startswith("FAIL ")
    assert "AccessDeniedException" in verdicts[denied]
    assert done.stdout.splitlines()[-1].endswith("4 failed")
    assert stack.client_secret not in done.stdout + done.stderr
