"""The import job's file as AWS's guide describes it: the pool's header, the row rules, the
escaping, the limits of one file; the path the data chooses; the log lines read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.importer.job_csv import (
    MAX_ROWS_PER_JOB,
    JobFileWriter,
    PoolHeaderError,
    PoolHeaderMapping,
)
from worker.importer.plan import PlanCounts, plan_lines
from worker.importer.routes import Route, SendPath, route_of
from worker.importer.user_import import parse_log_line
from worker.local.import_job_rules import STANDARD_COLUMNS, split_cells

HEADER = [*STANDARD_COLUMNS, "custom:plan", "cognito:mfa_enabled", "cognito:username"]


def row(**fields: str) -> dict[str, str]:
    return {"username": "ann", "email": "ann@example.com", "email_verified": "TRUE", **fields}


def cells_of(mapping: PoolHeaderMapping, **fields: str) -> dict[str, str]:
    cells, problem = mapping.row(row(**fields))
    assert problem is None
    assert cells is not None
    return dict(zip(HEADER, cells, strict=True))


def test_a_row_is_written_in_the_pools_header_order_with_the_guides_escaping() -> None:
    mapping = PoolHeaderMapping(HEADER)
    written = cells_of(mapping, address="1 Main St, Springfield", given_name="  Ann  ")
    assert written["cognito:username"] == "ann"
    assert written["cognito:mfa_enabled"] == "false"  # required; a file without it means off
    assert written["email_verified"] == "true"
    assert written["address"] == "1 Main St\\, Springfield"
    assert written["given_name"] == "Ann"  # Cognito trims; so does the import, to check it
    # The front reads it back as the guide says Cognito does.
    line = ",".join(written[c] for c in HEADER)
    assert dict(zip(HEADER, split_cells(line), strict=True))["address"] == "1 Main St, Springfield"


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"username": "ann smith"}, "must not contain spaces or tabs"),
        ({"username": ""}, "cognito:username: required"),
        ({"email_verified": "false"}, "email_verified or phone_number_verified must be true"),
        ({"email": ""}, "email_verified is true but email is empty"),
        ({"email_verified": "yes"}, "email_verified: must be true or false"),
        ({"address": 'a "quoted" street'}, "has a double quote"),
        ({"address": "line one\nline two"}, "has a line break"),
        ({"address": "back\\slash"}, "has a backslash"),
        ({"address": "x" * 16_001}, "longer than the 16,000 characters"),
    ],
)
def test_a_row_that_breaks_a_documented_rule_is_refused_with_the_rule(
    fields: dict[str, str], rule: str
) -> None:
    cells, problem = PoolHeaderMapping(HEADER).row(row(**fields))
    assert cells is None
    assert problem is not None
    assert rule in problem
    assert "ann smith" not in problem  # the rule, never the value


def test_columns_the_pool_lacks_are_refused_and_those_the_job_ignores_are_named() -> None:
    mapping = PoolHeaderMapping(HEADER)
    with pytest.raises(PoolHeaderError, match="custom:tier"):
        mapping.check_columns(["username", "email", "custom:tier"])
    mapping.check_columns(["username", "password", "client_metadata.source", "email"])
    assert mapping.ignored_columns == {"password", "client_metadata.source"}


def test_job_files_are_split_at_the_row_and_byte_limits(tmp_path: Path) -> None:
    writer = JobFileWriter(tmp_path, ["cognito:username"], max_rows=3)
    for line in range(2, 9):
        writer.add(line, [f"user{line}"])
    files = writer.finish()
    assert [(f.first_line, f.last_line, f.rows) for f in files] == [(2, 4, 3), (5, 7, 3), (8, 8, 1)]
    content = files[0].path.read_bytes()
    assert content == b"cognito:username\nuser2\nuser3\nuser4\n"  # UTF-8, no byte-order mark
    by_size = JobFileWriter(tmp_path / "..", ["h"], max_bytes=len("h\n") + 2 * len("ab\n"))
    for line in range(2, 7):
        by_size.add(line, ["ab"])
    assert [f.rows for f in by_size.finish()] == [2, 2, 1]
    capped = JobFileWriter(tmp_path, ["h"], max_rows=10**9)
    assert capped._max_rows == MAX_ROWS_PER_JOB  # never past Cognito's 500,000


def test_the_data_chooses_the_path_of_a_migration_only() -> None:
    assert route_of("import_user", SendPath.AUTO, {"password": "x"}) is Route.WORKER
    assert route_of("import_user", SendPath.AUTO, {"password": ""}) is Route.IMPORT_JOB
    assert route_of("import_user", SendPath.AUTO, {}) is Route.IMPORT_JOB
    assert route_of("import_user", SendPath.IMPORT_JOB, {"password": "x"}) is Route.IMPORT_JOB
    assert route_of("import_user", SendPath.WORKER, {}) is Route.WORKER
    assert route_of("sign_up", SendPath.AUTO, {}) is Route.WORKER


def test_the_log_lines_of_the_guide_are_read_and_others_passed_over() -> None:
    failed = parse_log_line(
        "[FAILED] Line Number 5956 - The User Record does not set any of the auto verified "
        "attributes to true. (Example: email_verified to true)."
    )
    assert failed is not None
    assert (failed.job_line, failed.outcome) == (5956, "FAILED")
    assert failed.message.startswith("The User Record does not set")
    skipped = parse_log_line("[SKIPPED] Line Number 7 - The user already exists.")
    assert skipped is not None
    assert skipped.outcome == "SKIPPED"
    assert parse_log_line("Import job started") is None


def test_the_plan_gives_time_at_the_budgets_and_the_mau_with_its_sources() -> None:
    counts = PlanCounts("import_user", worker_rows=108_000, job_rows=900_000, job_parts=2,
                        invalid=3, worker_reason="a password in the file")  # fmt: skip
    text = "\n".join(plan_lines(counts, {"RATE_USER_ACCOUNT_RECOVERY_RPS": "30"}))
    assert "108,000 row(s) as import_user jobs through the worker" in text
    assert "about 60 min at 30 rows/s" in text  # the slower of its two budgets
    assert "900,000 row(s) through Cognito's user import job, in 2 job(s)" in text
    assert "RESET_REQUIRED" in text
    assert "CONFIRMED" in text
    assert "MAU: none from the import [1][2]" in text
    assert "[1] AWS, Amazon Cognito Developer Guide" in text
    assert "3 invalid row(s)" in text
