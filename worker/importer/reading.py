"""Reading an import file row by row: CSV with a header row, or JSON Lines; UTF-8, BOM tolerated.

The file is streamed: one physical line is held at a time (a CSV record that spans lines inside
quotes, one record), so memory does not grow with the file. Every row carries the number of the
line it starts on, the number an operator sees in an editor, and a row that cannot be read carries
the reason instead of its fields. Reasons never quote the values in the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

_BOM = b"\xef\xbb\xbf"
_DIGEST_CHUNK = 1 << 20


class FileFormat(StrEnum):
    """The two formats an import file may have."""

    CSV = "csv"
    JSONL = "jsonl"


class UnreadableFile(Exception):
    """Raised when the file as a whole cannot be imported (no header, unknown format, empty)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One record of the file: its fields, or the reason it could not be read."""

    line: int
    fields: dict[str, Any]
    problem: str | None = None


def detect_format(path: Path, declared: FileFormat | None = None) -> FileFormat:
    """The declared format, or the one the file's extension names."""
    if declared is not None:
        return declared
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return FileFormat.CSV
    if suffix in (".jsonl", ".ndjson"):
        return FileFormat.JSONL
    raise UnreadableFile(
        f"cannot tell the format of {path.name} from its extension: name it .csv or .jsonl, "
        "or pass --format csv|jsonl"
    )


def file_digest(path: Path) -> str:
    """The SHA-256 of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_DIGEST_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_header(path: Path, file_format: FileFormat) -> list[str] | None:
    """The CSV header's column names (None for JSON Lines, whose rows name their own fields);
    raise :class:`UnreadableFile` when there is no usable header."""
    if file_format is FileFormat.JSONL:
        return None
    lines = _DecodedLines(path)
    return _header(path, csv.reader(iter(lines), strict=True), lines)


def read_rows(path: Path, file_format: FileFormat) -> Iterator[Row]:
    """Yield the file's data rows in order; raise :class:`UnreadableFile` before the first one
    when the file has no usable header (CSV)."""
    if file_format is FileFormat.CSV:
        return _csv_rows(path)
    return _jsonl_rows(path)


class _DecodedLines:
    """The file's physical lines decoded as UTF-8, counted; a line that is not UTF-8 is decoded
    with replacement characters and its number remembered, so its record can be refused."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.line = 0
        self.undecodable: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        with self._path.open("rb") as file:
            for raw in file:
                self.line += 1
                if self.line == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    self.undecodable.add(self.line)
                    yield raw.decode("utf-8", errors="replace")


def _csv_rows(path: Path) -> Iterator[Row]:
    lines = _DecodedLines(path)
    records = csv.reader(iter(lines), strict=True)
    columns = _header(path, records, lines)
    return _csv_records(records, lines, columns)


def _header(path: Path, records: Iterator[list[str]], lines: _DecodedLines) -> list[str]:
    try:
        header = next(records)
    except StopIteration:
        raise UnreadableFile(f"{path.name} is empty: a CSV import needs a header row") from None
    except csv.Error as error:
        raise UnreadableFile(f"line 1: the header row is not valid CSV ({error})") from None
    columns = [name.strip() for name in header]
    _check_header(columns, lines.undecodable)
    return columns


def _check_header(columns: list[str], undecodable: set[int]) -> None:
    if 1 in undecodable:
        raise UnreadableFile("line 1: the header row is not UTF-8")
    if not any(columns):
        raise UnreadableFile("line 1: the header row names no columns")
    missing = [str(i + 1) for i, name in enumerate(columns) if not name]
    if missing:
        raise UnreadableFile(f"line 1: column(s) {', '.join(missing)} have no name")
    repeated = sorted(name for name, count in Counter(columns).items() if count > 1)
    if repeated:
        raise UnreadableFile(f"line 1: column(s) named twice: {', '.join(repeated)}")


def _csv_records(
    records: Iterator[list[str]], lines: _DecodedLines, columns: list[str]
) -> Iterator[Row]:
    while True:
        start = lines.line + 1
        try:
            record = next(records)
        except StopIteration:
            return
        except csv.Error as error:
            # The csv module's messages name the rule ("unexpected end of data"), not the data.
            yield Row(start, {}, f"not valid CSV ({error})")
            continue
        end = lines.line
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # a blank line
        if any(start <= line <= end for line in lines.undecodable):
            yield Row(start, {}, "not UTF-8 text")
            lines.undecodable.difference_update(range(start, end + 1))
            continue
        if len(record) != len(columns):
            problem = f"has {len(record)} fields; the header has {len(columns)}"
            yield Row(start, {}, problem)
            continue
        yield Row(start, dict(zip(columns, record, strict=True)))


def _jsonl_rows(path: Path) -> Iterator[Row]:
    lines = _DecodedLines(path)
    for text in lines:
        number = lines.line
        if not text.strip():
            continue
        if number in lines.undecodable:
            lines.undecodable.discard(number)
            yield Row(number, {}, "not UTF-8 text")
            continue
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            yield Row(number, {}, "not valid JSON")
            continue
        if not isinstance(document, dict):
            yield Row(number, {}, f"a JSON {type(document).__name__}, not an object")
            continue
        yield Row(number, document)
