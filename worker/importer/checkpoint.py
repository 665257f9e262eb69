"""The local checkpoint of an import: which lines of the file were sent, for ``--resume``.

Sent lines are kept as a few ranges (rows are sent in file order, so the ranges stay few even for a
million rows; a row SQS refused leaves a gap). The file is rewritten whole after every batch that
SQS acknowledged, by writing a temporary file and renaming it over the old one: a stop at any
moment, even a kill, leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.importer.private_files import open_private

_FORMAT = 1


class CheckpointMismatch(Exception):
    """Raised by :meth:`Checkpoint.load` when the checkpoint belongs to another import or to
    another version of the file; the message says which."""


@dataclass
class Checkpoint:
    """Lines sent so far by one import (one file content, one import id, one job type)."""

    path: Path
    import_id: str
    job_type: str
    file_sha256: str
    ranges: list[list[int]] = field(default_factory=list)  # sorted, disjoint [first, last]

    @classmethod
    def load(cls, path: Path, import_id: str, job_type: str, file_sha256: str) -> Checkpoint:
        """The checkpoint at ``path``, checked against this import; empty when there is none."""
        fresh = cls(path, import_id, job_type, file_sha256)
        if not path.exists():
            return fresh
        try:
            document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            ranges = [[int(first), int(last)] for first, last in document["sent_lines"]]
            recorded = (document["import_id"], document["job_type"], document["file_sha256"])
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointMismatch(f"{path} is not a checkpoint of this command") from error
        if recorded[:2] != (import_id, job_type):
            raise CheckpointMismatch(
                f"{path} belongs to import {recorded[0]} ({recorded[1]}), "
                f"not {import_id} ({job_type})"
            )
        if recorded[2] != file_sha256:
            raise CheckpointMismatch(
                f"{path} was written for another version of the file: its lines no longer "
                "mean the same rows. Run the import again without --resume (job ids are "
                "deterministic per line, so rows already done are answered, not redone)"
            )
        fresh.ranges = sorted(ranges)
        return fresh

    def was_sent(self, line: int) -> bool:
        """Whether the row on ``line`` was sent by an earlier run."""
        index = bisect.bisect_right(self.ranges, [line, float("inf")]) - 1
        return index >= 0 and self.ranges[index][0] <= line <= self.ranges[index][1]

    @property
    def sent_count(self) -> int:
        """How many lines were sent."""
        return sum(last - first + 1 for first, last in self.ranges)

    def mark_sent(self, lines: list[int]) -> None:
        """Record lines as sent (any order)."""
        for line in sorted(lines):
            self._add(line)

    def _add(self, line: int) -> None:
        ranges = self.ranges
        index = bisect.bisect_right(ranges, [line, float("inf")]) - 1
        if index >= 0 and ranges[index][0] <= line <= ranges[index][1]:
            return
        joins_left = index >= 0 and ranges[index][1] == line - 1
        joins_right = index + 1 < len(ranges) and ranges[index + 1][0] == line + 1
        if joins_left and joins_right:
            ranges[index][1] = ranges[index + 1][1]
            del ranges[index + 1]
        elif joins_left:
            ranges[index][1] = line
        elif joins_right:
            ranges[index + 1][0] = line
        else:
            ranges.insert(index + 1, [line, line])

    def save(self) -> None:
        """Write the checkpoint atomically (temporary file, then rename)."""
        document = {
            "format": _FORMAT,
            "import_id": self.import_id,
            "job_type": self.job_type,
            "file_sha256": self.file_sha256,
            "sent_lines": self.ranges,
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open_private(temporary) as file:
            file.write(json.dumps(document))
        os.replace(temporary, self.path)
