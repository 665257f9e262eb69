"""Reading results: follow a queue subscribed to the results topic, wait for given jobs, and make a
temporary queue that receives one batch's results only."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from pydantic import ValidationError

from worker.contract.jobs import JobResult
from worker.producer.jobs import SentJob
from worker.producer.region import sdk_region

_MAX_WAIT_S = 20  # SQS's longest long poll
# Another job's result read while waiting for one's own is visible again after this long: soon
# for whoever waits for it, and not at once, or the waiting loop would read it again and again.
HAND_BACK_S = 2


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
    """What ``wait_for`` saw: the results by the id they were awaited by (a job id, or an SQS
    message id), and the ids that have none yet."""

    results: dict[str, JobResult] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)


JobRef = str | SentJob  # a job id, or what ``send`` returned (its job id and its message id)


class Awaited:
    """The jobs a reader waits for, by job id or by SQS message id.

    A result is matched by its ``job_id``, or by its ``sqs_message_id`` (the ``MessageId`` that
    SendMessage returned): a job rejected with a job id the worker could not read has
    ``job_id: null``, and its message id still names it. A :class:`SentJob` is awaited by both
    and reported by its job id.
    """

    def __init__(self, jobs: Iterable[JobRef] = (), message_ids: Iterable[str] = ()) -> None:
        self._by_job_id: dict[str, str] = {}
        self._by_message_id: dict[str, str] = {}
        for job in jobs:
            if isinstance(job, SentJob):
                self._by_job_id[job.job_id] = job.job_id
                self._by_message_id[job.message_id] = job.job_id
            else:
                self._by_job_id[job] = job
        for message_id in message_ids:
            self._by_message_id[message_id] = message_id
        self.missing: set[str] = {*self._by_job_id.values(), *self._by_message_id.values()}

    def claim(self, result: JobResult) -> str | None:
        """The id ``result`` was awaited by, once (then it is no longer missing); else None."""
        for key in (
            self._by_job_id.get(result.job_id or ""),
            self._by_message_id.get(result.sqs_message_id),
        ):
            if key is not None and key in self.missing:
                self.missing.discard(key)
                return key
        return None


def _receive_request(queue_url: str, wait_s: float) -> dict[str, Any]:
    return {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": max(0, min(_MAX_WAIT_S, int(wait_s))),
        "MessageAttributeNames": ["All"],
    }


def _deletions(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]


def _hand_backs(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": HAND_BACK_S}
        for i, m in enumerate(messages)
    ]


def _unsettled(
    received: list[dict[str, Any]], settled: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What was received but neither handed to the caller nor handed back: the caller stopped
    early (a ``break``, Ctrl-C), or was stopped between the receive and the hand-back. Handed
    back now, such a result is visible again in :data:`HAND_BACK_S`, not after the queue's
    whole visibility timeout."""
    done = {message["ReceiptHandle"] for message in settled}
    return [message for message in received if message["ReceiptHandle"] not in done]


ResultFilter = Callable[[JobResult], bool]


def _sort(
    messages: list[dict[str, Any]], awaited: Awaited | None, where: ResultFilter | None = None
) -> tuple[list[tuple[str, JobResult, dict[str, Any]]], list[dict[str, Any]]]:
    """The awaited results among ``messages`` (every result when ``awaited`` is None) that
    ``where`` accepts, each with the id it was awaited by; and the others, to hand back."""
    mine, others = [], []
    for message in messages:
        result = parse_result(message["Body"])
        if result is None:
            continue  # not a result: left for its owner
        if where is not None and not where(result):
            others.append(message)
            continue
        key = result.job_id or result.sqs_message_id if awaited is None else awaited.claim(result)
        if key is None:
            others.append(message)
        else:
            mine.append((key, result, message))
    return mine, others


