"""Usernames the file names more than once, found before validation so that no row is sent twice.

Every row with a username is indexed (a hash of the username, a hash of the whole row) in a SQLite
file in the import's scratch directory, so a million rows cost disk, not memory. Then, for each
username on more than one line:

- every row the same (an exact repeat): the first is imported, each later one is ``duplicate``,
  not sent, and says which line it repeats;
- rows that differ (two emails for one user: which is right?): every row of that username is
  ``invalid``, and each names the other lines.

Usernames are compared without case by default (``"Ann"`` and ``"ann"`` are one user in a pool
whose UsernameConfiguration has ``CaseSensitive`` false, the console's default and AWS's advice);
``case_sensitive=True`` compares them exactly, for a pool made case-sensitive. Two spellings of
one username in another case are then rows that differ.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from worker.importer.reading import Row
from worker.importer.report import INVALID_JOB_CODE, Outcome, RowStatus

_BATCH = 10_000
_LINES_NAMED = 5  # in one message, the other lines of a username


def _key(username: str, case_sensitive: bool) -> int:
    text = username if case_sensitive else username.lower()
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _row_digest(row: Row) -> bytes:
    text = json.dumps(row.fields, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _lines_text(lines: list[int]) -> str:
    shown = ", ".join(str(line) for line in lines[:_LINES_NAMED])
    more = len(lines) - _LINES_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


class DuplicateIndex:
    """The file's usernames, and the verdict on each line that shares one."""

    def __init__(self, directory: Path, *, case_sensitive: bool = False) -> None:
        self._case_sensitive = case_sensitive
        self._connection = sqlite3.connect(directory / "usernames.sqlite3")
        self._connection.execute("PRAGMA journal_mode = OFF")
        self._connection.execute("PRAGMA synchronous = OFF")
        self._connection.execute(
            "CREATE TABLE seen (line INTEGER PRIMARY KEY, key INTEGER, digest BLOB)"
        )
        self._connection.execute(
            "CREATE TABLE verdict (line INTEGER PRIMARY KEY, status TEXT, message TEXT)"
        )
        self.duplicates = 0  # exact repeats
        self.conflicts = 0  # rows of a username with differing rows

    def index(self, rows: Iterable[Row]) -> None:
        """Index every row with a username, then judge the usernames seen more than once."""
        batch: list[tuple[int, int, bytes]] = []
        for row in rows:
            username = row.fields.get("username")
            if row.problem is not None or not isinstance(username, str) or not username:
                continue
            batch.append((row.line, _key(username, self._case_sensitive), _row_digest(row)))
            if len(batch) >= _BATCH:
                self._insert(batch)
                batch = []
        self._insert(batch)
        self._judge()

    def _insert(self, batch: list[tuple[int, int, bytes]]) -> None:
        with self._connection:
            self._connection.executemany("INSERT INTO seen VALUES (?, ?, ?)", batch)

    def _judge(self) -> None:
        connection = self._connection
        connection.execute("CREATE INDEX seen_by_key ON seen (key, line)")
        shared = connection.execute(
            "SELECT key, line, digest FROM seen WHERE key IN "
            "(SELECT key FROM seen GROUP BY key HAVING COUNT(*) > 1) ORDER BY key, line"
        )
        verdicts: list[tuple[int, str, str]] = []
        group: list[tuple[int, bytes]] = []
        current: int | None = None
        for key, line, digest in shared:
            if key != current and group:
                verdicts += self._verdicts(group)
                group = []
            current = key
            group.append((line, digest))
        if group:
            verdicts += self._verdicts(group)
        with connection:
            connection.executemany("INSERT INTO verdict VALUES (?, ?, ?)", verdicts)

    def _verdicts(self, group: list[tuple[int, bytes]]) -> list[tuple[int, str, str]]:
        lines = [line for line, _ in group]
        first = lines[0]
        if len({digest for _, digest in group}) == 1:
            self.duplicates += len(lines) - 1
            return [
                (line, RowStatus.DUPLICATE.value, f"repeats line {first} exactly: not sent again")
                for line in lines[1:]
            ]
        self.conflicts += len(lines)
        compared = "" if self._case_sensitive else " (compared without case)"
        return [
            (
                line,
                RowStatus.INVALID.value,
                f"username{compared} also on line(s) "
                f"{_lines_text([other for other in lines if other != line])} with different "
                "data: every row of it is invalid until one remains",
            )
            for line in lines
        ]

    def verdicts(self) -> Iterator[tuple[int, Outcome]]:
        """The lines judged, in line order, each with its outcome."""
        for line, status, message in self._connection.execute(
            "SELECT line, status, message FROM verdict ORDER BY line"
        ):
            code = INVALID_JOB_CODE if status == RowStatus.INVALID.value else ""
            yield line, Outcome(RowStatus(status), code, message)

    def close(self) -> None:
        """Close the database."""
        self._connection.close()


class InLineOrder:
    """Outcomes by line, read alongside the file (both in line order): no lookup, no memory."""

    def __init__(self, outcomes: Iterator[tuple[int, Outcome]]) -> None:
        self._outcomes = outcomes
        self._next = next(outcomes, None)

    def at(self, line: int) -> Outcome | None:
        """The outcome of ``line``, if any; lines must be asked in increasing order."""
        while self._next is not None and self._next[0] < line:
            self._next = next(self._outcomes, None)
        if self._next is not None and self._next[0] == line:
            return self._next[1]
        return None
