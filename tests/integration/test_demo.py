"""`make demo` from a fresh folder: every outcome as expected, the live sign-up answered while the
import drains in the bulk lane, users without passwords migrated by an import job, and the logs and
the reports kept where the demo says."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path


def test_the_demo_passes_and_keeps_its_logs_and_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "demo"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert out.rstrip().endswith("demo passed: every job reached its expected outcome")
    # The live job overtook the import: answered while most of the import was still to do.
    live = re.search(
        r"live sign-up 'zoe' .*: succeeded in ([\d.]+) s; the import had (\d+) of", out
    )
    assert live, out
    assert float(live[1]) < 5.0, live[0]
    assert int(live[2]) < 100, live[0]
    # The table and the pool come after the import; the pool lists the imported users.
    assert (
        out.index("--- an import") < out.index("job          type") < out.index("users in the pool")
    )
    assert "and 100 imported user-NNN" in out
    # No JSON log line on the screen: the workers' logs are in the files the demo names.
    assert not [line for line in out.splitlines() if line.startswith('{"')], out
    folder = tmp_path / "demo-output"
    assert '"event": "worker started"' in (folder / "worker.log").read_text(encoding="utf-8")
    assert '"event": "worker started"' in (folder / "worker-import.log").read_text(encoding="utf-8")
    rows = list(csv.DictReader((folder / "report.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 104
    assert "Demo-" not in (folder / "report.csv").read_text(encoding="utf-8")  # no password
    # The migration without passwords went through Cognito's import job, not the worker.
    assert "4 row(s) through Cognito's user import job, in 1 job(s)" in out
    migration = out[out.index("--- a migration") :]
    assert "lane:" not in migration  # no row of it goes to a queue, so no lane is named
    migrated = {row["username"]: row["status"] for row in csv.DictReader(
        (folder / "migration-report.csv").read_text(encoding="utf-8").splitlines())}  # fmt: skip
    assert migrated == {
        "max": "succeeded", "nia": "succeeded", "oli": "succeeded",
        "bob": "already_exists", "": "invalid",
    }  # fmt: skip
    assert "max (RESET_REQUIRED), nia (RESET_REQUIRED), oli (RESET_REQUIRED)" in out
