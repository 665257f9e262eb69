"""The synchronous producer (boto3): for Django, Flask, Lambda and scripts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import boto3
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
from worker.producer.jobs import (
    DEFAULT_MAX_BYTES,
    FailedJob,
    InvalidJob,
    JobInput,
    SendReport,
    SentJob,
    UnicodeForm,
    prepare_job,
    sqs_id,
)
from worker.producer.region import sdk_region

#: ``on_batch(sent, failed)``: called after each SendMessageBatch with its outcome.
OnBatch = Callable[[list[SentJob], list[FailedJob]], object]

DEFAULT_MAX_ATTEMPTS = 5


class JobProducer:
    """Sends jobs to the worker's queue, checked first by the worker's own decoder.

    ``client`` is a boto3 SQS client of your own; without one, a client is made from the default
    credentials, ``region_name`` (else ``AWS_REGION``, else the SDK's own chain) and
    ``endpoint_url``. ``max_attempts`` bounds both the SDK's
    retries of a request and the retries of each ``Failed`` batch entry. With ``kms_key_arn``,
    each job's ``password`` and ``confirmation_code`` are encrypted under that KMS key before
    sending (see docs/secrets.md); the producer's role needs ``kms:GenerateDataKey`` on it.
    ``bulk_queue_url`` is the worker's bulk lane (``BULK_JOBS_QUEUE_URL``): jobs sent with
    ``lane="bulk"`` go there and take only the Cognito calls live jobs leave.
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
        normalize_username: UnicodeForm | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.queue_url = queue_url
        self.bulk_queue_url = bulk_queue_url
        self.fifo = is_fifo(queue_url)
        self.max_attempts = max_attempts
        self.max_bytes = max_bytes
        # One encryptor for the producer's life: its data-key cache spares KMS calls.
        self._encryptor = FieldEncryptor(kms_key_arn) if kms_key_arn else None
        self.normalize_username = normalize_username
        self._owns_client = client is None
        self._client = client or _sqs_client(region_name, endpoint_url, max_attempts)

    def __enter__(self) -> JobProducer:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections of a client this producer made (not of one it was given)."""
        if self._owns_client:
            self._client.close()

    def send(
        self,
        job: JobInput,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        lane: Lane | str = Lane.INTERACTIVE,
    ) -> SentJob:
        """Send one job to the queue of ``lane``; return its id and SQS message id.

        Raise :class:`InvalidJob` (nothing sent) when the worker would reject the job, and the
        SDK's ``ClientError`` when SQS refuses it after ``max_attempts``. On a FIFO queue the group
        defaults to the username and the deduplication id to the job id.
        """
        prepared = prepare_job(
            job,
            max_bytes=self.max_bytes,
            encryptor=self._encryptor,
            normalize_username=self.normalize_username,
        )
        queue_url = lane_queue(self.queue_url, self.bulk_queue_url, lane)
        request: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": prepared.body}
        if is_fifo(queue_url):
            request["MessageGroupId"] = message_group(prepared.job, group_id)
            request["MessageDeduplicationId"] = sqs_id(deduplication_id or prepared.job_id)
        answer = self._client.send_message(**request)
        return SentJob(
            job_id=prepared.job_id,
            message_id=answer["MessageId"],
            sequence_number=answer.get("SequenceNumber"),
        )

    def send_many(
        self,
        jobs: Iterable[JobInput],
        *,
        group_id: GroupId = None,
        on_batch: OnBatch | None = None,
        skip_invalid: bool = False,
        keep_sent: bool = False,
        lane: Lane | str = Lane.INTERACTIVE,
    ) -> SendReport:
        """Send jobs in batches of up to ten to the queue of ``lane``; ``jobs`` is read lazily,
        one batch at a time.

        Every job ends up counted as sent or listed as failed: ``Failed`` entries SQS may accept
        later are retried up to ``max_attempts`` times, the rest are reported. A job the worker
        would reject raises :class:`InvalidJob` once the jobs before it are sent (its ``index``
        says which), or, with ``skip_invalid=True``, is reported with code ``InvalidJob`` and
        not sent. A request SQS refuses outright (no queue, no permission) raises the SDK's error;
        the jobs of that batch are then neither counted nor listed.
        """
        report = SendReport()
        queue_url = lane_queue(self.queue_url, self.bulk_queue_url, lane)
        fifo = is_fifo(queue_url)
        batch = Batch(fifo, self.max_bytes)
        refused: list[FailedJob] = []

        def flush() -> None:
            nonlocal batch, refused
            sent, failed = self._send_batch(queue_url, batch) if batch.jobs else ([], [])
            failed = refused + failed
            if sent or failed:
                report.add(sent, failed, keep_sent=keep_sent)
                if on_batch is not None:
                    on_batch(sent, failed)
            batch, refused = Batch(fifo, self.max_bytes), []

        for index, job in enumerate(jobs):
            try:
                prepared = prepare_job(
                    job,
                    index=index,
                    max_bytes=self.max_bytes,
                    encryptor=self._encryptor,
                    normalize_username=self.normalize_username,
                )
            except InvalidJob as invalid:
                if not skip_invalid:
                    flush()
                    raise
                refused.append(FailedJob(invalid.job_id, "InvalidJob", invalid.reason, True, index))
                continue
            group = message_group(prepared.job, group_id) if fifo else None
            if not batch.has_room(prepared, group):
                flush()
            batch.add(prepared, group)
        flush()
        return report

    def _send_batch(self, queue_url: str, batch: Batch) -> tuple[list[SentJob], list[FailedJob]]:
        sent: list[SentJob] = []
        failed: list[FailedJob] = []
        positions = list(range(len(batch.jobs)))
        for attempt in range(1, self.max_attempts + 1):
            answer = self._client.send_message_batch(
                QueueUrl=queue_url, Entries=batch.entries(positions)
            )
            settled = settle(batch, positions, answer, last_attempt=attempt == self.max_attempts)
            sent += settled.sent
            failed += settled.failed
            positions = settled.retry
            if not positions:
                break
            time.sleep(backoff_s(attempt))
        return sent, failed


def _sqs_client(region_name: str | None, endpoint_url: str | None, max_attempts: int) -> Any:
    return boto3.client(
        "sqs",
        region_name=sdk_region(region_name),
        endpoint_url=endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": max_attempts}),
    )
