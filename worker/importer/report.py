"""What became of each row: a ledger of outcomes while the import runs, then the report CSV in file
order, and the summary tables by status and by error code.

The ledger is a SQLite file in a temporary directory, so a million outcomes cost disk, not memory;
the report is written by walking the file and the ledger side by side, both in line order.
"""

from __future__ import annotations

import csv
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from worker.contract.jobs import JobResult, ResultStatus
from worker.importer.private_files import open_private


class RowStatus(StrEnum):
    """A row's status in the report."""

    SUCCEEDED = "succeeded"
    ALREADY_EXISTS = "already_exists"  # the user was there: a re-run, or created elsewhere
    FAILED = "failed"
    REJECTED = "rejected"
    INVALID = "invalid"  # refused by validation; not sent
    NOT_SENT = "not_sent"  # SQS refused it
    SENT = "sent"  # sent; its result was not followed (no --wait)
    SENT_EARLIER = "sent_earlier"  # sent by an earlier run of this import (--resume)
    NO_RESULT = "no_result"  # sent; no result arrived before --wait-timeout-s
    VALID = "valid"  # checked only (--validate-only)
    DUPLICATE = "duplicate"  # repeats an earlier row of the file exactly; not sent again
    UNKNOWN = "unknown"  # sent by an earlier run; its outcome could not be found out


# Statuses that end an import with exit code 0. ``sent_earlier`` is not among them: a resume
# looks every such row up, and a row left so was not (the run was stopped first).
GOOD_STATUSES = frozenset(
    {RowStatus.SUCCEEDED, RowStatus.ALREADY_EXISTS, RowStatus.SENT, RowStatus.VALID}
)
INVALID_JOB_CODE = "InvalidJob"  # the worker's own code for a job it rejects
_CREATING_TYPES = frozenset({"sign_up", "import_user", "invite_user"})
REPORT_COLUMNS = ("line", "username", "job_id", "status", "error_code", "message")
MAX_MESSAGE_CHARS = 300
HTML_PAGE = "an HTML error page, not an AWS answer"


def one_line(message: str) -> str:
    """A message as one short line of the report: whitespace runs (line breaks among them) made
    one space, at most :data:`MAX_MESSAGE_CHARS` characters, and an HTML page (what a proxy or
    an emulator sends on an HTTP 5xx) named as such rather than copied."""
    lowered = message[:2000].lower()
    if "<html" in lowered or "<!doctype" in lowered:
        return HTML_PAGE
    text = " ".join(message.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


@dataclass(frozen=True, slots=True)
class Outcome:
    """One row's outcome."""

    status: RowStatus
    error_code: str = ""
    message: str = ""


def outcome_of(result: JobResult) -> Outcome:
    """A published result as a row of the report.

    A creating job answered ``UsernameExistsException`` means the user is there: after the
    idempotency window a re-run meets the users its first run made. That is not a failure.
    """
    error = result.error
    if (
        result.status is ResultStatus.FAILED
        and error is not None
        and error.code == "UsernameExistsException"
        and result.type is not None
        and result.type.value in _CREATING_TYPES
    ):
        return Outcome(RowStatus.ALREADY_EXISTS, error.code, "the user already exists")
    status = RowStatus(result.status.value)
    if error is not None:
        return Outcome(status, error.code, error.message)
    return Outcome(status, "", result.detail or "")


class OutcomeLedger:
    """Outcomes by line, on disk."""

    def __init__(self, directory: Path) -> None:
        self._connection = sqlite3.connect(directory / "outcomes.sqlite3")
        self._connection.execute("PRAGMA journal_mode = OFF")
        self._connection.execute("PRAGMA synchronous = OFF")
        self._connection.execute(
            "CREATE TABLE outcome (line INTEGER PRIMARY KEY, status TEXT, code TEXT, message TEXT)"
        )

    def record(self, outcomes: Iterable[tuple[int, Outcome]]) -> None:
        """Store outcomes; a later outcome of the same line replaces the earlier one."""
        with self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO outcome VALUES (?, ?, ?, ?)",
                ((line, o.status.value, o.error_code, o.message) for line, o in outcomes),
            )

    def has(self, line: int) -> bool:
        """Whether the line has an outcome."""
        found = self._connection.execute("SELECT 1 FROM outcome WHERE line = ?", (line,))
        return found.fetchone() is not None

    def in_line_order(self) -> Iterator[tuple[int, Outcome]]:
        """Every outcome, by line."""
        for line, status, code, message in self._connection.execute(
            "SELECT line, status, code, message FROM outcome ORDER BY line"
        ):
            yield line, Outcome(RowStatus(status), code, message)

    def close(self) -> None:
        """Close the database."""
        self._connection.close()


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One row of the report CSV."""

    line: int
    username: str
    job_id: str
    outcome: Outcome


@dataclass
class Summary:
    """Counts over the report: by status and by error code."""

    by_status: Counter[str]
    by_error_code: Counter[str]

    @property
    def all_good(self) -> bool:
        """Whether every row ended well (exit code 0)."""
        return all(RowStatus(status) in GOOD_STATUSES for status in self.by_status)

    @property
    def only_unknown_left(self) -> bool:
        """Whether the rows that did not end well are all ``unknown`` (and there are some)."""
        bad = {RowStatus(status) for status in self.by_status} - GOOD_STATUSES
        return bad == {RowStatus.UNKNOWN}


#: What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str | None) -> str | None:
    """``cell`` as a spreadsheet shows it and never runs it: a leading apostrophe before a
    formula's first character (``=HYPERLINK(...)`` in a username is text, not a link)."""
    if cell and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def write_report(rows: Iterable[ReportRow], path: Path) -> Summary:
    """Write the report CSV (UTF-8, header row, mode 0600, formula cells neutralised); return
    its counts."""
    summary = Summary(Counter(), Counter())
    with open_private(path) as file:
        writer = csv.writer(file)
        writer.writerow(REPORT_COLUMNS)
        for row in rows:
            outcome = row.outcome
            status = outcome.status.value
            writer.writerow(
                [
                    row.line,
                    spreadsheet_safe(row.username),
                    spreadsheet_safe(row.job_id),
                    status,
                    one_line(outcome.error_code),
                    spreadsheet_safe(one_line(outcome.message)),
                ]
            )
            summary.by_status[outcome.status.value] += 1
            if outcome.error_code:
                summary.by_error_code[outcome.error_code] += 1
    return summary


def print_summary(summary: Summary, output: TextIO) -> None:
    """The two tables: rows by status, rows by error code."""
    print(_table("status", summary.by_status), file=output)
    if summary.by_error_code:
        print(file=output)
        print(_table("error code", summary.by_error_code), file=output)


def _table(title: str, counts: Counter[str]) -> str:
    width = max([len(title), *(len(name) for name in counts)])
    lines = [f"{title:<{width}}  {'rows':>9}", f"{'-' * width}  {'-' * 9}"]
    lines += [f"{name:<{width}}  {count:>9}" for name, count in counts.most_common()]
    lines.append(f"{'total':<{width}}  {sum(counts.values()):>9}")
    return "\n".join(lines)
