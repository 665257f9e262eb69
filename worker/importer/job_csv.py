"""The file's rows as Cognito's user import job reads them: the pool's header, the documented
rules, the documented escaping, and the documented limits of one job's file.

The rules are those of AWS's guide ("Creating the user import CSV file", Amazon Cognito Developer
Guide): the header is the pool's own (GetCSVHeader), every column of it present; values are not
quoted, a comma in a value is preceded by a backslash; UTF-8 without a byte-order mark;
``cognito:username`` required, unique, without spaces or tabs; ``cognito:mfa_enabled`` required;
``email_verified`` or ``phone_number_verified`` true, with the address or number it verifies; at
most 16,000 characters a row, 500,000 rows and 100 MB a file.

The guide documents no escape for a line break, a double quote or a backslash in a value, so a row
with one is refused here rather than sent in a form Cognito might read otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from worker.importer.mapping import CLIENT_METADATA_PREFIX, VALIDATION_DATA_PREFIX

USERNAME = "cognito:username"
MFA_ENABLED = "cognito:mfa_enabled"
MAX_ROW_CHARACTERS = 16_000
MAX_ROWS_PER_JOB = 500_000
MAX_BYTES_PER_JOB = 100 * 1000 * 1000  # "100 MB"; read as decimal megabytes, the smaller reading
_VERIFIED = (("email_verified", "email"), ("phone_number_verified", "phone_number"))
_BOOLEAN_COLUMNS = frozenset({MFA_ENABLED, "email_verified", "phone_number_verified"})
_UNWRITABLE = {"\n": "a line break", "\r": "a line break", '"': "a double quote"} | {
    "\\": "a backslash"
}
# Columns of the file that an import job has no place for: set by the job itself, or the worker's.
_NOT_FOR_THE_JOB = ("password",)


class PoolHeaderError(Exception):
    """Raised when the file's columns cannot be mapped to the pool's import header."""


@dataclass
class PoolHeaderMapping:
    """From the file's columns to the pool's import header (GetCSVHeader)."""

    pool_header: Sequence[str]
    ignored_columns: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        known = set(self.pool_header)
        for required in (USERNAME, MFA_ENABLED):
            if required not in known:
                raise PoolHeaderError(f"the pool's import header has no {required} column")

    def check_columns(self, columns: Iterable[str]) -> None:
        """Refuse columns the pool has no attribute for; note those the job does not use."""
        unknown = []
        for name in columns:
            column = self._column(name)
            if column is None:
                self.ignored_columns.add(name)
            elif column not in self.pool_header:
                unknown.append(name)
        if unknown:
            raise PoolHeaderError(
                f"column(s) {', '.join(sorted(unknown))}: the user pool has no such attribute "
                "(its import header from GetCSVHeader lists the ones it has)"
            )

    def _column(self, name: str) -> str | None:
        """The header column of a file column; None for one the import job does not take."""
        if name == "username":
            return USERNAME
        if name in _NOT_FOR_THE_JOB or name.startswith(
            (VALIDATION_DATA_PREFIX, CLIENT_METADATA_PREFIX)
        ):
            return None
        return name

    def row(self, fields: dict[str, Any]) -> tuple[list[str] | None, str | None]:
        """The row as the job's cells (in the pool header's order), or the rule it breaks."""
        values: dict[str, str] = {}
        for name, raw in fields.items():
            column = self._column(name)
            if column is None:
                if raw not in (None, ""):
                    self.ignored_columns.add(name)
                continue
            if column not in self.pool_header:
                return None, f"{name[:64]}: the user pool has no such attribute"
            text, problem = _cell(column, raw)
            if problem is not None:
                return None, problem
            if text:
                values[column] = text
        values.setdefault(MFA_ENABLED, "false")
        problem = _check(values)
        if problem is not None:
            return None, problem
        cells = [_escape(values.get(column, "")) for column in self.pool_header]
        if sum(len(cell) for cell in cells) + len(cells) - 1 > MAX_ROW_CHARACTERS:
            return None, f"longer than the {MAX_ROW_CHARACTERS:,} characters a row may have"
        return cells, None


def _cell(column: str, raw: Any) -> tuple[str, str | None]:
    if raw is None:
        return "", None
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    if not isinstance(raw, str):
        return "", f"{column[:64]}: must be text, not a JSON {type(raw).__name__}"
    text = raw.strip()  # Cognito trims leading and trailing white space itself
    for character, what in _UNWRITABLE.items():
        if character in text:
            return "", (
                f"{column[:64]}: has {what}, which Cognito's import file has no documented way "
                "to write"
            )
    if column in _BOOLEAN_COLUMNS and text:
        if text.lower() not in ("true", "false"):
            return "", f"{column}: must be true or false"
        text = text.lower()
    return text, None


def _check(values: dict[str, str]) -> str | None:
    username = values.get(USERNAME, "")
    if not username:
        return f"{USERNAME}: required"
    if any(c.isspace() for c in username):
        return f"{USERNAME}: must not contain spaces or tabs"
    if not any(values.get(flag) == "true" for flag, _ in _VERIFIED):
        return (
            "email_verified or phone_number_verified must be true: an imported user resets "
            "the password through a verified address or number"
        )
    for flag, attribute in _VERIFIED:
        if values.get(flag) == "true" and not values.get(attribute):
            return f"{flag} is true but {attribute} is empty"
    return None


def _escape(text: str) -> str:
    return text.replace(",", "\\,")


@dataclass(frozen=True, slots=True)
class JobFile:
    """One job's CSV on disk and the file lines it holds, in order."""

    part: int
    path: Path
    first_line: int
    last_line: int
    rows: int
    size: int


class JobFileWriter:
    """Writes rows into job files, a new one whenever the next row would pass a limit."""

    def __init__(
        self,
        directory: Path,
        header: Sequence[str],
        *,
        max_rows: int = MAX_ROWS_PER_JOB,
        max_bytes: int = MAX_BYTES_PER_JOB,
    ) -> None:
        self._directory = directory
        self._header = (",".join(header) + "\n").encode("utf-8")
        self._max_rows = max(1, min(max_rows, MAX_ROWS_PER_JOB))
        self._max_bytes = min(max_bytes, MAX_BYTES_PER_JOB)
        self._files: list[JobFile] = []
        self._open: BinaryIO | None = None
        self._path: Path | None = None
        self._first = self._last = self._rows = self._size = 0

    def add(self, line: int, cells: Sequence[str]) -> None:
        """Write one row (the file line it came from, its cells)."""
        encoded = (",".join(cells) + "\n").encode("utf-8")
        if self._open is not None and (
            self._rows + 1 > self._max_rows or self._size + len(encoded) > self._max_bytes
        ):
            self._close()
        if self._open is None:
            self._path = self._directory / f"part-{len(self._files) + 1}.csv"
            self._open = self._path.open("wb")
            self._open.write(self._header)
            self._first, self._rows, self._size = line, 0, len(self._header)
        self._open.write(encoded)
        self._last = line
        self._rows += 1
        self._size += len(encoded)

    def _close(self) -> None:
        if self._open is None or self._path is None:
            return
        self._open.close()
        part = len(self._files) + 1
        self._files.append(
            JobFile(part, self._path, self._first, self._last, self._rows, self._size)
        )
        self._open = None

    def finish(self) -> list[JobFile]:
        """Close the last file; return every file written."""
        self._close()
        return list(self._files)
