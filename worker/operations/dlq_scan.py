"""Reading a whole dead-letter queue once, holding what was read until the run ends.

SQS has no peek: a message is read by receiving it, which hides it for a visibility timeout and
counts one more receive. The scan receives every visible message once, keeps each one hidden
(``hold_s``) so it is not read twice, and at the end hands back what it did not delete
(visibility 0), so the DLQ looks as before, receive counts aside. A run that dies leaves its
messages hidden until ``hold_s`` runs out, then they are back by themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.operations.dead_letters import DeadLetter, read_dead_letter

MAX_BATCH = 10  # SQS's cap per receive and per batch call
# One long poll asks every SQS server: an empty one means nothing visible is left.
_WAIT_S = 1


class DlqError(Exception):
    """Raised when SQS refuses entries of a delete or a send; the message says how many."""


@dataclass(slots=True)
class DlqScanner:
    """Receives a DLQ's messages once each, and settles them: delete, or hand back at the end."""

    sqs: Any  # a boto3 SQS client
    queue_url: str
    hold_s: int = 600
    _held: dict[str, DeadLetter] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        """The queue's approximate counts: visible, and hidden (read by someone right now)."""
        answer = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return {
            "visible": int(answer.get("ApproximateNumberOfMessages", 0)),
            "hidden": int(answer.get("ApproximateNumberOfMessagesNotVisible", 0)),
        }

    def messages(self) -> Iterator[DeadLetter]:
        """Every visible message, once; each is held until :meth:`delete` or :meth:`release`."""
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=MAX_BATCH,
                WaitTimeSeconds=_WAIT_S,
                VisibilityTimeout=self.hold_s,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = answer.get("Messages", [])
            if not received:
                return
            for message in received:
                letter = read_dead_letter(message)
                # Back after its hold ran out in a long run: its newest receipt is the one to use.
                self._held[letter.message_id] = letter
                if letter.message_id not in self._seen:
                    self._seen.add(letter.message_id)
                    yield letter

    def delete(self, letters: Sequence[DeadLetter]) -> None:
        """Delete these messages from the DLQ; raise :class:`DlqError` if SQS refuses any."""
        for start in range(0, len(letters), MAX_BATCH):
            chunk = [self._held.get(x.message_id, x) for x in letters[start : start + MAX_BATCH]]
            answer = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": x.receipt_handle} for i, x in enumerate(chunk)
                ],
            )
            failed = answer.get("Failed", [])
            refused = {entry.get("Id") for entry in failed}
            for i, letter in enumerate(chunk):
                if str(i) not in refused:  # a refused one is still held: handed back at the end
                    self._held.pop(letter.message_id, None)
            if failed:
                codes = ", ".join(sorted({entry.get("Code", "?") for entry in failed}))
                raise DlqError(f"SQS refused to delete {len(failed)} message(s): {codes}")

    def release(self, on_error: Callable[[str], None] = lambda _text: None) -> int:
        """Hand back every message still held (visible again at once); return how many."""
        held = list(self._held.values())
        self._held.clear()
        released = 0
        for start in range(0, len(held), MAX_BATCH):
            chunk = held[start : start + MAX_BATCH]
            answer = self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": x.receipt_handle, "VisibilityTimeout": 0}
                    for i, x in enumerate(chunk)
                ],
            )
            failed = answer.get("Failed", [])
            released += len(chunk) - len(failed)
            if failed:
                on_error(
                    f"{len(failed)} message(s) could not be handed back now; they are visible "
                    f"again once their hold of {self.hold_s} s ends"
                )
        return released
