"""One message's way through the worker: decode, claim, call Cognito, decide, publish, delete.

A message is deleted in exactly one place, :meth:`JobProcessor.process`, after its result was stored
and published. Every other way out hands the message back to SQS, so nothing is lost; and a job id
already done is answered from the idempotency store, so nothing is done twice in effect. What to do
once Cognito has answered is decided by :func:`worker.pipeline.decisions.decide`; this module only
carries decisions out. It is the one place that orders a message's steps; the steps themselves live
beside it: the Cognito calls in :mod:`~worker.pipeline.calls`, the results in
:mod:`~worker.pipeline.endings`, the claim in :mod:`~worker.pipeline.idempotency`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from structlog.contextvars import bound_contextvars

from worker.cognito.breaker import ConfigurationGuard, Recheck
from worker.cognito.gateway import CognitoGateway, request_secrets
from worker.cognito.outcomes import CognitoError, ConfigurationError, TransientError
from worker.cognito.ratelimit import RateLimiter
from worker.contract.fields import (
    FieldDecryptor,
    FieldKeyRefused,
    FieldKeyUnreachable,
    FieldUnreadable,
    dead_letter_body,
    decrypt_job,
    decrypts,
    encrypted_fields,
    plaintext_fields,
)
from worker.contract.jobs import Job, JobResult, JobType, MalformedJob, ResultStatus, decode_job
from worker.pipeline.aws_retries import with_aws_retries
from worker.pipeline.calls import CallsSoFar, CognitoCalls
from worker.pipeline.consumer import Lanes, ReceivedMessage
from worker.pipeline.decisions import (
    CallReport,
    Decision,
    Finish,
    GiveUp,
    HandBack,
    RetryPolicy,
    TripBreaker,
    decide,
)
from worker.pipeline.endings import Ending, finished, rejected, reused
from worker.pipeline.heartbeat import Heartbeat
from worker.pipeline.idempotency import (
    Claim,
    ClaimLost,
    ClaimState,
    IdempotencyStore,
    JobHistory,
    job_key,
    payload_fingerprint,
)
from worker.pipeline.results import ResultPublisher
from worker.settings import AppClient, Settings
from worker.telemetry.logs import get_logger, masking
from worker.telemetry.metrics import Metrics

log = get_logger("processor")
T = TypeVar("T")


class Disposition(StrEnum):
    """What became of one received message."""

    SUCCEEDED = "succeeded"  # result published, message deleted
    FAILED = "failed"  # result published, message deleted
    REJECTED = "rejected"  # not a job: result published, message dead-lettered and deleted
    HANDED_BACK = "handed_back"  # back on the queue for a later delivery, no result yet
    LEFT = "left"  # SQS, SNS or the store kept failing: back when its visibility ends


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One delivery of one message on its way through the processor."""

    message: ReceivedMessage
    received_at: datetime
    on_cognito_call: Callable[[], None]  # told before each Cognito call
    heartbeat: Heartbeat  # started once the job is worked on


class _ClaimTakenOver(Exception):
    """This worker's claim lapsed and another worker owns the job now: leave it to that one."""


@dataclass
class ProcessorStats:
    """Counters for the shutdown line."""

    by_disposition: Counter[Disposition] = field(default_factory=Counter)


