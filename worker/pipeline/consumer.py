"""The SQS side: receive jobs, delete them, hand them back, and dead-letter the malformed.

It owns receipt handles and visibility; every batch call checks each ``Failed`` entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.contract.jobs import Lane
from worker.pipeline.batching import Batcher, failed_entries

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

MAX_RECEIVE = 10  # SQS's own cap per ReceiveMessage
# Told of every request: the call's name and how many entries it carried (or messages it got).
Observe = Callable[[str, int], None]
MAX_VISIBILITY_S = 43200


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One delivery of one SQS message."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    group_id: str | None
    attributes: dict[str, Any]
    sent_at: float | None = None  # SQS's SentTimestamp, in epoch seconds
    lane: Lane = Lane.INTERACTIVE  # which jobs queue it came from


@dataclass(frozen=True, slots=True)
class _VisibilityChange:
    message: ReceivedMessage
    timeout_s: int


@dataclass(frozen=True, slots=True)
class _DeadLetter:
    message: ReceivedMessage
    reason: str


class JobQueue:
    """One lane's jobs queue (and, when configured, its dead-letter queue)."""

    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        *,
        dead_letter_queue_url: str | None,
        visibility_timeout_s: int,
        lane: Lane = Lane.INTERACTIVE,
        linger_s: float = 0.02,
        linger_while: Callable[[], bool] = lambda: True,
        observe: Observe = lambda _call, _size: None,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self.lane = lane
        self.fifo = queue_url.endswith(".fifo")
        self._dlq_url = dead_letter_queue_url
        self._visibility_timeout_s = visibility_timeout_s
        self._observe = observe
        self._deletes = Batcher[ReceivedMessage](
            self._delete_batch,
            linger_s=linger_s,
            linger_while=linger_while,
            on_batch=lambda size: observe("DeleteMessageBatch", size),
        )
        self._visibility = Batcher[_VisibilityChange](
            self._change_visibility_batch,
            linger_s=linger_s,
            linger_while=linger_while,
            on_batch=lambda size: observe("ChangeMessageVisibilityBatch", size),
        )
        self._dead_letters = Batcher[_DeadLetter](
            self._dead_letter_batch, on_batch=lambda size: observe("SendMessageBatch", size)
        )

    @property
    def has_dead_letter_queue(self) -> bool:
        """Whether malformed messages are moved to a DLQ by the worker itself."""
        return self._dlq_url is not None

    async def receive(self, max_messages: int, wait_s: int) -> list[ReceivedMessage]:
        """Long-poll for up to ``max_messages`` (at most 10) messages."""
        answer = await self._client.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=max(1, min(MAX_RECEIVE, max_messages)),
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=self._visibility_timeout_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = [_received(message, self.lane) for message in answer.get("Messages", [])]
        self._observe("ReceiveMessage", len(messages))
        return messages

    async def is_drained(self) -> bool:
        """Whether the queue holds no message at all: visible, in flight or delayed."""
        return not any((await self.message_counts()).values())

    async def message_counts(self) -> dict[str, int]:
        """The queue's approximate counts: ``ApproximateNumberOfMessages`` (visible),
        ``...NotVisible`` (in flight) and ``...Delayed``."""
        answer = await self._client.get_queue_attributes(
            QueueUrl=self._queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        self._observe("GetQueueAttributes", 1)
        return {name: int(count) for name, count in answer.get("Attributes", {}).items()}

    async def delete(self, message: ReceivedMessage) -> None:
        """Delete a message whose result is published; raise if SQS refused this entry."""
        await self._deletes.submit(message)

    async def hand_back(self, message: ReceivedMessage, delay_s: int = 0) -> None:
        """Make a message visible again after ``delay_s`` (0: at once) for another attempt."""
        await self._visibility.submit(
            _VisibilityChange(message, max(0, min(MAX_VISIBILITY_S, delay_s)))
        )

    async def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        """Copy a message to the DLQ with the reason as an attribute (the caller deletes it)."""
        await self._dead_letters.submit(_DeadLetter(message, reason))

    async def close(self) -> None:
        """Send every pending delete, visibility change and dead letter."""
        for batcher in (self._dead_letters, self._deletes, self._visibility):
            await batcher.close()

    async def _delete_batch(self, batch: Sequence[ReceivedMessage]) -> list[BaseException | None]:
        answer = await self._client.delete_message_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch)
            ],
        )
        return failed_entries(len(batch), answer)

    async def _change_visibility_batch(
        self, batch: Sequence[_VisibilityChange]
    ) -> list[BaseException | None]:
        answer = await self._client.change_message_visibility_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {
                    "Id": str(i),
                    "ReceiptHandle": change.message.receipt_handle,
                    "VisibilityTimeout": change.timeout_s,
                }
                for i, change in enumerate(batch)
            ],
        )
        return failed_entries(len(batch), answer)

    async def _dead_letter_batch(self, batch: Sequence[_DeadLetter]) -> list[BaseException | None]:
        assert self._dlq_url is not None  # only submitted when a DLQ is configured
        entries: list[Any] = []
        for i, letter in enumerate(batch):
            # SQS allows ten attributes: keep the producer's first eight, add the reason and
            # the message id the job's result carries as sqs_message_id (a copy whose body was
            # dropped is still matched to its result by it).
            attributes = dict(list(letter.message.attributes.items())[:8])
            attributes["rejection_reason"] = {
                "DataType": "String",
                "StringValue": letter.reason[:1000] or "rejected",
            }
            attributes["original_message_id"] = {
                "DataType": "String",
                "StringValue": letter.message.message_id,
            }
            entry: dict[str, Any] = {
                "Id": str(i),
                "MessageBody": letter.message.body,
                "MessageAttributes": attributes,
            }
            if letter.message.group_id is not None:
                entry["MessageGroupId"] = letter.message.group_id
                entry["MessageDeduplicationId"] = letter.message.message_id
            entries.append(entry)
        answer = await self._client.send_message_batch(QueueUrl=self._dlq_url, Entries=entries)
        return failed_entries(len(batch), answer)


