"""The import part of ``make demo``: an import drains in the bulk lane while a live sign-up on
the interactive lane is answered at once.

The CSV holds 100 generated users and four rows that show the report's statuses: two new users
(one with a non-ASCII name), one user who already exists, one invalid row (a password with a
space). The worker paces sign-ups at :data:`DEMO_RATE_RPS` so that the import lasts long enough
to watch; a live sign-up sent while it runs goes ahead of every queued import row.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from worker.local.aws import Stack, aws_client

# Slow enough that the import (104 rows) lasts about ten seconds, so a live job can overtake it.
DEMO_RATE_RPS = 10
_GENERATED = 100
_SPECIAL_ROWS = """\
gus,Demo-Gus-Passw0rd!,gus@example.com,Gus,gold
bob,Demo-Bob-Passw0rd!,bob@example.com,Bob,silver
hélène,Demo-Helene-Passw0rd!,helene@example.com,Hélène,gold
ivy,not a valid password,ivy@example.com,Ivy,gold
"""
_HEADER = "username,password,email,given_name,custom:plan\n"
_EXPECTED_SPECIAL = {"gus": "succeeded", "bob": "already_exists", "hélène": "succeeded"}
_LIVE_USER = "zoe"


@dataclass
class ImportDemo:
    """What the import part saw: the report's statuses, the live job's wait, the exit code."""

    statuses: dict[str, str]
    live_status: str | None
    live_wait_s: float | None
    rows_done_when_live_answered: int
    exit_code: int
    report_path: Path

    @property
    def ok(self) -> bool:
        generated = [s for name, s in self.statuses.items() if name.startswith("user-")]
        return (
            all(self.statuses.get(name) == status for name, status in _EXPECTED_SPECIAL.items())
            and generated == ["succeeded"] * _GENERATED
            and self.statuses.get("") == "invalid"  # an invalid row's values are never shown
            and self.live_status == "succeeded"
            and self.exit_code == 1  # one row was invalid, so not every row made it
        )


def _users_csv() -> str:
    generated = "".join(
        f"user-{n:03},Demo-User-{n:03}-Passw0rd!,user-{n:03}@example.com,User {n},free\n"
        for n in range(_GENERATED)
    )
    return _HEADER + generated + _SPECIAL_ROWS


def _send_live_sign_up(stack: Stack) -> float:
    """A backend's live sign-up on the interactive lane (JOBS_QUEUE_URL); its send time."""
    body = {
        "version": 1, "job_id": "live-1", "type": "sign_up", "username": _LIVE_USER,
        "password": "Demo-Zoe-Passw0rd!", "user_attributes": {"email": "zoe@example.com"},
    }  # fmt: skip
    sent_at = time.monotonic()
    aws_client("sqs", stack.endpoints.moto).send_message(
        QueueUrl=stack.jobs_queue_url, MessageBody=json.dumps(body)
    )
    return sent_at


def _wait_for_live_result(stack: Stack, timeout_s: float = 30) -> tuple[str | None, float, int]:
    """Read the stack's results queue until the live job's result arrives: its status, when it
    arrived, and how many of the import's results came before it."""
    sqs = aws_client("sqs", stack.endpoints.moto)
    deadline = time.monotonic() + timeout_s
    imported = 0
    while time.monotonic() < deadline:
        answer = sqs.receive_message(
            QueueUrl=stack.results_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        arrived = time.monotonic()
        for message in answer.get("Messages", []):
            sqs.delete_message(
                QueueUrl=stack.results_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            result = json.loads(message["Body"])
            if result.get("job_id") == "live-1":
                return result["status"], arrived, imported
            if result.get("batch") == "demo-import":
                imported += 1
    return None, time.monotonic(), imported


def run_import_demo(stack: Stack, out: Path) -> ImportDemo:
    """Import the demo CSV (bulk lane) beside a live sign-up (interactive lane)."""
    print(f"\n--- an import in the bulk lane, a live sign-up on the interactive lane "
          f"(the worker paces sign-ups at {DEMO_RATE_RPS}/s here)")  # fmt: skip
    (out / "users.csv").write_text(_users_csv(), encoding="utf-8")
    environment = {
        **os.environ,
        **stack.worker_env(RECEIVE_WAIT_S="1", HEALTH_PORT="0"),
        "RATE_USER_CREATION_RPS": str(DEMO_RATE_RPS),
    }
    with (out / "worker-import.log").open("wb") as worker_log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"], env=environment,
            stdout=worker_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            command = [sys.executable, "-m", "worker", "import", "users.csv", "--type", "sign_up"]
            command += ["--import-id", "demo-import", "--skip-invalid", "--wait"]
            command += ["--progress-interval-s", "2", "--report", "report.csv"]
            print("$ cognito-worker import users.csv --type sign_up --skip-invalid --wait")
            importing = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
                command, env=environment, cwd=out
            )
            time.sleep(3)  # the import is sending and the worker is creating its users
            sent_at = _send_live_sign_up(stack)
            live_status, answered_at, done_then = _wait_for_live_result(stack)
            print(f"\n  live sign-up '{_LIVE_USER}' sent to the interactive lane while the import "
                  f"ran: {live_status} in {answered_at - sent_at:.2f} s; the import had "
                  f"{done_then} of the {_GENERATED + 3} rows it sent done then (its invalid "
                  "row is never sent)\n",
                  flush=True)  # fmt: skip
            exit_code = importing.wait(timeout=120)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    report_path = out / "report.csv"
    report = report_path.read_text(encoding="utf-8")
    statuses = {row["username"]: row["status"] for row in csv.DictReader(report.splitlines())}
    return ImportDemo(
        statuses=statuses,
        live_status=live_status,
        live_wait_s=answered_at - sent_at if live_status else None,
        rows_done_when_live_answered=done_then,
        exit_code=exit_code,
        report_path=report_path,
    )


def print_report_excerpt(demo: ImportDemo) -> None:
    """The report's rows that show each status (the generated rows all succeeded)."""
    lines = demo.report_path.read_text(encoding="utf-8").splitlines()
    shown = [lines[0]] + [line for line in lines[1:] if ",user-" not in line]
    generated = sum(1 for line in lines[1:] if ",user-" in line)
    print(f"{demo.report_path} ({generated} generated rows not shown):")
    print("  " + "\n  ".join(shown))