class ResultFollower:
    """Reads :class:`JobResult` s from an SQS queue subscribed to the results topic (boto3).

    Each result handed to you is deleted from the queue; messages that are not results are left
    for their owner, and (when waiting for given jobs) other jobs' results are handed back,
    visible again after :data:`HAND_BACK_S`; so are results received but not yet handed to you
    when you stop reading (a ``break``, Ctrl-C). On a queue many producers share, each still reads
    every result: give a producer a queue of its own (:func:`temporary_results_queue`, or a
    subscription filtered on its ``batch`` or ``client_id``).
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
        self,
        *,
        timeout_s: float | None = None,
        poll_s: float = _MAX_WAIT_S,
        jobs: Iterable[JobRef] | None = None,
        message_ids: Iterable[str] = (),
        where: ResultFilter | None = None,
        stop_when_empty: bool = False,
    ) -> Iterator[JobResult]:
        """Yield results as they arrive; stop after ``timeout_s`` (None: never), or with
        ``stop_when_empty`` at the first receive that brings nothing.

        Given ``jobs`` (job ids, or the :class:`SentJob` s ``send`` returned) or
        ``message_ids``, yield those jobs' results only and stop as soon as each has one; given
        ``where``, only the results it accepts. The other results are handed back, visible
        again after :data:`HAND_BACK_S`.
        """
        awaited = None if jobs is None and not message_ids else Awaited(jobs or (), message_ids)
        for _key, result in self._follow(awaited, timeout_s, poll_s, where, stop_when_empty):
            yield result

    def wait_for(
        self, jobs: Iterable[JobRef] = (), timeout_s: float = 60, *, message_ids: Iterable[str] = ()
    ) -> WaitOutcome:
        """Wait until every job awaited has a result, or ``timeout_s`` has passed; return as
        soon as they are all in.

        ``jobs``: job ids, or the :class:`SentJob` s ``send`` returned (matched by job id or
        by message id, reported by job id); ``message_ids``: SQS message ids. Other jobs'
        results are handed back, visible again after :data:`HAND_BACK_S`.
        """
        awaited = Awaited(jobs, message_ids)
        outcome = WaitOutcome(missing=awaited.missing)
        for key, result in self._follow(awaited, timeout_s, _MAX_WAIT_S):
            outcome.results[key] = result
        return outcome

    def _follow(
        self,
        awaited: Awaited | None,
        timeout_s: float | None,
        poll_s: float,
        where: ResultFilter | None = None,
        stop_when_empty: bool = False,
    ) -> Iterator[tuple[str, JobResult]]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while awaited is None or awaited.missing:
            left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if deadline is not None and left <= 0:
                return
            answer = self._client.receive_message(**_receive_request(self.queue_url, left))
            received: list[dict[str, Any]] = answer.get("Messages", [])
            if stop_when_empty and not received:
                return
            settled: list[dict[str, Any]] = []  # deleted or handed back
            try:
                mine, others = _sort(received, awaited, where)
                self._hand_back(others)
                settled += others
                handed: list[dict[str, Any]] = []
                try:
                    for key, result, message in mine:
                        handed.append(message)
                        yield key, result
                finally:
                    self._delete(handed)
                    settled += handed
            finally:
                self._hand_back(_unsettled(received, settled))

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=_deletions(messages))

    def _hand_back(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            self._client.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=_hand_backs(messages)
            )


class AsyncResultFollower:
    """:class:`ResultFollower` for asyncio code, on an aioboto3 SQS client you have entered."""

    def __init__(self, queue_url: str, *, client: Any) -> None:
        self.queue_url = queue_url
        self._client = client

    async def follow(
        self,
        *,
        timeout_s: float | None = None,
        poll_s: float = _MAX_WAIT_S,
        jobs: Iterable[JobRef] | None = None,
        message_ids: Iterable[str] = (),
    ) -> AsyncIterator[JobResult]:
        """Yield results as they arrive; stop after ``timeout_s`` (None: never). Given ``jobs``
        or ``message_ids``, only theirs, stopping once each has one (as
        :meth:`ResultFollower.follow`)."""
        awaited = None if jobs is None and not message_ids else Awaited(jobs or (), message_ids)
        async for _key, result in self._follow(awaited, timeout_s, poll_s):
            yield result

    async def wait_for(
        self, jobs: Iterable[JobRef] = (), timeout_s: float = 60, *, message_ids: Iterable[str] = ()
    ) -> WaitOutcome:
        """Wait until every job awaited has a result, or ``timeout_s`` has passed; return as
        soon as they are all in (as :meth:`ResultFollower.wait_for`)."""
        awaited = Awaited(jobs, message_ids)
        outcome = WaitOutcome(missing=awaited.missing)
        async for key, result in self._follow(awaited, timeout_s, _MAX_WAIT_S):
            outcome.results[key] = result
        return outcome

    async def _follow(
        self, awaited: Awaited | None, timeout_s: float | None, poll_s: float
    ) -> AsyncIterator[tuple[str, JobResult]]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while awaited is None or awaited.missing:
            left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if deadline is not None and left <= 0:
                return
            answer = await self._client.receive_message(**_receive_request(self.queue_url, left))
            received: list[dict[str, Any]] = answer.get("Messages", [])
            settled: list[dict[str, Any]] = []  # deleted or handed back
            try:
                mine, others = _sort(received, awaited)
                await self._hand_back(others)
                settled += others
                handed: list[dict[str, Any]] = []
                try:
                    for key, result, message in mine:
                        handed.append(message)
                        yield key, result
                finally:
                    await self._delete(handed)
                    settled += handed
            finally:
                await self._hand_back(_unsettled(received, settled))

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            await self._client.delete_message_batch(
                QueueUrl=self.queue_url, Entries=_deletions(messages)
            )

    async def _hand_back(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            await self._client.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=_hand_backs(messages)
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
