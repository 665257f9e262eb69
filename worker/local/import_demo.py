"""The import part of ``make demo``: a small CSV of users sent with ``import --wait``.

Four rows: two new users (one with a non-ASCII name), one user who already exists, one invalid row
(a password with a space). The worker runs beside the import; the import's progress, summary and
report are shown as an operator would see them.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from worker.local.aws import Stack

_CSV = """\
username,password,email,given_name,custom:plan
gus,Demo-Gus-Passw0rd!,gus@example.com,Gus,gold
bob,Demo-Bob-Passw0rd!,bob@example.com,Bob,silver
hélène,Demo-Helene-Passw0rd!,helene@example.com,Hélène,gold
ivy,not a valid password,ivy@example.com,Ivy,gold
"""
_EXPECTED = {
    "gus": "succeeded",
    "bob": "already_exists",
    "hélène": "succeeded",
    "": "invalid",  # an invalid row's values are never shown, its username included
}


def run_import_demo(stack: Stack) -> bool:
    """Import the demo CSV as sign-ups; return whether every row ended as expected."""
    print("\n--- an import: `cognito-worker import users.csv --type sign_up --skip-invalid --wait`")
    print("users.csv:")
    for line in _CSV.splitlines():
        print("  " + (line if not line.startswith("ivy") else "ivy,<a password with spaces>,..."))
    environment = {**os.environ, **stack.worker_env(RECEIVE_WAIT_S="1", HEALTH_PORT="0")}
    with tempfile.TemporaryDirectory(prefix="demo-import-") as scratch:
        folder = Path(scratch)
        (folder / "users.csv").write_text(_CSV, encoding="utf-8")
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            command = [sys.executable, "-m", "worker", "import", "users.csv", "--type", "sign_up"]
            command += ["--import-id", "demo-import", "--skip-invalid", "--wait"]
            command += ["--progress-interval-s", "1", "--report", "report.csv"]
            done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
                command, env=environment, cwd=folder, check=False, timeout=120
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        report = (folder / "report.csv").read_text(encoding="utf-8")
    print("\nreport.csv:")
    print("  " + report.strip().replace("\n", "\n  "))
    statuses = {row["username"]: row["status"] for row in csv.DictReader(report.splitlines())}
    # Exit code 1: one row was invalid, so not every row made it.
    ok = statuses == _EXPECTED and done.returncode == 1
    print(f"import exit code: {done.returncode} (1: a row was invalid)")
    return ok
