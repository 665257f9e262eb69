"""``dlq redrive``: send a chosen part of the DLQ back to the jobs queue, checked first.

Each chosen message is validated again by the worker's own decoder: one still invalid (a
rejected body keeps no plaintext secret, so a job rejected with one cannot be sent back as it
is) stays on the DLQ, with the reason. The others are sent in batches of up to ten, at most
``rate`` a second, each with the attribute ``redriven_from`` (its original message id), and
deleted from the DLQ only once SQS has accepted its copy. The journal
(:mod:`~worker.operations.redrive_journal`) makes a re-run after a stop send nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.contract.jobs import MalformedJob, decode_job
from worker.operations.dead_letters import DeadLetter
from worker.operations.dlq_scan import MAX_BATCH, DlqError, DlqScanner
from worker.operations.dlq_selection import Selection
from worker.operations.redrive_journal import RedriveJournal

#: The attributes the worker stamps on a DLQ copy: not carried back to the jobs queue.
_STAMPED = frozenset({"rejection_reason", "original_message_id", "redriven_from"})
_SECRET_FIELDS = ("password", "confirmation_code")


@dataclass
class RedriveReport:
    """What one run did with the messages it read."""

    read: int = 0
    chosen: int = 0
    sent: list[DeadLetter] = field(default_factory=list)
    would_send: list[DeadLetter] = field(default_factory=list)  # --dry-run
    already_sent: list[DeadLetter] = field(default_factory=list)  # by an earlier, stopped run
    still_invalid: list[tuple[DeadLetter, str]] = field(default_factory=list)
    in_doubt: list[DeadLetter] = field(default_factory=list)
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)  # SQS refused the copy


def still_invalid(letter: DeadLetter) -> str | None:
    """Why the message would be rejected again, or None when it is a job the worker reads."""
    try:
        decode_job(letter.body)
    except MalformedJob as malformed:
        missing = [name for name in _SECRET_FIELDS if f"{name}: Field required" in malformed.reason]
        if missing:
            return (
                f"{malformed.reason} (the DLQ copy keeps no plaintext {', '.join(missing)}: "
                "the producer must send this job again)"
            )
        return malformed.reason
    return None


class Pacer:
    """At most ``rate`` messages a second, over the whole run."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._next = clock()

    def wait_for(self, count: int) -> None:
        """Sleep until ``count`` more messages may leave."""
        delay = self._next - self._clock()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next, self._clock()) + count / self._rate


@dataclass
class Redrive:
    """One redrive run from a DLQ to a jobs queue."""

    scanner: DlqScanner
    target_url: str
    selection: Selection
    journal: RedriveJournal
    rate: float = 10.0
    dry_run: bool = False
    resend_in_doubt: bool = False
    progress: Callable[[RedriveReport], None] = lambda _report: None
    report: RedriveReport = field(default_factory=RedriveReport)
    _batch: list[DeadLetter] = field(default_factory=list)

    def run(self) -> RedriveReport:
        """Read the DLQ once, send the chosen valid messages back; hand back the rest."""
        pacer = Pacer(self.rate)
        try:
            for letter in self.scanner.messages():
                self.report.read += 1
                self._consider(letter)
                if len(self._batch) == MAX_BATCH:
                    self._send(pacer)
                self.progress(self.report)
            if self._batch:
                self._send(pacer)
        finally:
            self.scanner.release()
        return self.report

    def _consider(self, letter: DeadLetter) -> None:
        if letter.message_id in self.journal.sent:
            # Sent by a run that stopped before its delete: finish that run's work only.
            self.report.already_sent.append(letter)
            if not self.dry_run:
                self.scanner.delete([letter])
            return
        if not self.selection.matches(letter):
            return
        self.report.chosen += 1
        why = still_invalid(letter)
        if why is not None:
            self.report.still_invalid.append((letter, why))
        elif self.journal.in_doubt(letter.message_id) and not self.resend_in_doubt:
            self.report.in_doubt.append(letter)
        elif self.dry_run:
            self.report.would_send.append(letter)
        else:
            self._batch.append(letter)

    def _send(self, pacer: Pacer) -> None:
        batch, self._batch = self._batch, []
        pacer.wait_for(len(batch))
        self.journal.about_to_send(letter.message_id for letter in batch)
        answer = self.scanner.sqs.send_message_batch(
            QueueUrl=self.target_url, Entries=[self._entry(i, x) for i, x in enumerate(batch)]
        )
        accepted = {entry["Id"] for entry in answer.get("Successful", [])}
        refused = {entry["Id"]: entry for entry in answer.get("Failed", [])}
        sent = [letter for i, letter in enumerate(batch) if str(i) in accepted]
        self.journal.did_send(letter.message_id for letter in sent)
        if refused:
            self.journal.did_not_send(batch[int(i)].message_id for i in refused)
        for i, letter in enumerate(batch):
            if str(i) in refused:
                entry = refused[str(i)]
                why = f"{entry.get('Code', '?')}: {entry.get('Message', '')}".strip()
                self.report.refused.append((letter, why))
        # Deleted only now: its copy is on the jobs queue, and the journal says so.
        self.scanner.delete(sent)
        self.report.sent += sent

    def _entry(self, index: int, letter: DeadLetter) -> dict[str, Any]:
        attributes = {k: v for k, v in letter.attributes.items() if k not in _STAMPED}
        attributes["redriven_from"] = {
            "DataType": "String",
            "StringValue": letter.original_message_id,
        }
        entry: dict[str, Any] = {
            "Id": str(index),
            "MessageBody": letter.body,
            "MessageAttributes": dict(list(attributes.items())[:10]),
        }
        if self.target_url.endswith(".fifo"):
            entry["MessageGroupId"] = letter.group_id or letter.key[:128]
            # Within SQS's five minutes a second copy is dropped by SQS itself as well.
            entry["MessageDeduplicationId"] = letter.message_id[:128]
        return entry


@dataclass
class PurgeReport:
    """What ``dlq purge`` found and deleted."""

    read: int = 0
    chosen: list[DeadLetter] = field(default_factory=list)
    deleted: int = 0


def purge(
    scanner: DlqScanner,
    selection: Selection,
    confirm: Callable[[list[DeadLetter]], bool],
    progress: Callable[[int], None] = lambda _read: None,
) -> PurgeReport:
    """Read the DLQ once, and delete the chosen messages if ``confirm`` agrees once it has seen
    them all; every other message is handed back."""
    report = PurgeReport()
    try:
        for letter in scanner.messages():
            report.read += 1
            if selection.matches(letter):
                report.chosen.append(letter)
            progress(report.read)
        if report.chosen and confirm(report.chosen):
            scanner.delete(report.chosen)
            report.deleted = len(report.chosen)
    finally:
        scanner.release()
    return report


__all__ = ["DlqError", "PurgeReport", "Redrive", "RedriveReport", "purge", "still_invalid"]
