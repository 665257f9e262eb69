"""The import's seams implemented with the producer library: jobs to SQS, results from SNS, and
the records of jobs sent earlier from the worker's idempotency table.

Sending uses :class:`~worker.producer.AsyncJobProducer`: several SendMessageBatch requests in
flight keep sending far ahead of what the worker can do at Cognito's quotas. Results come through
:func:`~worker.producer.temporary_results_queue`: a queue of the import's own, subscribed to the
results topic with a filter on the import's ``batch`` attribute, deleted when the import ends.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from worker.contract.jobs import Job, JobResult
from worker.importer.pool_rules import PoolRules
from worker.importer.report import one_line
from worker.importer.sending import (
    BatchCallback,
    JobLookup,
    JobSender,
    LookedUp,
    ResultFollower,
    SendFailure,
)
from worker.producer import (
    AsyncJobProducer,
    FailedJob,
    SentJob,
    temporary_results_queue,
)
from worker.producer import (
    ResultFollower as ProducerFollower,
)
from worker.producer.lookup import (
    BATCH_GET_MAX,
    UnprocessedKeysError,
    default_client_id,
    look_up_jobs,
)

# Batches in flight at once: enough to hide SQS's latency, few enough that a Ctrl-C lands
# after a handful of batches.
SEND_CONCURRENCY = 8
# Lookups in flight at once: one GetItem each, so a few hundred rows a second.
LOOKUP_CONCURRENCY = 8


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


class TableLookup:
    """The jobs' records in the idempotency table, read with :func:`look_up_jobs` (one
    consistent BatchGetItem a hundred jobs, several in flight)."""

    def __init__(
        self,
        table: str,
        client_id: str,
        *,
        region: str | None,
        concurrency: int = LOOKUP_CONCURRENCY,
        client: Any = None,
    ) -> None:
        self._table = table
        self._client_id = client_id
        self._concurrency = concurrency
        self._client = client or boto3.client(
            "dynamodb",
            region_name=region,
            config=Config(max_pool_connections=concurrency, retries={"mode": "standard"}),
        )

    def _batch(self, job_ids: list[str]) -> list[LookedUp]:
        try:
            states = look_up_jobs(
                self._table, job_ids, client_id=self._client_id, client=self._client
            )
        except ClientError as error:
            details = error.response.get("Error", {})
            code = details.get("Code") or "ClientError"
            problem = f"{code}: {one_line(str(details.get('Message') or ''))}"
            return [LookedUp(job_id, None, problem) for job_id in job_ids]
        except BotoCoreError as error:
            problem = one_line(f"{type(error).__name__}: {error}")
            return [LookedUp(job_id, None, problem) for job_id in job_ids]
        except UnprocessedKeysError as error:
            return [
                LookedUp(job_id, error.read[job_id])
                if job_id in error.read
                else LookedUp(job_id, None, str(error))
                for job_id in job_ids
            ]
        return [LookedUp(job_id, states[job_id]) for job_id in job_ids]

    def look_up_many(self, job_ids: Iterable[str]) -> Iterator[LookedUp]:
        """One answer per job id, in order; a chunk at a time, so memory stays flat."""
        ids = iter(job_ids)
        with ThreadPoolExecutor(self._concurrency) as pool:
            while chunk := list(itertools.islice(ids, BATCH_GET_MAX * self._concurrency)):
                batches = [
                    chunk[start : start + BATCH_GET_MAX]
                    for start in range(0, len(chunk), BATCH_GET_MAX)
                ]
                for answers in pool.map(self._batch, batches):
                    yield from answers


def lookup_from_env(
    environ: Mapping[str, str], client_id: str | None
) -> tuple[JobLookup | None, str]:
    """The lookup of jobs sent earlier, as ``cognito-worker job`` finds the table
    (``IDEMPOTENCY_STORE``, ``IDEMPOTENCY_TABLE``, the client), or None and why not."""
    store = environ.get("IDEMPOTENCY_STORE", "memory").strip().lower()
    if store != "dynamodb":
        return None, (
            f"IDEMPOTENCY_STORE is {store or 'memory'}: the worker keeps its records in its own "
            "process, so there is nothing to look up (IDEMPOTENCY_STORE=dynamodb)"
        )
    table = environ.get("IDEMPOTENCY_TABLE", "")
    if not table:
        return None, "IDEMPOTENCY_TABLE is not set (the worker's idempotency table)"
    client = client_id or default_client_id(environ)
    if not client:
        return None, "no app client to look the jobs up under: --client-id or COGNITO_CLIENT_ID"
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
    return TableLookup(table, client, region=region), ""


def pool_rules_from_aws(pool_id: str | None) -> tuple[PoolRules | None, str]:
    """The pool's rules (DescribeUserPool, in the pool's Region), or None and why not."""
    if not pool_id:
        return None, "no pool to read (--user-pool-id or COGNITO_USER_POOL_ID)"
    region = pool_id.split("_", 1)[0]
    try:
        client = boto3.client(
            "cognito-idp", region_name=region, config=Config(retries={"mode": "standard"})
        )
        pool = client.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    except ClientError as error:
        details = error.response.get("Error", {})
        code = details.get("Code") or "ClientError"
        return None, f"{code}: {one_line(str(details.get('Message') or ''))}"
    except BotoCoreError as error:
        return None, one_line(f"{type(error).__name__}: {error}")
    return PoolRules.from_description(pool), ""
