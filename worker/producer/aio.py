"""The asynchronous producer (aioboto3): the same surface as :class:`JobProducer`, awaited, with
up to ``max_concurrency`` SendMessageBatch requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from typing import Any

import aioboto3
from botocore.config import Config

from worker.contract.fields import FieldEncryptor
from worker.contract.jobs import Lane
from worker.producer.batches import (
    Batch,
    GroupId,
    backoff_s,
    is_fifo,
    lane_queue,
    message_group,
    settle,
)
from worker.producer.client import DEFAULT_MAX_ATTEMPTS
from worker.producer.jobs import (
    DEFAULT_MAX_BYTES,
    FailedJob,
    InvalidJob,
    JobInput,
    PreparedJob,
    SendReport,
    SentJob,
    UnicodeForm,
    prepare_job,
    sqs_id,
)
from worker.producer.region import sdk_region

#: ``on_batch(sent, failed)``: a function or a coroutine function, called after each batch.
AsyncOnBatch = Callable[[list[SentJob], list[FailedJob]], Awaitable[object] | object]


class AsyncJobProducer:
    """Sends jobs to the worker's queue from asyncio code.

    Use it as ``async with AsyncJobProducer(url) as producer:``; with a ``client`` of your own
    (an aioboto3 SQS client already entered) the ``async with`` is optional. ``kms_key_arn``:
    see :class:`~worker.producer.JobProducer` (the encryption runs in a thread), as for
    ``bulk_queue_url`` and ``lane``.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        client: Any = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        kms_key_arn: str | None = None,
        bulk_queue_url: str | None = None,
        max_concurrency: int = 8,
        normalize_username: UnicodeForm | None = None,
    ) -> None:
        if max_attempts < 1 or max_concurrency < 1:
            raise ValueError("max_attempts and max_concurrency must be at least 1")
        self.queue_url = queue_url
        self.bulk_queue_url = bulk_queue_url
        self.fifo = is_fifo(queue_url)
        self.max_attempts = max_attempts
        self.max_bytes = max_bytes
        self.normalize_username = normalize_username
        # One encryptor for the producer's life: its data-key cache spares KMS calls.
        self._encryptor = FieldEncryptor(kms_key_arn) if kms_key_arn else None
        self.max_concurrency = max_concurrency
        self._client = client
        self._client_options = {
            "region_name": sdk_region(region_name),
            "endpoint_url": endpoint_url,
        }
        self._exit_stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> AsyncJobProducer:
        if self._client is None:
            config = Config(retries={"mode": "standard", "max_attempts": self.max_attempts})
            self._client = await self._exit_stack.enter_async_context(
                aioboto3.Session().client("sqs", config=config, **self._client_options)
            )
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close a client this producer made (not one it was given)."""
        await self._exit_stack.aclose()

    async def _prepared(self, job: JobInput, index: int) -> PreparedJob:
        prepare = partial(
            prepare_job,
            job,
            index=index,
            max_bytes=self.max_bytes,
            encryptor=self._encryptor,
            normalize_username=self.normalize_username,
        )
        if self._encryptor is None:
            return prepare()
        # The Encryption SDK is synchronous and may call KMS: off the event loop.
        return await asyncio.to_thread(prepare)

    def _sqs(self) -> Any:
        if self._client is None:
            raise RuntimeError("use `async with AsyncJobProducer(...)`, or pass client=")
        return self._client

    async def send(
        self,
        job: JobInput,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        lane: Lane | str = Lane.INTERACTIVE,
    ) -> SentJob:
        """Send one job: see :meth:`JobProducer.send`."""
        prepared = await self._prepared(job, 0)
        queue_url = lane_queue(self.queue_url, self.bulk_queue_url, lane)
        request: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": prepared.body}
        if is_fifo(queue_url):
            request["MessageGroupId"] = message_group(prepared.job, group_id)
            request["MessageDeduplicationId"] = sqs_id(deduplication_id or prepared.job_id)
        answer = await self._sqs().send_message(**request)
        return SentJob(
            job_id=prepared.job_id,
            message_id=answer["MessageId"],
            sequence_number=answer.get("SequenceNumber"),
        )

    async def send_many(
        self,
        jobs: Iterable[JobInput] | AsyncIterable[JobInput],
        *,
        group_id: GroupId = None,
        on_batch: AsyncOnBatch | None = None,
        skip_invalid: bool = False,
        keep_sent: bool = False,
        lane: Lane | str = Lane.INTERACTIVE,
    ) -> SendReport:
        """Send jobs in batches of up to ten to the queue of ``lane``, ``max_concurrency``
        batches at a time.

        The same guarantees as :meth:`JobProducer.send_many`. The input is read only as fast as
        batches leave, so memory holds at most ``max_concurrency + 1`` batches. ``on_batch`` is
        called as each batch completes (not necessarily in input order). On a FIFO queue a job
        waits for the batch in flight that holds its group, so a group's jobs keep their order.
        """
        queue_url = lane_queue(self.queue_url, self.bulk_queue_url, lane)
        fifo = is_fifo(queue_url)
        batches = _Batches(
            partial(self._send_batch, self._sqs(), queue_url),
            fifo=fifo,
            max_bytes=self.max_bytes,
            max_concurrency=self.max_concurrency,
            on_batch=on_batch,
            keep_sent=keep_sent,
        )
        try:
            index = 0
            async for job in _each(jobs):
                if batches.errors:
                    break
                try:
                    prepared = await self._prepared(job, index)
                except InvalidJob as invalid:
                    if not skip_invalid:
                        await batches.launch()
                        await _settle_all(batches.in_flight)
                        raise
                    batches.refuse(invalid, index)
                    continue
                finally:
                    index += 1
                group = message_group(prepared.job, group_id) if fifo else None
                await batches.add(prepared, group)
            if not batches.errors:
                await batches.launch()
        finally:
            await _settle_all(batches.in_flight)
        if batches.errors:
            raise batches.errors[0]
        return batches.report

    async def _send_batch(
        self, sqs: Any, queue_url: str, batch: Batch
    ) -> tuple[list[SentJob], list[FailedJob]]:
        sent: list[SentJob] = []
        failed: list[FailedJob] = []
        positions = list(range(len(batch.jobs)))
        for attempt in range(1, self.max_attempts + 1):
            answer = await sqs.send_message_batch(
                QueueUrl=queue_url, Entries=batch.entries(positions)
            )
            settled = settle(batch, positions, answer, last_attempt=attempt == self.max_attempts)
            sent += settled.sent
            failed += settled.failed
            positions = settled.retry
            if not positions:
                break
            await asyncio.sleep(backoff_s(attempt))
        return sent, failed


class _Batches:
    """One ``send_many``'s batches: the one being filled, those in flight, what came of them."""

    def __init__(
        self,
        send: Callable[[Batch], Awaitable[tuple[list[SentJob], list[FailedJob]]]],
        *,
        fifo: bool,
        max_bytes: int,
        max_concurrency: int,
        on_batch: AsyncOnBatch | None,
        keep_sent: bool,
    ) -> None:
        self.report = SendReport()
        self.errors: list[BaseException] = []  # raised from send_many once the others finished
        self.in_flight: set[asyncio.Task[None]] = set()
        self._send = send
        self._fifo = fifo
        self._max_bytes = max_bytes
        self._on_batch = on_batch
        self._keep_sent = keep_sent
        self._slots = asyncio.Semaphore(max_concurrency)
        self._group_tasks: dict[str, asyncio.Task[None]] = {}
        self._batch = Batch(fifo, max_bytes)
        self._refused: list[FailedJob] = []

    def refuse(self, invalid: InvalidJob, index: int) -> None:
        """Report a job the worker would reject with the next batch, unsent."""
        self._refused.append(FailedJob(invalid.job_id, "InvalidJob", invalid.reason, True, index))

    async def add(self, prepared: PreparedJob, group: str | None) -> None:
        """Put a job in the batch being filled, launching that batch first when it is full."""
        if not self._batch.has_room(prepared, group):
            await self.launch()
        earlier = self._group_tasks.get(group) if group is not None else None
        if earlier is not None and not earlier.done():
            # The batch in flight holding this job's group goes first: the group keeps its order.
            await self.launch()
            await asyncio.wait([earlier])
        self._batch.add(prepared, group)

    async def launch(self) -> None:
        """Send the batch being filled (waiting for a free slot), and start a new one."""
        this, refused_here = self._batch, self._refused
        self._batch, self._refused = Batch(self._fifo, self._max_bytes), []
        if not this.jobs:
            if refused_here:
                await self._deliver([], refused_here)
            return
        await self._slots.acquire()  # back-pressure: the input waits for a free slot
        task = asyncio.create_task(self._run(this, refused_here))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        for group in this.groups.values():
            self._group_tasks[group] = task

    async def _run(self, this: Batch, refused_here: list[FailedJob]) -> None:
        try:
            sent, failed = await self._send(this)
            await self._deliver(sent, refused_here + failed)
        except Exception as error:  # raised from send_many once the others have finished
            self.errors.append(error)
        finally:
            self._slots.release()

    async def _deliver(self, sent: list[SentJob], failed: list[FailedJob]) -> None:
        self.report.add(sent, failed, keep_sent=self._keep_sent)
        if self._on_batch is not None:
            outcome = self._on_batch(sent, failed)
            if inspect.isawaitable(outcome):
                await outcome


async def _each(jobs: Iterable[JobInput] | AsyncIterable[JobInput]) -> AsyncIterator[JobInput]:
    if isinstance(jobs, AsyncIterable):
        async for job in jobs:
            yield job
    else:
        for job in jobs:
            yield job


async def _settle_all(tasks: set[asyncio.Task[None]]) -> None:
    """Wait for the batches in flight: a job on its way is accounted for, never abandoned."""
    if tasks:
        await asyncio.wait(set(tasks))
