"""An import run with its AWS seams faked: what an operator sees of validation, duplicates, the
report's messages, a resumed run's lookups, the report names and the progress lines."""

from __future__ import annotations

import csv
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from fcntl import ioctl
from pathlib import Path

import pytest

from worker.contract.jobs import Job, JobError, JobResult, JobType, ResultStatus
from worker.importer.checkpoint import Checkpoint
from worker.importer.command import (
    EXIT_OK,
    EXIT_OUTCOMES_UNKNOWN,
    EXIT_ROWS_NOT_DONE,
    ImportOptions,
    ImportRun,
    derived_import_id,
)
from worker.importer.formats import import_job_row_problem
from worker.importer.progress import BarProgress, LineProgress, RecentRate, progress_factory
from worker.importer.reading import FileFormat, file_digest
from worker.importer.sending import BatchCallback, LookedUp, ResultStream
from worker.producer.lookup import JobState, JobStatus

PASSWORD = "Passw0rd-Secret!"
HTML_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>500 Internal Server Error</title></head>\n"
    "<body><h1>Internal Server Error</h1>\n<p>The server encountered an internal error.</p>"
    "\n</body></html>\n"
)


class Sender:
    """Takes every job, as SQS would."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def send_many(self, jobs: Iterable[Job], on_batch: BatchCallback) -> None:
        for job in jobs:
            self.jobs.append(job)
            on_batch([job.job_id or ""], [])


class Lookup:
    """The idempotency table, as a dict of job id to state."""

    def __init__(self, states: dict[str, JobState | None]) -> None:
        self.states = states
        self.asked: list[str] = []

    def look_up_many(self, job_ids: Iterable[str]) -> Iterator[LookedUp]:
        for job_id in job_ids:
            self.asked.append(job_id)
            yield LookedUp(job_id, self.states.get(job_id))


class Results:
    """Results that arrive on the first poll."""

    def __init__(self, results: list[JobResult]) -> None:
        self._results = results

    def poll(self, wait_s: float) -> Iterator[JobResult]:
        results, self._results = self._results, []
        return iter(results)


def result(job_id: str, status: ResultStatus, code: str = "", message: str = "") -> JobResult:
    now = datetime.now(UTC)
    error = JobError(code=code, message=message, retryable=True) if code else None
    return JobResult(
        job_id=job_id,
        type=JobType.SIGN_UP,
        client_id="c1",
        status=status,
        sqs_message_id="m",
        error=error,
        attempts=1,
        received_at=now,
        finished_at=now,
    )


def users_file(tmp_path: Path, rows: list[str], header: str = "username,password,email") -> Path:
    path = tmp_path / "users.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def run(
    tmp_path: Path,
    path: Path,
    *,
    sender: Sender | None = None,
    lookup: Lookup | None = None,
    results: list[JobResult] | None = None,
    **options: object,
) -> tuple[int, str, list[dict[str, str]]]:
    out = io.StringIO()
    follower: Callable[[str], object] | None = None
    if results is not None:

        @contextmanager
        def follow(batch: str) -> Iterator[ResultStream]:
            yield Results(results)

        follower = follow
    chosen = ImportOptions(
        file=path,
        job_type="sign_up",
        file_format=FileFormat.CSV,
        import_id="imp",
        report=tmp_path / "r.csv",
        checkpoint=tmp_path / "c.json",
        **options,  # type: ignore[arg-type]
    )
    code = ImportRun(
        chosen,
        sender=sender or Sender(),
        follower=follower,  # type: ignore[arg-type]
        progress=progress_factory(out, 60),
        output=out,
        lookup=lookup,
        lookup_unavailable="IDEMPOTENCY_STORE is memory: nothing to look up",
    ).execute()
    report = tmp_path / "r.csv"
    rows = list(csv.DictReader(report.open(encoding="utf-8"))) if report.exists() else []
    return code, out.getvalue(), rows


def statuses(rows: list[dict[str, str]]) -> dict[int, str]:
    return {int(r["line"]): r["status"] for r in rows}


# -- 1. validation ----------------------------------------------------------------------------


def test_the_operators_file_is_caught_whole_before_anything_is_sent(tmp_path: Path) -> None:
    """A bad email, a username twice with two emails, a row missing a column: each is found."""
    rows = [f"user{i:02d},{PASSWORD},user{i:02d}@example.com" for i in range(20)]
    rows[2] = f"user02,{PASSWORD},not-an-email"
    rows[6] = f"user05,{PASSWORD},other@example.com"  # line 8; user05 is on line 7 too
    rows[9] = f"user09,{PASSWORD}"  # line 11: a column short
    path = users_file(tmp_path, rows)
    sender = Sender()
    code, out, report = run(tmp_path, path, sender=sender, validate_only=True)
    assert code == EXIT_ROWS_NOT_DONE
    assert "line 4: email: not an email address" in out
    assert "line 7: username (compared without case) also on line(s) 8 with different data" in out
    assert "line 8: username (compared without case) also on line(s) 7 with different data" in out
    assert "line 11: has 2 fields; the header has 3" in out
    assert {line for line, status in statuses(report).items() if status == "invalid"} == {
        4,
        7,
        8,
        11,
    }
    assert "not-an-email" not in out + (tmp_path / "r.csv").read_text()
    # The run proper sends nothing while they are there.
    code, out, report = run(tmp_path, path, sender=sender)
    assert code == EXIT_ROWS_NOT_DONE
    assert sender.jobs == []
    assert "4 invalid row(s): nothing was sent" in out


@pytest.mark.parametrize(
    ("cells", "problem"),
    [
        (f"ann,{PASSWORD},ann@example", "email: not an email address"),
        (f"ann,{PASSWORD},ann @example.com", "email: not an email address"),
        (f"ann,{PASSWORD},ann@example.com,447700900123", "phone_number: not an E.164 number"),
        (f"ann,{PASSWORD},ann@example.com,+44 7700 900123", "phone_number: not an E.164 number"),
        (f"ann,{PASSWORD},ann@example.com,+1234567890123456", "phone_number: not an E.164"),
        (f"ann,{PASSWORD},ann@example.com,+447700900123,{'x' * 2049}", "given_name: longer than"),
        ("ann,Ab1!e,ann@example.com", "password: shorter than 6 characters"),
        (f"ann,{'A1!b' * 65},ann@example.com", "password: longer than 256 characters"),
        (f"{'a' * 129},{PASSWORD},ann@example.com", "username: String should have at most 128"),
    ],
)
def test_formats_cognito_enforces_are_refused_by_rule(
    tmp_path: Path, cells: str, problem: str
) -> None:
    header = "username,password,email,phone_number,given_name"
    filled = cells + "," * (4 - cells.count(","))
    path = users_file(tmp_path, [filled], header=header)
    code, out, report = run(tmp_path, path, validate_only=True)
    assert code == EXIT_ROWS_NOT_DONE
    assert f"line 2: sign_up.{problem}" in out or f"line 2: {problem}" in out
    assert statuses(report) == {2: "invalid"}


def test_good_formats_pass(tmp_path: Path) -> None:
    header = "username,password,email,phone_number,given_name"
    path = users_file(
        tmp_path,
        [f"ann,{PASSWORD},ann.o+tag@mail.example.co.uk,+447700900123,{'x' * 2048}"],
        header=header,
    )
    code, _, report = run(tmp_path, path, validate_only=True)
    assert code == EXIT_OK
    assert statuses(report) == {2: "valid"}


def test_an_exact_repeat_is_sent_once_and_reported_as_a_duplicate(tmp_path: Path) -> None:
    row = f"ann,{PASSWORD},ann@example.com"
    path = users_file(tmp_path, [row, f"bob,{PASSWORD},bob@example.com", row])
    sender = Sender()
    code, out, report = run(tmp_path, path, sender=sender)
    assert [job.username for job in sender.jobs] == ["ann", "bob"]
    assert statuses(report) == {2: "sent", 3: "sent", 4: "duplicate"}
    assert report[2]["message"] == "repeats line 2 exactly: not sent again"
    assert "line 4: duplicate: repeats line 2 exactly" in out
    assert code == EXIT_ROWS_NOT_DONE  # a repeat is not a success


def test_usernames_are_compared_without_case_unless_told(tmp_path: Path) -> None:
    path = users_file(tmp_path, [f"Ann,{PASSWORD},ann@example.com", f"ann,{PASSWORD},a@b.example"])
    code, _, report = run(tmp_path, path, validate_only=True)
    assert code == EXIT_ROWS_NOT_DONE
    assert statuses(report) == {2: "invalid", 3: "invalid"}
    assert "also on line(s) 3" in report[0]["message"]
    code, _, report = run(tmp_path, path, validate_only=True, case_sensitive_usernames=True)
    assert code == EXIT_OK
    assert statuses(report) == {2: "valid", 3: "valid"}


# -- 2. one line per message ------------------------------------------------------------------


def test_an_html_error_page_becomes_one_short_line_in_the_report(tmp_path: Path) -> None:
    path = users_file(
        tmp_path, [f"ann,{PASSWORD},ann@example.com", f"bob,{PASSWORD},bob@example.com"]
    )
    results = [
        result("imp:sign_up:2", ResultStatus.FAILED, "InternalErrorException", HTML_PAGE),
        result("imp:sign_up:3", ResultStatus.FAILED, "InvalidParameterException", "a\nb\n  c"),
    ]
    code, _, report = run(tmp_path, path, results=results, wait=True)
    assert code == EXIT_ROWS_NOT_DONE
    assert [(r["error_code"], r["message"]) for r in report] == [
        ("InternalErrorException", "an HTML error page, not an AWS answer"),
        ("InvalidParameterException", "a b c"),
    ]
    assert (tmp_path / "r.csv").read_text().count("\n") == 3


# -- 3. a resume looks up what became of the rows sent before ---------------------------------


def checkpoint_of(tmp_path: Path, path: Path, lines: list[int]) -> None:
    digest = file_digest(path)
    checkpoint = Checkpoint(tmp_path / "c.json", "imp", "sign_up", digest)
    checkpoint.mark_sent(lines)
    checkpoint.save()


def test_a_resume_reports_each_earlier_rows_real_outcome_or_unknown(tmp_path: Path) -> None:
    path = users_file(tmp_path, [f"u{i},{PASSWORD},u{i}@example.com" for i in range(6)])
    checkpoint_of(tmp_path, path, [2, 3, 4, 5, 6])  # line 7 was not sent
    lookup = Lookup(
        {
            "imp:sign_up:2": JobState("c1", "imp:sign_up:2", JobStatus.FINISHED,
                                      result=result("imp:sign_up:2", ResultStatus.SUCCEEDED)),
            "imp:sign_up:3": JobState("c1", "imp:sign_up:3", JobStatus.FINISHED,
                                      result=result("imp:sign_up:3", ResultStatus.FAILED,
                                                    "UsernameExistsException", "exists")),
            "imp:sign_up:4": None,
            "imp:sign_up:5": JobState("c1", "imp:sign_up:5", JobStatus.PENDING,
                                      failed_deliveries=2),
            "imp:sign_up:6": JobState("c1", "imp:sign_up:6", JobStatus.RUNNING, lease_left_s=9),
        }
    )  # fmt: skip
    sender = Sender()
    code, out, report = run(tmp_path, path, sender=sender, lookup=lookup, resume=True)
    assert [job.job_id for job in sender.jobs] == ["imp:sign_up:7"]
    assert statuses(report) == {
        2: "succeeded",
        3: "already_exists",
        4: "unknown",
        5: "unknown",
        6: "unknown",
        7: "sent",
    }
    messages = {int(r["line"]): r["message"] for r in report}
    assert "no record in the idempotency table" in messages[4]
    assert "pending, 2 delivery(ies) without an outcome" in messages[5]
    assert "a worker is on it now" in messages[6]
    assert code == EXIT_OUTCOMES_UNKNOWN
    assert "3 row(s) sent by an earlier run have no known outcome" in out


def test_a_resume_with_every_outcome_found_exits_0(tmp_path: Path) -> None:
    path = users_file(tmp_path, [f"u{i},{PASSWORD},u{i}@example.com" for i in range(2)])
    checkpoint_of(tmp_path, path, [2, 3])
    done = result("x", ResultStatus.SUCCEEDED)
    lookup = Lookup(
        {f"imp:sign_up:{n}": JobState("c1", f"imp:sign_up:{n}", JobStatus.FINISHED, result=done)
         for n in (2, 3)}
    )  # fmt: skip
    code, _, report = run(tmp_path, path, lookup=lookup, resume=True)
    assert code == EXIT_OK
    assert statuses(report) == {2: "succeeded", 3: "succeeded"}


def test_a_resume_without_a_table_to_look_in_reports_unknown(tmp_path: Path) -> None:
    path = users_file(tmp_path, [f"u{i},{PASSWORD},u{i}@example.com" for i in range(3)])
    checkpoint_of(tmp_path, path, [2, 3])
    code, out, report = run(tmp_path, path, lookup=None, resume=True)
    assert code == EXIT_OUTCOMES_UNKNOWN
    assert statuses(report) == {2: "unknown", 3: "unknown", 4: "sent"}
    assert "IDEMPOTENCY_STORE is memory" in report[0]["message"]
    assert "2 row(s) sent by an earlier run: outcome unknown" in out


def test_a_result_seen_while_following_is_not_looked_up_again(tmp_path: Path) -> None:
    path = users_file(tmp_path, [f"u{i},{PASSWORD},u{i}@example.com" for i in range(2)])
    checkpoint_of(tmp_path, path, [2])
    lookup = Lookup({})
    results = [
        result("imp:sign_up:2", ResultStatus.SUCCEEDED),
        result("imp:sign_up:3", ResultStatus.SUCCEEDED),
    ]
    code, _, report = run(tmp_path, path, lookup=lookup, resume=True, wait=True, results=results)
    assert code == EXIT_OK
    assert statuses(report) == {2: "succeeded", 3: "succeeded"}
    assert lookup.asked == []


# -- 4. the ETA is the recent rate's ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_says_estimating_then_follows_the_recent_rate() -> None:
    clock = Clock()
    out = io.StringIO()
    progress = LineProgress("results", 1000, out, interval_s=0, clock=clock)
    clock.now += 0.5
    progress.advance(1)  # half a second in: too soon for a rate
    clock.now += 0.5
    progress.advance(0)
    # A slow start: 1 row in 60 s (waiting for the worker), then 10 rows a second.
    clock.now += 59
    progress.advance(0)
    for _ in range(30):
        clock.now += 0.1
        progress.advance(1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "results: 1/1000 rows (0%), rate estimating, ETA estimating"
    last = lines[-1]
    assert last.startswith("results: 31/1000 rows (3%), ")
    # The last 5 s held 30 rows in 3 s and nothing before: 6 rows a second, not 31 in 63 s.
    assert ", 6 rows/s, ETA 3 min" in last, last  # 969 rows at 6 a second: 162 s


def test_the_recent_rate_forgets_a_slow_start() -> None:
    clock = Clock()
    rate = RecentRate(clock, window_s=5)
    assert rate.eta_text(100) == "ETA estimating"
    clock.now += 300
    rate.note(1)
    for done in range(2, 102):
        clock.now += 0.05
        rate.note(done)
    assert rate.rate() == pytest.approx(20, rel=0.05)
    assert rate.eta_text(1000) == "ETA 50 s"


def test_the_bar_shows_the_recent_rate_not_tqdms_average() -> None:
    clock = Clock()
    out = io.StringIO()
    bar = BarProgress("sending", 100, out, clock=clock)
    bar.advance(1)
    assert "estimating" in bar._bar.postfix
    clock.now += 2
    bar.advance(9)  # 10 rows in 2 s
    assert "5 rows/s, ETA 18 s" in bar._bar.postfix
    bar.close()


# -- 5. no terminal, or one 0 columns wide: plain lines ----------------------------------------


def test_without_a_terminal_a_plain_line_comes_every_interval_even_without_rows() -> None:
    clock = Clock()
    out = io.StringIO()
    progress = progress_factory(out, 5, clock=clock)("results", 3)
    for _ in range(12):
        clock.now += 1
        progress.advance(0)  # waiting: nothing arrives
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("results: 0/3 rows (0%)")
    assert "\r" not in out.getvalue()


def test_a_pseudo_terminal_0_columns_wide_gets_plain_progress_lines(tmp_path: Path) -> None:
    path = users_file(tmp_path, [f"u{i},{PASSWORD},u{i}@example.com" for i in range(3)])
    main, child = pty.openpty()
    ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 0, 0, 0))
    command = [sys.executable, "-m", "worker", "import", str(path), "--type", "sign_up"]
    process = subprocess.Popen(
        [*command, "--validate-only", "--progress-interval-s", "0"],
        stdout=child,
        stderr=child,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break  # the child closed its end
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert process.wait(timeout=60) == 0
    text = seen.decode()
    lines = text.split("\r\n")  # a terminal's line ends
    assert "\r" not in "".join(lines)  # no bar redrawn in place, which 0 columns would hide
    assert any(line.startswith("usernames: 3 rows, ") for line in lines), text
    assert any(line.startswith("validating: 3 rows, ") and "done in" in line for line in lines)


# -- 6. the check's report is not overwritten by the run ---------------------------------------


def test_the_validation_report_is_named_apart_from_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = users_file(tmp_path, [f"ann,{PASSWORD},ann@example.com"])
    name = f"{derived_import_id(path, file_digest(path))}.sign_up"
    for validate_only in (True, False):
        out = io.StringIO()
        options = ImportOptions(
            file=path, job_type="sign_up", file_format=FileFormat.CSV, validate_only=validate_only
        )
        code = ImportRun(
            options,
            sender=Sender(),
            follower=None,
            progress=progress_factory(out, 60),
            output=out,
        ).execute()
        assert code == EXIT_OK
        if validate_only:
            assert (
                f"report: {name}.validation.csv (this check's; a run that sends writes "
                f"{name}.report.csv)" in out.getvalue()
            )
    check = list(csv.DictReader((tmp_path / f"{name}.validation.csv").open()))
    sent = list(csv.DictReader((tmp_path / f"{name}.report.csv").open()))
    assert [r["status"] for r in check] == ["valid"]
    assert [r["status"] for r in sent] == ["sent"]


def test_rows_bound_for_an_import_job_get_the_same_format_checks() -> None:
    check = import_job_row_problem
    assert check({"username": "ann", "email": "ann@example.com", "password": ""}) is None
    assert "email: not an email address" in str(check({"username": "ann", "email": "ann"}))
    assert "phone_number: not an E.164" in str(check({"username": "a", "phone_number": "0770"}))
    assert "username: longer than 128" in str(check({"username": "a" * 129}))
    # Columns that are not attributes are not read as attributes.
    assert check({"username": "a", "client_metadata.email": "x", "password": "short"}) is None
