"""The command line, run as users run it: a child process, reading what it prints."""

import json
import os
import subprocess
import sys

import pytest

from tests.unit.test_secret_hash import NODE_VECTORS


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COGNITO_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("username", "client_id", "secret", "expected"), NODE_VECTORS)
def test_secret_hash_command(username: str, client_id: str, secret: str, expected: str) -> None:
    done = cli("secret-hash", "--username", username, "--client-id", client_id,
               env={"COGNITO_CLIENT_SECRET": secret})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_secret_hash_without_secret_names_the_variable() -> None:
    done = cli("secret-hash", "--username", "alice", "--client-id", "abc")
    assert done.returncode == 2
    assert "COGNITO_CLIENT_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


def test_schema_lists_every_job_type_and_the_result() -> None:
    job = json.loads(cli("schema", "job").stdout)
    job_types = {
        definition["properties"]["type"]["const"]
        for definition in job["$defs"].values()
        if "type" in definition.get("properties", {})
    }
    assert job_types == {
        "sign_up", "confirm_sign_up", "resend_confirmation_code", "forgot_password",
        "confirm_forgot_password", "import_user", "invite_user",
    }  # fmt: skip
    result = json.loads(cli("schema", "result").stdout)
    assert result["properties"]["status"]["$ref"].split("/")[-1] == "ResultStatus"
    assert result["$defs"]["ResultStatus"]["enum"] == ["succeeded", "failed", "rejected"]


def test_schema_without_a_contract_says_which_there_are() -> None:
    done = cli("schema")
    assert done.returncode == 2
    assert "job" in done.stderr
    assert "result" in done.stderr


GOOD_ENV = {
    "AWS_REGION": "us-east-1",
    "JOBS_QUEUE_URL": "http://127.0.0.1:1/123456789012/jobs",
    "RESULTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:results",
    "COGNITO_USER_POOL_ID": "us-east-1_abc",
    "COGNITO_CLIENT_ID": "abc123",
    "COGNITO_CLIENT_SECRET": "very-secret-client-secret",
}


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"JOBS_QUEUE_URL": ""}, "JOBS_QUEUE_URL"),
        ({"RESULTS_TOPIC_ARN": "results"}, "RESULTS_TOPIC_ARN"),
        ({"MAX_JOBS_IN_FLIGHT": "many"}, "MAX_JOBS_IN_FLIGHT"),
        ({"HEALTH_PORT": "70000"}, "HEALTH_PORT"),
        ({"JOB_TIMEOUT_S": "55"}, "JOB_TIMEOUT_S"),
        ({"COGNITO_CLIENT_ID": ""}, "COGNITO_CLIENT_ID"),
        ({"AWS_REGION": ""}, "AWS_REGION"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_bad_setting_stops_with_exit_2_and_one_line(change: dict[str, str], variable: str) -> None:
    done = cli("run", env={**GOOD_ENV, **change})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"cognito-worker: bad setting {variable}: ")
    assert "very-secret-client-secret" not in done.stderr + done.stdout


def test_bad_clients_json_does_not_echo_the_secret() -> None:
    env = {k: v for k, v in GOOD_ENV.items() if not k.startswith("COGNITO_")}
    env["COGNITO_CLIENTS"] = '{"abc": {"user_pool_id": "us-east-1_x", "client_secret": "s3cr3t-v'
    done = cli("run", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("cognito-worker: bad setting COGNITO_CLIENTS: not valid JSON")
    assert "s3cr3t-v" not in done.stderr


def test_several_bad_settings_are_each_reported_on_their_line() -> None:
    env = {**GOOD_ENV, "JOBS_QUEUE_URL": "", "MAX_JOBS_IN_FLIGHT": "many", "LOG_LEVEL": "loud"}
    done = cli("run", env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert [line.split(":")[0:2] for line in lines] == [
        ["cognito-worker", " bad setting JOBS_QUEUE_URL"],
        ["cognito-worker", " bad setting MAX_JOBS_IN_FLIGHT"],
        ["cognito-worker", " bad setting LOG_LEVEL"],
    ]
    assert "many" not in done.stderr
    assert "loud" not in done.stderr
    assert "very-secret-client-secret" not in done.stderr + done.stdout


def test_version() -> None:
    from importlib.metadata import version

    done = cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"cognito-worker {version('cognito-worker')}"


def test_run_help_lists_every_setting_one_line_each() -> None:
    from worker.settings import Settings

    done = cli("run", "--help")
    assert done.returncode == 0
    table = done.stdout.split("settings (environment")[1].splitlines()[1:]
    listed = [line.split()[0] for line in table if line.strip()]
    for field in Settings.model_fields.values():
        assert str(field.alias) in listed
    assert listed.count("HEALTH_PORT") == 1


def test_secret_hash_help_says_where_the_secret_comes_from() -> None:
    done = cli("secret-hash", "--help")
    assert done.returncode == 0
    assert "COGNITO_CLIENT_SECRET environment variable" in " ".join(done.stdout.split())
