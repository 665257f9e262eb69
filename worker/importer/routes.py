"""Which path a row takes, chosen by the data: a row of a migration (``--type import_user``) with
a plaintext password goes through the worker, which sets it; a row without one goes through
Cognito's user import job, which cannot set passwords but adds no MAU and spends no worker budget.

``--path worker`` or ``--path import-job`` sends every row one way. The other job types have
one path only: the worker's.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from worker.importer.job_csv import (
    MAX_ROWS_PER_JOB,
    JobFileWriter,
    PoolHeaderMapping,
)
from worker.importer.job_phase import PreparedPart


class SendPath(StrEnum):
    """``--path``: how rows are sent."""

    AUTO = "auto"
    WORKER = "worker"
    IMPORT_JOB = "import-job"


class Route(StrEnum):
    """The path one row takes."""

    WORKER = "worker"
    IMPORT_JOB = "import-job"


def route_of(job_type: str, path: SendPath, fields: dict[str, Any]) -> Route:
    """The row's path."""
    if job_type != "import_user" or path is SendPath.WORKER:
        return Route.WORKER
    if path is SendPath.IMPORT_JOB:
        return Route.IMPORT_JOB
    password = fields.get("password")
    return Route.WORKER if password not in (None, "") else Route.IMPORT_JOB


class JobRows:
    """The rows bound for import jobs: checked against the pool's header and written into job
    files as validation reads them, so the plan knows how many jobs they make."""

    def __init__(
        self,
        header_source: Callable[[], list[str]],
        directory: Path,
        *,
        file_columns: list[str] | None,
        max_rows: int = MAX_ROWS_PER_JOB,
    ) -> None:
        self._header_source = header_source
        self._directory = directory
        self._file_columns = file_columns
        self._max_rows = max_rows
        self._mapping: PoolHeaderMapping | None = None
        self._writer: JobFileWriter | None = None
        self._lines: array[int] = array("q")

    @property
    def ignored_columns(self) -> set[str]:
        """File columns the import job does not take (``password``, ``client_metadata.*``)."""
        return self._mapping.ignored_columns if self._mapping else set()

    @property
    def rows(self) -> int:
        """Rows written so far."""
        return len(self._lines)

    def add(self, line: int, fields: dict[str, Any]) -> str | None:
        """Check the row and write it into a job file; return the rule it breaks, if any."""
        if self._mapping is None:
            self._start()
        assert self._mapping is not None
        assert self._writer is not None
        cells, problem = self._mapping.row(fields)
        if cells is None:
            return problem
        self._writer.add(line, cells)
        self._lines.append(line)
        return None

    def _start(self) -> None:
        # The pool's header is read on the first such row only: an import of rows that all
        # carry a password needs no import-job permission at all.
        header = self._header_source()
        mapping = PoolHeaderMapping(header)
        if self._file_columns is not None:
            mapping.check_columns(self._file_columns)
        self._mapping = mapping
        self._writer = JobFileWriter(self._directory, header, max_rows=self._max_rows)

    def finish(self) -> list[PreparedPart]:
        """The job files, each with its rows' file lines."""
        if self._writer is None:
            return []
        parts = []
        offset = 0
        for file in self._writer.finish():
            parts.append(PreparedPart(file, self._lines[offset : offset + file.rows]))
            offset += file.rows
        return parts