class Lanes:
    """The jobs queues by lane: each message's delete, hand-back and dead letter go to the
    queue it came from."""

    def __init__(self, queues: Sequence[JobQueue]) -> None:
        self.queues: Mapping[Lane, JobQueue] = {queue.lane: queue for queue in queues}

    def of(self, message: ReceivedMessage) -> JobQueue:
        """The queue ``message`` was received from."""
        return self.queues[message.lane]

    def has_dead_letter_queue(self, message: ReceivedMessage) -> bool:
        """Whether the worker moves ``message`` to its lane's DLQ itself when it is rejected."""
        return self.of(message).has_dead_letter_queue

    async def delete(self, message: ReceivedMessage) -> None:
        """See :meth:`JobQueue.delete`."""
        await self.of(message).delete(message)

    async def hand_back(self, message: ReceivedMessage, delay_s: int = 0) -> None:
        """See :meth:`JobQueue.hand_back`."""
        await self.of(message).hand_back(message, delay_s)

    async def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        """See :meth:`JobQueue.dead_letter`."""
        await self.of(message).dead_letter(message, reason)

    async def close(self) -> None:
        """Send every lane's pending deletes, visibility changes and dead letters."""
        for queue in self.queues.values():
            await queue.close()


def _received(message: Any, lane: Lane) -> ReceivedMessage:
    system = message.get("Attributes", {})
    return ReceivedMessage(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message.get("Body", ""),
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
        group_id=system.get("MessageGroupId"),
        attributes=dict(message.get("MessageAttributes", {})),
        sent_at=int(system["SentTimestamp"]) / 1000 if "SentTimestamp" in system else None,
        lane=lane,
    )
