"""The SNS side: publish job results, batched, with attributes subscribers can filter on."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from worker.contract.jobs import JobResult
from worker.pipeline.batching import Batcher, failed_entries
from worker.pipeline.consumer import Observe

if TYPE_CHECKING:
    from types_aiobotocore_sns.client import SNSClient


class ResultPublisher:
    """Publishes :class:`JobResult` messages to the results topic with PublishBatch."""

    def __init__(
        self,
        client: SNSClient,
        topic_arn: str,
        *,
        linger_s: float = 0.02,
        linger_while: Callable[[], bool] = lambda: True,
        at_once: Callable[[JobResult], bool] = lambda _result: False,
        observe: Observe = lambda _call, _size: None,
    ) -> None:
        self._client = client
        self._at_once = at_once
        self._topic_arn = topic_arn
        self._fifo = topic_arn.endswith(".fifo")
        self._batcher = Batcher[JobResult](
            self._publish_batch,
            linger_s=linger_s,
            linger_while=linger_while,
            on_batch=lambda size: observe("PublishBatch", size),
        )

    async def publish(self, result: JobResult) -> None:
        """Return once SNS accepted the result; raise if it did not."""
        await self._batcher.submit(result, at_once=self._at_once(result))

    async def close(self) -> None:
        """Publish what is pending."""
        await self._batcher.close()

    async def _publish_batch(self, batch: Sequence[JobResult]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(batch)
        entries = []
        for i, result in enumerate(batch):
            try:
                entries.append(self._entry(str(i), result))
            except ValueError as error:  # this result cannot be sent: it alone fails
                outcomes[i] = error
        if not entries:
            return outcomes
        answer = await self._client.publish_batch(
            TopicArn=self._topic_arn, PublishBatchRequestEntries=entries
        )
        for index, outcome in enumerate(failed_entries(len(batch), answer)):
            if outcome is not None:
                outcomes[index] = outcome
        return outcomes

    def _entry(self, entry_id: str, result: JobResult) -> Any:
        attributes = {
            "status": result.status.value,
            "job_type": result.type.value if result.type else "unknown",
            "client_id": result.client_id or "unknown",
            "lane": result.lane.value,
        }
        if result.batch is not None:  # subscribers filter one import's results on it
            attributes["batch"] = result.batch
        entry: dict[str, Any] = {
            "Id": entry_id,
            "Message": result.to_message(),
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value}
                for name, value in attributes.items()
            },
        }
        if self._fifo:
            # Results of one job stay in order; a republished result is deduplicated by SNS.
            job_key = f"{result.client_id}:{result.job_id or result.sqs_message_id}"
            entry["MessageGroupId"] = hashlib.sha256(job_key.encode()).hexdigest()[:64]
            entry["MessageDeduplicationId"] = hashlib.sha256(
                f"{job_key}:{result.status.value}".encode()
            ).hexdigest()
        return entry
