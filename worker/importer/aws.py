"""The import's seams implemented with the producer library: jobs to SQS, results from SNS.

Sending uses :class:`~worker.producer.AsyncJobProducer`: several SendMessageBatch requests in
flight keep sending far ahead of what the worker can do at Cognito's quotas. Results come through
:func:`~worker.producer.temporary_results_queue`: a queue of the import's own, subscribed to the
results topic with a filter on the import's ``batch`` attribute, deleted when the import ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

from worker.contract.jobs import Job, JobResult
from worker.importer.sending import BatchCallback, JobSender, ResultFollower, SendFailure
from worker.producer import (
    AsyncJobProducer,
    FailedJob,
    SentJob,
    temporary_results_queue,
)
from worker.producer import (
    ResultFollower as ProducerFollower,
)

# Batches in flight at once: enough to hide SQS's latency, few enough that a Ctrl-C lands
# after a handful of batches.
SEND_CONCURRENCY = 8


class AwsSettingsError(Exception):
    """Raised when a variable the import needs is missing; the message names it."""


class QueueSender:
    """Sends an import's jobs to the jobs queue."""

    def __init__(
        self,
        queue_url: str,
        *,
        region: str | None,
        concurrency: int = SEND_CONCURRENCY,
        kms_key_arn: str | None = None,
    ) -> None:
        self._queue_url = queue_url
        self._kms_key_arn = kms_key_arn
        self._region = region
        self._concurrency = concurrency

    def send_many(self, jobs: Iterable[Job], on_batch: BatchCallback) -> None:
        """Send every job; ``on_batch`` gets each batch's accepted ids and failures."""
        asyncio.run(self._send_many(jobs, on_batch))

    async def _send_many(self, jobs: Iterable[Job], on_batch: BatchCallback) -> None:
        def delivered(sent: list[SentJob], failed: list[FailedJob]) -> None:
            on_batch(
                [job.job_id for job in sent],
                [SendFailure(job.job_id or "", job.code, job.message) for job in failed],
            )

        async with AsyncJobProducer(
            self._queue_url,
            region_name=self._region,
            max_concurrency=self._concurrency,
            kms_key_arn=self._kms_key_arn,
        ) as producer:
            await producer.send_many(jobs, on_batch=delivered)


class TopicResults:
    """An import's results, read from its temporary queue."""

    def __init__(self, follower: ProducerFollower) -> None:
        self._follower = follower

    def poll(self, wait_s: float) -> Iterator[JobResult]:
        """The results that arrive within ``wait_s`` seconds."""
        return self._follower.follow(timeout_s=wait_s, poll_s=wait_s)


def results_follower(topic_arn: str, *, region: str | None) -> ResultFollower:
    """Follows one batch's results through a temporary queue subscribed to ``topic_arn``."""

    @contextmanager
    def follow(batch: str) -> Iterator[TopicResults]:
        with temporary_results_queue(topic_arn, batch=batch, region_name=region) as follower:
            yield TopicResults(follower)

    def factory(batch: str) -> AbstractContextManager[TopicResults]:
        return follow(batch)

    return factory


def lane_of_import(environ: Mapping[str, str], lane: str | None) -> tuple[str, str]:
    """The queue an import sends to, and the line that says which and why.

    By default the bulk lane (``BULK_JOBS_QUEUE_URL``), whose jobs take only the Cognito calls
    live jobs leave; without one, the jobs queue, with a warning that live jobs will wait.
    """
    bulk = environ.get("BULK_JOBS_QUEUE_URL", "")
    interactive = environ.get("JOBS_QUEUE_URL", "")
    if lane == "bulk" or (lane is None and bulk):
        if not bulk:
            raise AwsSettingsError("BULK_JOBS_QUEUE_URL is required with --lane bulk")
        return bulk, "lane: bulk (BULK_JOBS_QUEUE_URL): live jobs keep going ahead of this import"
    if not interactive:
        raise AwsSettingsError("JOBS_QUEUE_URL is required: the queue the worker reads")
    if lane == "interactive":
        return interactive, "lane: interactive (JOBS_QUEUE_URL), as asked: live jobs share its turn"
    return interactive, (
        "lane: interactive (JOBS_QUEUE_URL): no bulk lane is set (BULK_JOBS_QUEUE_URL), so live "
        "jobs sent meanwhile wait behind this import"
    )


def aws_endpoints_from_env(
    environ: Mapping[str, str],
    *,
    wait: bool,
    kms_key_arn: str | None = None,
    lane: str | None = None,
) -> tuple[JobSender, ResultFollower | None, str]:
    """The sender (to the queue of :func:`lane_of_import`), for ``--wait`` the follower
    (``RESULTS_TOPIC_ARN``), and the line saying which lane the jobs go to.

    The region is the worker's ``AWS_REGION`` (else the SDK's ``AWS_DEFAULT_REGION``);
    credentials and endpoints come from the SDK's usual variables. With ``kms_key_arn`` the
    passwords are encrypted under that key.
    """
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
    queue_url, said = lane_of_import(environ, lane)
    follower = None
    if wait:
        topic_arn = environ.get("RESULTS_TOPIC_ARN", "")
        if not topic_arn:
            raise AwsSettingsError("RESULTS_TOPIC_ARN is required with --wait")
        follower = results_follower(topic_arn, region=region)
    return QueueSender(queue_url, region=region, kms_key_arn=kms_key_arn), follower, said
