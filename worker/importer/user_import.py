"""The import's seam to Cognito's user import jobs, and what the job's log says of each row.

The command depends on :class:`UserImportJobs` alone; :mod:`worker.importer.aws_user_import`
implements it with boto3. The log format is the one AWS's guide shows ("Viewing the user pool
import results in the CloudWatch console"): one line per user, naming its line in the job's file
and never its data, such as ``[FAILED] Line Number 5956 - The User Record does not set any of the
auto verified attributes to true.``
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: Statuses after which a job changes no more.
FINISHED = frozenset({"Succeeded", "Failed", "Stopped", "Expired"})
#: A job that was started: starting it again is refused, and creating another would import twice.
STARTED = frozenset({"Pending", "InProgress", "Stopping"}) | FINISHED - {"Expired"}
#: The job file's line of its first user. AWS's guide does not say whether "Line Number" counts
#: the header row; this reads it as the file's own line numbers, the header being line 1.
FIRST_USER_LINE = 2
_LOG_LINE = re.compile(r"^\[(SUCCEEDED|SKIPPED|FAILED)\] Line Number (\d+) - (.*)$")


@dataclass(frozen=True, slots=True)
class JobState:
    """What DescribeUserImportJob says of a job."""

    job_id: str
    job_name: str
    status: str
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    completion_message: str = ""
    presigned_url: str = ""
    created_at: float = 0.0  # seconds since the epoch

    @property
    def done_rows(self) -> int:
        """Rows the job has dealt with so far."""
        return self.imported + self.skipped + self.failed


@dataclass(frozen=True, slots=True)
class RowLog:
    """One line of a job's log: a row of the job's file and what became of it."""

    job_line: int
    outcome: str  # SUCCEEDED, SKIPPED or FAILED
    message: str


def parse_log_line(text: str) -> RowLog | None:
    """A log line about a row, or None for any other line."""
    found = _LOG_LINE.match(text.strip())
    if found is None:
        return None
    return RowLog(int(found.group(2)), found.group(1), found.group(3).strip())


class UserImportJobs(Protocol):
    """Cognito's user import jobs of one user pool."""

    user_pool_id: str

    def csv_header(self) -> list[str]:
        """The pool's import header (GetCSVHeader)."""
        ...

    def create(self, job_name: str) -> JobState:
        """Create a job (CreateUserImportJob); its state carries the presigned upload URL."""
        ...

    def upload(self, job: JobState, path: Path) -> None:
        """PUT the job's file to its presigned URL, with the headers AWS documents."""
        ...

    def start(self, job_id: str) -> JobState:
        """StartUserImportJob."""
        ...

    def describe(self, job_id: str) -> JobState:
        """DescribeUserImportJob."""
        ...

    def find(self, job_name: str) -> JobState | None:
        """The newest job of this name (ListUserImportJobs), if any."""
        ...

    def row_logs(self, job: JobState) -> Iterator[RowLog]:
        """The lines of the job's log in CloudWatch Logs, about its rows."""
        ...
