"""Reading results: follow a queue subscribed to the results topic, wait for given jobs, and make a
temporary queue that receives one batch's results only."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from pydantic import ValidationError

from worker.contract.jobs import JobResult
from worker.producer.region import sdk_region

_MAX_WAIT_S = 20  # SQS's longest long poll


def parse_result(body: str) -> JobResult | None:
    """A result from an SQS message body, delivered raw or inside SNS's JSON envelope.

    None when the body is not a result (another publisher's message on the same queue).
    """
    try:
        document = json.loads(body)
        if isinstance(document, dict) and document.get("Type") == "Notification":
            document = json.loads(document["Message"])
        return JobResult.model_validate(document)
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


@dataclass(slots=True)
class WaitOutcome:
    """What ``wait_for`` saw: the results by job id, and the ids that have none yet."""

    results: dict[str, JobResult] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)


def _receive_request(queue_url: str, wait_s: float) -> dict[str, Any]:
    return {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": max(0, min(_MAX_WAIT_S, int(wait_s))),
        "MessageAttributeNames": ["All"],
    }


def _deletions(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]


class ResultFollower:
    """Reads :class:`JobResult` s from an SQS queue subscribed to the results topic (boto3).

    Each result handed to you is deleted from the queue; messages that are not results, or (in
    :meth:`wait_for`) results of other jobs, are left for their owner. Give :meth:`wait_for` a
    queue of its own (:func:`temporary_results_queue`): on a shared one it hides other jobs'
    results for the queue's visibility timeout each time it reads them.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        client: Any = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.queue_url = queue_url
        if client is None:
            region = sdk_region(region_name)
            client = boto3.client("sqs", region_name=region, endpoint_url=endpoint_url)
        self._client = client

    def follow(
        self, *, timeout_s: float | None = None, poll_s: float = _MAX_WAIT_S
    ) -> Iterator[JobResult]:
        """Yield results as they arrive; stop after ``timeout_s`` (None: never)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if deadline is not None and left <= 0:
                return
            answer = self._client.receive_message(**_receive_request(self.queue_url, left))
            handed: list[dict[str, Any]] = []
            try:
                for message in answer.get("Messages", []):
                    result = parse_result(message["Body"])
                    if result is not None:
                        handed.append(message)
                        yield result
            finally:
                self._delete(handed)

    def wait_for(self, job_ids: Iterable[str], timeout_s: float) -> WaitOutcome:
        """Wait until every job in ``job_ids`` has a result, or ``timeout_s`` has passed."""
        outcome = WaitOutcome(missing=set(job_ids))
        deadline = time.monotonic() + timeout_s
        while outcome.missing:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            answer = self._client.receive_message(**_receive_request(self.queue_url, left))
            mine = []
            for message in answer.get("Messages", []):
                result = parse_result(message["Body"])
                if result is not None and result.job_id in outcome.missing:
                    outcome.results[result.job_id] = result
                    outcome.missing.discard(result.job_id)
                    mine.append(message)
            self._delete(mine)
        return outcome

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=_deletions(messages))


class AsyncResultFollower:
    """:class:`ResultFollower` for asyncio code, on an aioboto3 SQS client you have entered."""

    def __init__(self, queue_url: str, *, client: Any) -> None:
        self.queue_url = queue_url
        self._client = client

    async def follow(
        self, *, timeout_s: float | None = None, poll_s: float = _MAX_WAIT_S
    ) -> AsyncIterator[JobResult]:
        """Yield results as they arrive; stop after ``timeout_s`` (None: never)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if deadline is not None and left <= 0:
                return
            answer = await self._client.receive_message(**_receive_request(self.queue_url, left))
            handed: list[dict[str, Any]] = []
            try:
                for message in answer.get("Messages", []):
                    result = parse_result(message["Body"])
                    if result is not None:
                        handed.append(message)
                        yield result
            finally:
                await self._delete(handed)

    async def wait_for(self, job_ids: Iterable[str], timeout_s: float) -> WaitOutcome:
        """Wait until every job in ``job_ids`` has a result, or ``timeout_s`` has passed."""
        outcome = WaitOutcome(missing=set(job_ids))
        deadline = time.monotonic() + timeout_s
        while outcome.missing:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            answer = await self._client.receive_message(**_receive_request(self.queue_url, left))
            mine = []
            for message in answer.get("Messages", []):
                result = parse_result(message["Body"])
                if result is not None and result.job_id in outcome.missing:
                    outcome.results[result.job_id] = result
                    outcome.missing.discard(result.job_id)
                    mine.append(message)
            await self._delete(mine)
        return outcome

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            await self._client.delete_message_batch(
                QueueUrl=self.queue_url, Entries=_deletions(messages)
            )


@dataclass(frozen=True, slots=True)
class _TemporaryQueue:
    queue_url: str
    queue_arn: str
    subscription_arn: str | None


def _queue_name(batch: str | None, fifo: bool) -> str:
    # Queue names: up to 80 of letters, digits, '-' and '_' (".fifo" included for FIFO queues).
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in (batch or "all"))[:40]
    name = f"cognito-worker-results-{label}-{uuid.uuid4().hex[:8]}"
    return f"{name}.fifo" if fifo else name


