"""The redrive's journal: which DLQ messages were sent back, so a re-run sends none twice.

A redrive sends a copy to the jobs queue, then deletes the message from the DLQ. Stopped between
the two (a kill, a lost connection, SQS refusing the delete), the message is still on the DLQ
and its copy already on the jobs queue. Nothing on the DLQ can record that (SQS messages cannot
be changed), and the jobs queue cannot be searched for the copy without taking messages from the
workers reading it. So the redrive writes down, before each send, the DLQ message ids it is about
to send (``sending``), and once SQS has answered, the ones it accepted (``sent``), each line
flushed to disk before the next step. A re-run deletes a ``sent`` message without sending it
again. One that is ``sending`` but not ``sent`` was in the request a stop cut off: SQS may or may
not have taken it, so it is *in doubt*, left on the DLQ and named, for the operator to decide
(``--resend-in-doubt``). The file holds message ids only, and is readable by its owner alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

_FORMAT = 1


class JournalMismatch(Exception):
    """Raised when the journal file belongs to another queue, or is not a journal at all."""


def default_journal_path(queue_url: str) -> Path:
    """``dlq-redrive-<queue name>.journal`` in the working directory."""
    name = queue_url.rstrip("/").rsplit("/", 1)[-1] or "dlq"
    return Path(f"dlq-redrive-{name}.journal")


@dataclass
class RedriveJournal:
    """The journal of every redrive from one DLQ, kept in one file, appended to."""

    path: Path
    queue_url: str
    sending: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    _file: TextIO | None = None

    @classmethod
    def open(cls, path: Path, queue_url: str) -> RedriveJournal:
        """The journal at ``path`` (created when missing), checked to be this queue's."""
        journal = cls(path, queue_url)
        if path.exists():
            journal._read()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(descriptor, 0o600)
        journal._file = open(descriptor, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        if not path.stat().st_size:
            journal._write({"format": _FORMAT, "queue_url": queue_url})
        return journal

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {"queue_url": self.queue_url}
        except ValueError:
            header = None
        if not isinstance(header, dict) or "queue_url" not in header:
            raise JournalMismatch(f"{self.path} is not a redrive journal")
        if header["queue_url"] != self.queue_url:
            raise JournalMismatch(
                f"{self.path} is the journal of {header['queue_url']}, not of {self.queue_url}"
            )
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the last line of a run killed while writing it
            if isinstance(entry, dict):
                self.sending.update(entry.get("sending", []))
                self.sending.difference_update(entry.get("refused", []))
                self.sent.update(entry.get("sent", []))

    def in_doubt(self, message_id: str) -> bool:
        """Whether a stopped run was sending this message when it stopped."""
        return message_id in self.sending and message_id not in self.sent

    def about_to_send(self, message_ids: Iterable[str]) -> None:
        """Record the messages of a send request before it leaves."""
        ids = sorted(message_ids)
        self.sending.update(ids)
        self._write({"sending": ids})

    def did_send(self, message_ids: Iterable[str]) -> None:
        """Record the messages SQS accepted, before they are deleted from the DLQ."""
        ids = sorted(message_ids)
        self.sent.update(ids)
        self._write({"sent": ids})

    def did_not_send(self, message_ids: Iterable[str]) -> None:
        """Record the messages SQS refused: not in doubt, still to be sent by a later run."""
        ids = sorted(message_ids)
        self.sending.difference_update(ids)
        self._write({"refused": ids})

    def _write(self, entry: dict[str, object]) -> None:
        assert self._file is not None  # written only once opened
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
