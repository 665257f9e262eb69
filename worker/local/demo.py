"""``make demo``: the whole pipeline against the embedded local AWS, with a table of the results.

It starts the local AWS, provisions a user pool, both lanes' queues and the results topic,
enqueues one job of every type (plus a sign-up that must fail and a malformed message), runs the
real worker process until the queue is drained, and reads the results from the topic's
subscribed queue. Then an import drains in the bulk lane while a live sign-up is answered on the
interactive lane, and users without a password are migrated through Cognito's own user import
job. The table of outcomes, the users in the pool and the exit codes come last; the
workers' JSON logs, the import's CSV and its report stay in ``demo-output/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.local.aws import Stack, aws_client, local_aws, provision
from worker.local.import_demo import ImportDemo, print_report_excerpt, run_import_demo
from worker.local.import_job_demo import IMPORTED, MigrationDemo, run_migration_demo

#: Where the demo leaves the workers' logs, the import's CSV and its report (in the current folder).
OUTPUT = Path("demo-output")

_PASSWORD = "Demo-Passw0rd!"  # noqa: S105 - a throwaway password for local users
_CODE = "123456"


@dataclass(frozen=True, slots=True)
class DemoJob:
    """One message the demo enqueues, and the outcome it expects."""

    job_id: str
    body: str
    expected_status: str
    expected_error: str | None = None


def _job(
    job_id: str, job_type: str, expected: str, error: str | None = None, **fields: Any
) -> DemoJob:
    body = json.dumps({"version": 1, "job_id": job_id, "type": job_type, **fields})
    return DemoJob(job_id, body, expected, error)


def _demo_jobs() -> list[DemoJob]:
    return [
        _job(
            "demo-1",
            "sign_up",
            "succeeded",
            username="ann",
            password=_PASSWORD,
            user_attributes={"email": "ann@example.com", "given_name": "Ann"},
        ),
        _job(
            "demo-2",
            "sign_up",
            "failed",
            "UsernameExistsException",
            username="bob",
            password=_PASSWORD,
            user_attributes={"email": "bob@example.com"},
        ),
        _job("demo-3", "confirm_sign_up", "succeeded", username="carl", confirmation_code=_CODE),
        _job("demo-4", "resend_confirmation_code", "succeeded", username="dana"),
        _job("demo-5", "forgot_password", "succeeded", username="erin"),
        _job(
            "demo-6",
            "confirm_forgot_password",
            "succeeded",
            username="fay",
            confirmation_code=_CODE,
            password="Demo-N3w-Passw0rd!",  # noqa: S106 - a throwaway local password
        ),
        DemoJob(
            "(malformed)",
            '{"version": 1, "type": "sign_up", "username": ',
            "rejected",
            "InvalidJob",
        ),
    ]


def _seed_users(stack: Stack) -> None:
    """bob and erin and fay exist and are confirmed; carl and dana signed up, unconfirmed."""
    for username in ("bob", "erin", "fay"):
        stack.create_confirmed_user(username, _PASSWORD)
    for username in ("carl", "dana"):
        stack.create_unconfirmed_user(username, _PASSWORD)


def _read_results(stack: Stack, expected: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    sqs = aws_client("sqs", stack.endpoints.moto)
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(results) < expected and time.monotonic() < deadline:
        answer = sqs.receive_message(
            QueueUrl=stack.results_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in answer.get("Messages", []):
            results.append(json.loads(message["Body"]))
            sqs.delete_message(
                QueueUrl=stack.results_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    return results


def _summary(result: dict[str, Any]) -> str:
    if result.get("error"):
        return f"{result['error']['code']}: {result['error']['message']}"[:70]
    if result.get("detail"):
        return str(result["detail"])
    if result.get("user_sub"):
        return f"user_sub {result['user_sub']}"
    delivery = result.get("code_delivery")
    if delivery:
        return f"code sent by {delivery['delivery_medium']} to {delivery['destination']}"
    return "done"


def _print_table(jobs: list[DemoJob], results: list[dict[str, Any]]) -> bool:
    by_id = {r.get("job_id") or "(malformed)": r for r in results}
    print()
    print(f"{'job':<12} {'type':<26} {'status':<10} {'expected':<10} outcome")
    print("-" * 100)
    all_as_expected = True
    for job in jobs:
        result = by_id.get(job.job_id)
        status = result["status"] if result else "(none)"
        error = (result or {}).get("error") or {}
        ok = status == job.expected_status and error.get("code") == job.expected_error
        all_as_expected &= ok
        job_type = (result or {}).get("type") or "?"
        summary = _summary(result) if result else "no result on the topic"
        mark = "ok " if ok else "BAD"
        print(f"{job.job_id:<12} {job_type:<26} {status:<10} {mark:<10} {summary}")
    return all_as_expected


def _run_jobs(stack: Stack, jobs: list[DemoJob]) -> int:
    """Enqueue the demo's jobs and run the worker until the queue is drained; its exit code."""
    sqs = aws_client("sqs", stack.endpoints.moto)
    for job in jobs:
        sqs.send_message(QueueUrl=stack.jobs_queue_url, MessageBody=job.body)
    print(f"enqueued {len(jobs)} jobs; running `cognito-worker run --exit-when-idle` "
          f"(its log: {OUTPUT / 'worker.log'})")  # fmt: skip
    environment = {**os.environ, **stack.worker_env(RECEIVE_WAIT_S="1", HEALTH_PORT="0")}
    with (OUTPUT / "worker.log").open("wb") as log:
        worker = subprocess.run(
            [sys.executable, "-m", "worker", "run", "--exit-when-idle"],
            env=environment, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=120,
        )  # fmt: skip
    return worker.returncode