class JobProcessor:
    """Takes one received message to its end: a published result and a delete, or a hand-back."""

    def __init__(
        self,
        settings: Settings,
        gateway: CognitoGateway,
        queue: Lanes,
        publisher: ResultPublisher,
        store: IdempotencyStore,
        guard: ConfigurationGuard,
        policy: RetryPolicy,
        limiter: RateLimiter,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._publisher = publisher
        self._store = store
        self._guard = guard
        self._policy = policy
        self._metrics = metrics
        self._calls = CognitoCalls(gateway, limiter, policy, metrics)
        self.stats = ProcessorStats()
        keys = settings.field_encryption_key_arns
        self._decryptor = FieldDecryptor(keys) if keys else None

    async def process(
        self, message: ReceivedMessage, on_cognito_call: Callable[[], None] = lambda: None
    ) -> Disposition:
        """Handle one message and say what became of it.

        ``on_cognito_call`` runs before each Cognito call, so the service knows which jobs it may
        still hand back untouched when it is told to stop.
        """
        with bound_contextvars(message_id=message.message_id):
            return await self._process(message, on_cognito_call)

    async def _process(
        self, message: ReceivedMessage, on_cognito_call: Callable[[], None]
    ) -> Disposition:
        heartbeat = Heartbeat(
            self._queue,
            self._store,
            message,
            visibility_s=self._settings.visibility_timeout_s,
            lease_s=self._settings.idempotency_lease_s,
        )
        delivery = _Delivery(message, datetime.now(UTC), on_cognito_call, heartbeat)
        started = time.monotonic()
        result: JobResult | None = None
        disposition = Disposition.HANDED_BACK
        published = False
        deleting: asyncio.Future[None] | None = None
        try:
            ending = await self._ending_of(delivery)
            if ending is None:
                return disposition
            # The lane it came in on now (a stored result may be another delivery's).
            result = ending.result.model_copy(update={"lane": message.lane})
            await self._retrying(lambda: self._publisher.publish(result))
            published = True
            disposition = Disposition(result.status.value)
            if ending.dead_letter_reason is not None:
                if not self._queue.has_dead_letter_queue(message):
                    # No DLQ of ours: the queue's redrive policy moves it after maxReceiveCount.
                    return disposition
                await self._dead_letter(message, ending.result, ending.dead_letter_reason)
            # A task of its own: told to stop meanwhile, the stop waits for this same delete
            # rather than send a second one for the same receipt handle.
            deleting = asyncio.ensure_future(self._retrying(lambda: self._queue.delete(message)))
            await asyncio.shield(deleting)
            return disposition
        except asyncio.CancelledError:
            await self._settle_on_stop(heartbeat, message, published, deleting)
            raise
        except _ClaimTakenOver:
            # Another worker owns the job now and answers for it: its result, its delete.
            disposition = Disposition.LEFT
            log.warning(
                "job left to its current owner",
                reason="this worker's claim lapsed and another worker claimed the job",
            )
            return disposition
        except Exception as error:
            # SQS, SNS or the store kept failing: the message comes back when its visibility ends,
            # and a stored result is republished then without calling Cognito again.
            disposition = Disposition.LEFT
            log.error(
                "job left on the queue",
                reason=f"{type(error).__name__}: {error}",
                published=published,
            )
            return disposition
        finally:
            self.stats.by_disposition[disposition] += 1
            if result is not None:
                self._log_finished(result, published, started)

    async def _dead_letter(self, message: ReceivedMessage, result: JobResult, reason: str) -> None:
        letter = message
        if result.status is ResultStatus.REJECTED:
            # Never redriven as it is: no plaintext password or code is kept at rest.
            letter = replace(message, body=dead_letter_body(message.body))
        await self._retrying(lambda: self._queue.dead_letter(letter, reason))

    async def _settle_on_stop(
        self,
        heartbeat: Heartbeat,
        message: ReceivedMessage,
        published: bool,
        deleting: asyncio.Future[None] | None,
    ) -> None:
        """Told to stop: a published result still gets its delete, anything else goes back."""
        await asyncio.shield(heartbeat.stop())
        if deleting is None:
            settle = self._queue.delete if published else self._queue.hand_back
            deleting = asyncio.ensure_future(settle(message))
        try:
            await asyncio.shield(deleting)
        except Exception as error:
            # SQS refused; the message comes back when its visibility ends, and its job
            # is answered again from the idempotency store.
            log.warning("message left on the queue while stopping", error=type(error).__name__)

    async def _ending_of(self, delivery: _Delivery) -> Ending | None:
        """How the job ends, or None when the message was handed back for a later delivery."""
        try:
            job = decode_job(delivery.message.body)
        except MalformedJob as malformed:
            return rejected(
                delivery, malformed.reason, malformed.job_id, malformed.job_type, None,
                batch=malformed.batch,
            )  # fmt: skip
        job_id = job.job_id or delivery.message.message_id
        job_type = JobType(job.type)
        if self._settings.require_encrypted_fields and plaintext_fields(job):
            # The rule's point is that no plaintext secret rests anywhere: no DLQ copy either.
            return rejected(
                delivery,
                f"{', '.join(plaintext_fields(job))}: sent in plaintext; this worker requires "
                "secret fields encrypted (REQUIRE_ENCRYPTED_FIELDS)",
                job_id,
                job_type,
                job.client_id,
                batch=job.batch,
                code="PlaintextSecretField",
                dead_letter=False,
            )
        app_client = self._settings.client(job.client_id)
        if app_client is None:
            return rejected(
                delivery,
                f"client_id: {job.client_id!r} is not a configured app client",
                job_id,
                job_type,
                job.client_id,
                batch=job.batch,
            )
        if not self._settings.accepts(app_client, job_type):
            accepted = ", ".join(t.value for t in self._settings.job_types_of(app_client))
            return rejected(
                delivery,
                f"type: {job_type.value} is not accepted on this queue for this client "
                f"(accepted: {accepted}; see ACCEPTED_JOB_TYPES)",
                job_id,
                job_type,
                app_client.client_id,
                batch=job.batch,
                code="JobTypeNotAccepted",
            )
        with bound_contextvars(job_id=job_id, type=job.type, client_id=app_client.client_id):
            return await self._ending_of_job(job, job_id, app_client, delivery)

    async def _ending_of_job(
        self, job: Job, job_id: str, app_client: AppClient, delivery: _Delivery
    ) -> Ending | None:
        client_id = app_client.client_id
        if self._guard.is_open(client_id):
            # Our configuration is broken for this client: the job is not to blame.
            await self._hand_back(
                delivery, self._guard.hand_back_delay_s(client_id), "breaker_open"
            )
            return None
        # From here on the job is being worked on: its message stays invisible, also while KMS
        # decrypts its fields (a slow KMS must not hand it to another consumer meanwhile).
        async with delivery.heartbeat:
            if encrypted_fields(job):
                decrypted = await self._decrypted(job, job_id, app_client, delivery)
                if decrypted is None or isinstance(decrypted, Ending):
                    return decrypted
                job = decrypted
            # From here the plaintexts (decrypted or sent so) are masked in every log line; the
            # decrypted job is dropped with this frame, once the result is known.
            with masking(request_secrets(job, app_client)):
                return await self._ending_of_plain_job(job, job_id, app_client, delivery)

    async def _decrypted(
        self, job: Job, job_id: str, app_client: AppClient, delivery: _Delivery
    ) -> Job | Ending | None:
        """The job with its fields decrypted; or its rejection; or None when handed back.

        A field no accepted key opens is the message's fault (rejected, so it cannot hold the
        client up); only KMS refusing a key the worker accepts is the deployment's (the breaker).
        """
        client_id = app_client.client_id
        try:
            if self._decryptor is None:
                raise FieldUnreadable(
                    f"{', '.join(encrypted_fields(job))}: encrypted, and this worker accepts no "
                    "KMS key (FIELD_ENCRYPTION_KEY_ARNS is not set)"
                )
            # The SDK is synchronous and may call KMS: off the event loop.
            return await asyncio.to_thread(decrypt_job, job, self._decryptor)
        except FieldUnreadable as error:
            log.warning("encrypted field refused", reason=str(error))
            return rejected(
                delivery, str(error), job_id, JobType(job.type), job.client_id,
                batch=job.batch, code="UndecryptableField",
            )  # fmt: skip
        except FieldKeyRefused as error:
            refused = ConfigurationError("FieldDecryptionRefused", str(error))
            # The Cognito probe cannot see KMS: the breaker closes only once this job's
            # ciphertext decrypts again.
            assert self._decryptor is not None  # refusals come from KMS, through the decryptor
            delay_s = self._guard.trip(client_id, refused, decryption_recheck(job, self._decryptor))
            await self._hand_back(delivery, delay_s, None, refused)
            return None
        except FieldKeyUnreachable as error:
            unreachable = TransientError("KMSUnavailable", str(error), ambiguous=False)
            delay_s = self._policy.redelivery_delay_s(delivery.message.receive_count)
            await self._hand_back(delivery, delay_s, None, unreachable)
            return None

    async def _ending_of_plain_job(
        self, job: Job, job_id: str, app_client: AppClient, delivery: _Delivery
    ) -> Ending | None:
        client_id = app_client.client_id
        key = job_key(client_id, job_id)
        secret = app_client.client_secret
        fingerprint = payload_fingerprint(job, secret.get_secret_value() if secret else None)
        claim = await self._retrying(
            lambda: self._store.claim(key, self._settings.idempotency_lease_s, fingerprint)
        )
        if claim.state is ClaimState.BUSY:
            await self._hand_back(delivery, math.ceil(claim.lease_left_s) + 1, "owned_elsewhere")
            return None
        if claim.fingerprint not in (None, fingerprint):
            # The id names another job: never answer it with that job's result, never run it.
            if claim.state is ClaimState.OWNED:
                await self._retrying(lambda: self._store.release(key, claim.token, claim.history))
            log.warning("job id reused for a different job: refused")
            return Ending(reused(job, job_id, app_client, delivery))
        if claim.state is ClaimState.COMPLETED:
            assert claim.result is not None
            log.info("duplicate delivery: republishing the stored result")
            return Ending(JobResult.model_validate_json(claim.result))

        delivery.heartbeat.hold(key, claim.token)
        # Whether Cognito may already have acted on this job starts from the earlier deliveries.
        so_far = CallsSoFar(list(claim.history.done), claim.history.may_have_acted)
        try:
            report = await self._calls.make(
                job, job_id, app_client, so_far,
                sent_at=delivery.message.sent_at or 0.0, on_call=delivery.on_cognito_call,
                lane=delivery.message.lane,
            )  # fmt: skip
        except asyncio.CancelledError:
            # Stopped mid-job (not the job's fault: nothing counted against it). The claim is
            # freed at once for the next delivery, told what this one did: whether a request left
            # (a job stopped while waiting for the pacer sent none), and the calls carried out.
            stopped = replace(
                claim.history, may_have_acted=so_far.may_have_acted, done=tuple(so_far.done)
            )
            await asyncio.shield(self._release_on_stop(delivery, key, claim.token, stopped))
            raise
        await delivery.heartbeat.stop()
        decision = decide(
            report, job_type=JobType(job.type), history=claim.history, policy=self._policy
        )
        return await self._carry_out(decision, report, job, job_id, app_client, delivery, claim)

    async def _release_on_stop(
        self, delivery: _Delivery, key: str, token: str, history: JobHistory
    ) -> None:
        await delivery.heartbeat.stop()
        await self._store.release(key, token, history)

    async def _carry_out(
        self,
        decision: Decision,
        report: CallReport,
        job: Job,
        job_id: str,
        app_client: AppClient,
        delivery: _Delivery,
        claim: Claim,
    ) -> Ending | None:
        """Do what ``decision`` says: the job's ending, or None once its message is handed back."""
        client_id = app_client.client_id
        key = job_key(client_id, job_id)
        if isinstance(decision, GiveUp) and not self._queue.has_dead_letter_queue(delivery.message):
            # No DLQ of ours to move it to: the queue's redrive policy will.
            failures = claim.history.failures + 1
            delay_s = self._policy.redelivery_delay_s(failures)
            decision = HandBack(
                delay_s, decision.error, replace(decision.history, failures=failures)
            )
        if isinstance(decision, Finish | GiveUp):
            outcome = decision.outcome if isinstance(decision, Finish) else decision.error
            result = finished(job, job_id, app_client, delivery, report.attempts, outcome)
            if isinstance(decision, GiveUp):
                # Not stored as done: a redrive from the DLQ runs the job afresh.
                history = decision.history
                await self._retrying(lambda: self._store.release(key, claim.token, history))
                reason = (
                    f"{decision.error.code}: transient errors in "
                    f"{self._policy.max_failed_deliveries} deliveries"
                )
                return Ending(result, dead_letter_reason=reason)
            self._guard.succeeded(client_id)
            try:
                await self._retrying(
                    lambda: self._store.complete(
                        key, claim.token, result.to_message(), self._settings.idempotency_ttl_s
                    )
                )
            except ClaimLost:
                raise _ClaimTakenOver from None
            return Ending(result)
        await self._retrying(lambda: self._store.release(key, claim.token, decision.history))
        if isinstance(decision, TripBreaker):
            delay_s = self._guard.trip(client_id, decision.error)
            await self._hand_back(delivery, delay_s, None, decision.error, report)
        else:
            await self._hand_back(delivery, decision.delay_s, None, decision.error, report)
        return None

    async def _hand_back(
        self,
        delivery: _Delivery,
        delay_s: int,
        reason: str | None,
        error: CognitoError | None = None,
        report: CallReport | None = None,
    ) -> None:
        """Give the message back to SQS for a later delivery (its heartbeat stopped first)."""
        await delivery.heartbeat.stop()
        message = delivery.message
        self._metrics.handed_back.labels(
            reason or (error.code if error is not None else "unknown")
        ).inc()
        level = log.error if isinstance(error, ConfigurationError) else log.warning
        level(
            "job handed back to the queue",
            reason=reason or (type(error).__name__ if error else None),
            error_class=type(error).__name__ if error else None,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            attempts=report.attempts if report else 0,
            receive_count=message.receive_count,
            visible_again_in_s=delay_s,
        )
        await self._retrying(lambda: self._queue.hand_back(message, delay_s))

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """An SQS, SNS or store call, retried through brief outages inside the visibility."""
        return await with_aws_retries(call, within_s=self._settings.visibility_timeout_s / 3)

    def _log_finished(self, result: JobResult, published: bool, started: float) -> None:
        self._metrics.jobs.labels(
            result.type.value if result.type else "unknown", result.status.value
        ).inc()
        self._metrics.lane_jobs.labels(result.lane.value, result.status.value).inc()
        if published:
            self._metrics.job_latency.observe(time.monotonic() - started)
        log.info(
            "job finished",
            job_id=result.job_id,
            type=result.type.value if result.type else None,
            client_id=result.client_id,
            lane=result.lane.value,
            status=result.status.value,
            error_code=result.error.code if result.error else None,
            detail=result.detail,
            attempts=result.attempts,
            # From the start of the job's processing to its delete sent: beyond the result's own
            # received_at to finished_at, its publish and the delete's batch (BATCH_LINGER_S).
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            published=published,
        )


def decryption_recheck(job: Job, decryptor: FieldDecryptor) -> Recheck:
    """The breaker's recheck after a KMS refusal: does this job's ciphertext decrypt now?

    It holds the job as received (ciphertext only). Raise :class:`ConfigurationError` while KMS
    still refuses; let :class:`FieldKeyUnreachable` through (it proves nothing either way); return
    when KMS decrypts, even if the field then proves unreadable: the key and the permission are
    sound, and the job itself is rejected on its next delivery.
    """

    async def recheck() -> None:
        try:
            # The plaintexts stay in the thread that makes them (see contract.fields.decrypts).
            await asyncio.to_thread(decrypts, job, decryptor)
        except FieldKeyRefused as error:
            raise ConfigurationError("FieldDecryptionRefused", str(error)) from None
        except FieldUnreadable:
            return

    return recheck