def _queue_attributes(topic_arn: str, fifo: bool) -> dict[str, str]:
    # SNS may deliver to the queue only for this topic: the policy AWS requires for a subscription.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": "*",
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    attributes = {"Policy": json.dumps(policy)}
    if fifo:
        attributes["FifoQueue"] = "true"
    return attributes


def _subscription_attributes(batch: str | None) -> dict[str, str]:
    attributes = {"RawMessageDelivery": "true"}
    if batch is not None:
        attributes["FilterPolicy"] = json.dumps({"batch": [batch]})
    return attributes


@contextlib.contextmanager
def temporary_results_queue(
    topic_arn: str,
    *,
    batch: str | None = None,
    sqs_client: Any = None,
    sns_client: Any = None,
    region_name: str | None = None,
    endpoint_url: str | None = None,
) -> Iterator[ResultFollower]:
    """A queue subscribed to the results topic for the block, deleted afterwards.

    With ``batch``, the subscription's filter policy lets only that batch's results in. The queue
    and the subscription are removed however the block ends, Ctrl-C included. Results published
    before the subscription existed are not delivered to it: enter the block before sending.
    """
    region_name = sdk_region(region_name)
    sqs = sqs_client or boto3.client("sqs", region_name=region_name, endpoint_url=endpoint_url)
    sns = sns_client or boto3.client("sns", region_name=region_name, endpoint_url=endpoint_url)
    fifo = topic_arn.endswith(".fifo")
    queue_url: str | None = None
    subscription_arn: str | None = None
    try:
        queue_url = sqs.create_queue(
            QueueName=_queue_name(batch, fifo), Attributes=_queue_attributes(topic_arn, fifo)
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        subscription_arn = sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes=_subscription_attributes(batch),
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        yield ResultFollower(queue_url, client=sqs)
    finally:
        # Each step on its own: a failed unsubscribe must not leave the queue behind.
        with contextlib.suppress(Exception):
            if subscription_arn is not None:
                sns.unsubscribe(SubscriptionArn=subscription_arn)
        with contextlib.suppress(Exception):
            if queue_url is not None:
                sqs.delete_queue(QueueUrl=queue_url)


@contextlib.asynccontextmanager
async def async_temporary_results_queue(
    topic_arn: str, *, batch: str | None = None, sqs_client: Any, sns_client: Any
) -> AsyncIterator[AsyncResultFollower]:
    """:func:`temporary_results_queue` on aioboto3 clients you have entered."""
    fifo = topic_arn.endswith(".fifo")
    queue_url: str | None = None
    subscription_arn: str | None = None
    try:
        queue_url = (
            await sqs_client.create_queue(
                QueueName=_queue_name(batch, fifo), Attributes=_queue_attributes(topic_arn, fifo)
            )
        )["QueueUrl"]
        attributes = await sqs_client.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"]
        )
        subscription_arn = (
            await sns_client.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=attributes["Attributes"]["QueueArn"],
                Attributes=_subscription_attributes(batch),
                ReturnSubscriptionArn=True,
            )
        )["SubscriptionArn"]
        yield AsyncResultFollower(queue_url, client=sqs_client)
    finally:
        with contextlib.suppress(Exception):
            if subscription_arn is not None:
                await sns_client.unsubscribe(SubscriptionArn=subscription_arn)
        with contextlib.suppress(Exception):
            if queue_url is not None:
                await sqs_client.delete_queue(QueueUrl=queue_url)
