"""The migration part of ``make demo``: users without a password imported through Cognito's own
user import job, not through the worker.

The file holds three new users, one who already exists and one invalid row (``email_verified``
true with no email to verify). ``cognito-worker import`` plans the path from the data (no
password: the import job), writes the job's CSV, uploads it to the presigned URL, starts the job,
follows it and reads each failed row's reason from the job's log, all against the local front's
import jobs over moto. The new users end RESET_REQUIRED, as AWS's guide gives imported users.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from worker.local.aws import Stack

_ROWS = """\
username,email,email_verified,given_name
max,max@example.com,true,Max
nia,nia@example.com,true,Nia
oli,oli@example.com,true,Oli
bob,bob@example.com,true,Bob
pat,,true,Pat
"""
#: What the report says of each row; the invalid row's values are never shown, so it has no name.
EXPECTED_STATUSES = {
    "max": "succeeded",
    "nia": "succeeded",
    "oli": "succeeded",
    "bob": "already_exists",
    "": "invalid",
}
#: The users the import job creates, and the state AWS's guide gives them.
IMPORTED = {"max": "RESET_REQUIRED", "nia": "RESET_REQUIRED", "oli": "RESET_REQUIRED"}


@dataclass
class MigrationDemo:
    """What the migration part saw: the report's statuses and the command's exit code."""

    statuses: dict[str, str]
    exit_code: int
    report_path: Path

    @property
    def ok(self) -> bool:
        return self.statuses == EXPECTED_STATUSES and self.exit_code == 1  # one invalid row


def run_migration_demo(stack: Stack, out: Path) -> MigrationDemo:
    """Import the demo's users without passwords through Cognito's user import job."""
    print("\n--- a migration without passwords, through Cognito's own user import job")
    (out / "migrated.csv").write_text(_ROWS, encoding="utf-8")
    command = [sys.executable, "-m", "worker", "import", "migrated.csv", "--type", "import_user"]
    command += ["--import-id", "demo-migration", "--skip-invalid", "--yes"]
    command += ["--progress-interval-s", "2", "--report", "migration-report.csv"]
    print("$ cognito-worker import migrated.csv --type import_user --skip-invalid --yes")
    done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        command,
        env={**os.environ, **stack.worker_env()},
        cwd=out,
        check=False,
        timeout=180,
    )
    report_path = out / "migration-report.csv"
    with report_path.open(encoding="utf-8", newline="") as report:
        statuses = {row["username"]: row["status"] for row in csv.DictReader(report)}
    return MigrationDemo(statuses=statuses, exit_code=done.returncode, report_path=report_path)
