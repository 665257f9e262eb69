"""The Node.js example, run as a Node backend would run it: ajv on the published schemas, and the
AWS SDK v3 enqueueing a job and reading its result from the local AWS."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import finish, start_worker
from tests.unit.test_schema import BROKEN, examples
from worker.local.aws import REGION, Stack, aws_client

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"


@pytest.fixture(scope="session")
def node_example() -> Path:
    """examples/node with its locked dependencies installed (`npm ci`, once per lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js 20 and npm are needed for the Node example's tests")
    lock = EXAMPLE / "package-lock.json"
    stamp = EXAMPLE / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=EXAMPLE, check=True, timeout=300)  # fmt: skip
    return EXAMPLE


def node(example: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None,
         timeout_s: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        ["node", *args], cwd=example, input=stdin, env=env,
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def lines(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)


def test_ajv_accepts_the_example_jobs_and_results(node_example: Path) -> None:
    jobs = node(node_example, "validate.mjs", "job", stdin=lines(examples("jobs")))
    assert jobs.returncode == 0, jobs.stdout + jobs.stderr
    assert jobs.stdout.split() == ["ok"] * len(examples("jobs"))
    results = node(node_example, "validate.mjs", "result", stdin=lines(examples("results")))
    assert results.returncode == 0, results.stdout + results.stderr
    assert results.stdout.split() == ["ok"] * len(examples("results"))


def test_ajv_refuses_what_the_worker_refuses(node_example: Path) -> None:
    valid = examples("jobs")[0]
    broken = [{**valid, **change} for change in BROKEN]
    # Astral characters and a character Cognito's classes leave out, as ajv (UTF-16) sees them.
    accepted = [{**valid, "username": "rocket\U0001f680"}, {**valid, "username": "李小龙"}]
    refused = [{**valid, "username": "\U000e0001tag"}]  # U+E0001 is a format character (Cf)
    done = node(node_example, "validate.mjs", "job", stdin=lines(broken + accepted + refused))
    verdicts = [line.split(" ", 1)[0] for line in done.stdout.splitlines()]
    assert verdicts == ["invalid"] * len(broken) + ["ok", "ok"] + ["invalid"]


def test_the_node_example_enqueues_a_sign_up_and_reads_its_result(
    stack: Stack, node_example: Path
) -> None:
    worker = start_worker(stack)
    env = node_env(stack)
    try:
        # As docs/producers.md runs it: the username is the email address.
        done = node(node_example, "sign-up.mjs", "ann@example.com", env=env, timeout_s=90)
        named = node(node_example, "sign-up.mjs", "Zoë", "zoe@example.com", env=env, timeout_s=90)
    finally:
        worker.send_signal(signal.SIGTERM)
        ran = finish(worker)
    assert done.returncode == 0, done.stderr
    assert named.returncode == 0, named.stderr
    assert ran.returncode == 0
    for printed, username, email in ((done, "ann@example.com", "ann@example.com"),
                                     (named, "Zoë", "zoe@example.com")):  # fmt: skip
        result = json.loads(printed.stdout)
        assert (result["type"], result["status"], result["user_confirmed"], result["detail"]) == (
            "sign_up",
            "succeeded",
            False,
            None,
        )
        assert result["user_sub"]
        assert "Corr3ct-Horse!" not in printed.stdout + printed.stderr
        user = aws_client("cognito-idp", stack.endpoints.moto).admin_get_user(
            UserPoolId=stack.user_pool_id, Username=username
        )
        attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
        assert attributes["email"] == email
        assert attributes["sub"] == result["user_sub"]


def test_the_node_example_refuses_to_make_an_email_up(stack: Stack, node_example: Path) -> None:
    done = node(node_example, "sign-up.mjs", "Zoë", env=node_env(stack))
    assert done.returncode == 2
    assert "give the user's EMAIL" in done.stderr
    assert stack.queue_depth(stack.jobs_queue_url) == 0


def node_env(stack: Stack) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COGNITO_"))}
    return {
        **base,
        "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL": stack.endpoints.moto,
        "JOBS_QUEUE_URL": stack.jobs_queue_url, "RESULTS_QUEUE_URL": stack.results_queue_url,
        "SIGN_UP_PASSWORD": "Corr3ct-Horse!", "RESULT_TIMEOUT_S": "60",
    }  # fmt: skip
