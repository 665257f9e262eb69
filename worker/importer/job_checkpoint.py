"""The import jobs an import started, kept so that a run of the same file never starts one twice.

Unlike the worker's jobs, which the worker's idempotency store answers when they come again, a
Cognito import job is not idempotent: a second job of the same rows imports them again (each
then "skipped" as existing, at best). So the job ids are written down before each upload and
again once the job is started, atomically, and every run of the same import reads them, with or
without ``--resume``. Each part records the file lines it holds, which the file's digest pins.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker.importer.checkpoint import CheckpointMismatch
from worker.importer.private_files import open_private

_FORMAT = 1


@dataclass
class JobPart:
    """One job of the import: its rows (by file line) and the Cognito job that imports them."""

    part: int
    first_line: int
    last_line: int
    rows: int
    job_name: str
    job_id: str = ""
    started: bool = False


@dataclass
class JobCheckpoint:
    """The import jobs of one import (one file content, one import id)."""

    path: Path
    import_id: str
    file_sha256: str
    parts: dict[int, JobPart] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, import_id: str, file_sha256: str) -> JobCheckpoint:
        """The checkpoint at ``path``, checked against this import; empty when there is none."""
        fresh = cls(path, import_id, file_sha256)
        if not path.exists():
            return fresh
        try:
            document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            recorded = (document["import_id"], document["file_sha256"])
            parts = [JobPart(**part) for part in document["parts"]]
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointMismatch(f"{path} is not a checkpoint of import jobs") from error
        if recorded != (import_id, file_sha256):
            raise CheckpointMismatch(
                f"{path} belongs to import {recorded[0]} of another file content: its jobs "
                "are not this import's. Give this import its own --import-id or checkpoint"
            )
        fresh.parts = {part.part: part for part in parts}
        return fresh

    def save(self) -> None:
        """Write the checkpoint atomically (temporary file, then rename)."""
        document = {
            "format": _FORMAT,
            "import_id": self.import_id,
            "file_sha256": self.file_sha256,
            "parts": [asdict(self.parts[number]) for number in sorted(self.parts)],
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open_private(temporary) as file:
            file.write(json.dumps(document, indent=1))
        os.replace(temporary, self.path)