def _users(stack: Stack) -> dict[str, str]:
    """Every user in the pool and its status (ListUsers pages at 60)."""
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    users: dict[str, str] = {}
    for page in idp.get_paginator("list_users").paginate(UserPoolId=stack.user_pool_id):
        users |= {user["Username"]: user["UserStatus"] for user in page["Users"]}
    return users


def _print_pool(users: dict[str, str]) -> None:
    named = {n: s for n, s in users.items() if not n.startswith("user-")}
    generated = len(users) - len(named)
    print(f"users in the pool ({len(users)}): "
          + ", ".join(f"{n} ({s})" for n, s in sorted(named.items()))
          + f", and {generated} imported user-NNN")  # fmt: skip


def run_demo() -> int:
    """Run the demo; return 0 only if every job reached the outcome it expects."""
    shutil.rmtree(OUTPUT, ignore_errors=True)  # the demo's own folder: a re-run starts afresh
    OUTPUT.mkdir()
    print("starting the local AWS (moto server and the Cognito front) on 127.0.0.1 ...")
    with local_aws() as endpoints:
        stack = provision(endpoints, "demo")
        _seed_users(stack)
        jobs = _demo_jobs()
        exit_code = _run_jobs(stack, jobs)
        results = _read_results(stack, expected=len(jobs))
        left = stack.queue_depth(stack.jobs_queue_url)
        dead = stack.queue_depth(stack.dead_letter_queue_url)
        imported: ImportDemo = run_import_demo(stack, OUTPUT)
        migrated: MigrationDemo = run_migration_demo(stack, OUTPUT)
        users = _users(stack)
    print()
    print_report_excerpt(imported)
    print(f"import exit code: {imported.exit_code} (1: a row was invalid)")
    print(f"\n{migrated.report_path}:")
    print("  " + migrated.report_path.read_text(encoding="utf-8").strip().replace("\n", "\n  "))
    print(f"migration exit code: {migrated.exit_code} (1: a row was invalid)")
    as_expected = _print_table(jobs, results)
    print()
    print(f"worker exit code: {exit_code}")
    print(f"messages left on the jobs queue: {left}; on the dead-letter queue: {dead}")
    _print_pool(users)
    print(f"logs, the imports' files and their reports: {OUTPUT}/")
    ok = (
        as_expected
        and exit_code == 0
        and left == 0
        and dead == 1
        and users.get("ann") == "UNCONFIRMED"
        and users.get("carl") == "CONFIRMED"
        and imported.ok
        and migrated.ok
        and all(users.get(name) == state for name, state in IMPORTED.items())
    )
    print("\ndemo " + ("passed: every job reached its expected outcome" if ok else "FAILED"))
    return 0 if ok else 1
