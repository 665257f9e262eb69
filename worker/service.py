"""The composition root and lifecycle: builds every part, runs the receive loop, drains on SIGTERM.

The loop receives only as many messages as it has free job slots, so every received message starts
at once and the next receive never waits for the slowest job of the last batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aioboto3
from aiobotocore.config import AioConfig
from aiohttp import web

from worker.aws_retries import AWS_ERRORS
from worker.breaker import CircuitBreakers, ConfigurationGuard
from worker.cognito import CognitoGateway
from worker.consumer import MAX_RECEIVE, JobQueue, ReceivedMessage
from worker.decisions import RetryPolicy
from worker.emf import EmfEmitter
from worker.health import Check, health_app
from worker.idempotency import DynamoDbStore, IdempotencyStore, MemoryStore
from worker.logs import get_logger
from worker.metrics import Metrics
from worker.processor import Disposition, JobProcessor, ProcessorStats
from worker.ratelimit import QuotaCategory, RateLimiter
from worker.results import ResultPublisher
from worker.settings import IdempotencyBackend, Settings

log = get_logger("service")

# How long an SDK call may take before it counts as a transient failure.
CONNECT_TIMEOUT_S = 3
AWS_READ_TIMEOUT_S = 10
# Time left after the drain for flushing results, deletes and hand-backs.
FLUSH_BUDGET_S = 5.0
# Exit codes (2, a bad setting, is the command line's).
EXIT_OK = 0
EXIT_LOOP_DIED = 1
EXIT_CONFIGURATION = 3  # burst mode only: every app client's configuration is broken
# How long free job slots wait for more to free before a receive for fewer than ten.
RECEIVE_FILL_WAIT_S = 0.2
# How long a long poll may still answer once the worker is told to stop.
STOP_RECEIVE_GRACE_S = 1.0
# The longest pause between receives while SQS fails.
RECEIVE_BACKOFF_CAP_S = 5.0
# Liveness fails when the loop has not gone round for this long beyond a long poll.
LIVENESS_SLACK_S = 60.0


class MessageSource(Protocol):
    """What the receive loop asks of the jobs queue (a :class:`JobQueue` in production)."""

    async def receive(self, max_messages: int, wait_s: int) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages, waiting at most ``wait_s`` for the first."""
        ...

    async def hand_back(self, message: ReceivedMessage, delay_s: int = 0) -> None:
        """Make the message visible again after ``delay_s``."""
        ...

    async def is_drained(self) -> bool:
        """Whether the queue holds nothing at all, visible, in flight or delayed."""
        ...


class MessageHandler(Protocol):
    """What the receive loop asks of the processor (a :class:`JobProcessor` in production)."""

    stats: ProcessorStats

    async def process(
        self, message: ReceivedMessage, on_cognito_call: Callable[[], None]
    ) -> Disposition:
        """Take one message to its end and say what became of it."""
        ...


@dataclass
class _Lane:
    """The messages one task works through in order: one, or a FIFO group's messages."""

    messages: list[ReceivedMessage]
    called_cognito: bool = False


class Worker:
    """The receive loop, its jobs in flight, and their orderly stop."""

    def __init__(
        self,
        settings: Settings,
        queue: MessageSource,
        processor: MessageHandler,
        guard: ConfigurationGuard,
        metrics: Metrics,
        *,
        exit_when_idle: bool = False,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._processor = processor
        self._guard = guard
        self.metrics = metrics
        self._exit_when_idle = exit_when_idle
        self._jobs: dict[asyncio.Task[None], _Lane] = {}
        self._fifo = settings.jobs_queue_url.endswith(".fifo")
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_loop_at = time.monotonic()
        self._last_receive_error: str | None = None
        self._ready = False
        self._gave_up_on_configuration = False

    @property
    def jobs_in_flight(self) -> int:
        """Messages received and not yet finished."""
        return sum(len(lane.messages) for lane in self._jobs.values())

    # -- probes -----------------------------------------------------------------------------
    def liveness(self) -> Check:
        """Alive while the receive loop runs and has gone round recently."""
        age = time.monotonic() - self._last_loop_at
        stale_after = self._settings.receive_wait_s + LIVENESS_SLACK_S
        task = self._loop_task
        if task is None or task.done():
            if self._stopping.is_set() and task is not None and not task.cancelled():
                exception = task.exception()
                if exception is None:
                    return Check(
                        True, {"status": "stopping", "jobs_in_flight": self.jobs_in_flight}
                    )
            return Check(False, {"status": "dead", "reason": "the receive loop is not running"})
        if age > stale_after:
            return Check(
                False,
                {"status": "stale", "reason": f"the receive loop last ran {age:.0f} s ago"},
            )
        body: dict[str, Any] = {
            "status": "ok",
            "last_loop_s_ago": round(age, 1),
            "jobs_in_flight": self.jobs_in_flight,
        }
        if self._last_receive_error:
            body["last_receive_error"] = self._last_receive_error
        return Check(True, body)

    def readiness(self) -> Check:
        """Ready once the clients are up, until the drain begins."""
        if self._stopping.is_set():
            return Check(False, {"status": "draining", "jobs_in_flight": self.jobs_in_flight})
        if not self._ready:
            return Check(False, {"status": "starting"})
        broken = self._guard.reasons()
        if broken:
            return Check(False, {"status": "configuration error", "clients": broken})
        return Check(True, {"status": "ready", "jobs_in_flight": self.jobs_in_flight})

    # -- lifecycle ----------------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Stop receiving; the drain of jobs in flight follows in :meth:`run`."""
        if self._stopping.is_set():
            return
        log.info("stopping", reason=reason, jobs_in_flight=self.jobs_in_flight)
        self._stopping.set()
        # Jobs that have not reached Cognito yet go straight back to the queue.
        for task, lane in self._jobs.items():
            if not lane.called_cognito:
                task.cancel()

    async def run(self) -> int:
        """Receive and process until stopped (or idle, in burst mode); return the exit code."""
        self._ready = True
        self._loop_task = asyncio.create_task(self._receive_loop())
        exit_code = EXIT_OK
        try:
            await self._loop_task
        except asyncio.CancelledError:
            raise
        except Exception:
            # A dead loop must take the process down so ECS replaces it.
            log.exception("the receive loop died")
            exit_code = EXIT_LOOP_DIED
            self.stop("the receive loop died")
        await self._drain()
        if exit_code == EXIT_OK and self._gave_up_on_configuration:
            exit_code = EXIT_CONFIGURATION
        log.info(
            "worker stopped",
            exit_code=exit_code,
            **{
                disposition.value: n
                for disposition, n in self._processor.stats.by_disposition.items()
            },
        )
        return exit_code

    async def _receive_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            await self._guard.probe_due()
            if self._guard.all_open():
                # No client can take work: receive nothing, so no job burns a receive count.
                self._last_loop_at = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
                if self._exit_when_idle and not self._jobs:
                    # Burst mode: nothing can be done until an operator fixes the configuration.
                    self._gave_up_on_configuration = True
                    self.stop("every app client's circuit breaker is open")
                continue
            free = await self._free_slots()
            if free == 0:
                continue
            try:
                messages = await self._receive_unless_stopped(free)
            except AWS_ERRORS as error:
                failures += 1
                self._last_receive_error = f"{type(error).__name__}: {error}"
                self._last_loop_at = time.monotonic()
                delay = min(RECEIVE_BACKOFF_CAP_S, 0.5 * 2**failures)
                log.warning("receive failed", error=self._last_receive_error, retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            failures = 0
            if self._stopping.is_set():
                # Received while told to stop: none of them started, all go straight back.
                await self._hand_back_all(messages)
                return
            self._last_receive_error = None
            self._last_loop_at = time.monotonic()
            self._start(messages)
            # Burst mode ends when nothing is left anywhere, not merely nothing visible: a message
            # handed back for later, or held by a worker that died, still counts.
            if self._exit_when_idle and not messages and not self._jobs and await self._drained():
                log.info("queue drained", mode="exit-when-idle")
                self.stop("the queue is empty")
                return

    async def _receive_unless_stopped(self, free: int) -> list[ReceivedMessage]:
        """Receive; when told to stop during a long poll, give it a moment, then abandon it.

        Abandoning a long poll that is about to answer would hide its messages for the whole
        visibility timeout, so a poll that answers within the moment is taken and handed back.
        """
        receive = asyncio.ensure_future(
            self._queue.receive(min(MAX_RECEIVE, free), self._settings.receive_wait_s)
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not receive.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(receive), STOP_RECEIVE_GRACE_S)
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receive
            return []
        return receive.result()

    async def _drained(self) -> bool:
        try:
            return await self._queue.is_drained()
        except AWS_ERRORS as error:
            log.warning("could not tell whether the queue is drained", error=str(error))
            return False

    async def _free_slots(self) -> int:
        """Wait for free job slots: enough for a full receive, or a few after a short while.

        Receiving as soon as one slot frees would make every receive a one-message request;
        waiting a moment for ten keeps SQS requests per job low at a small cost in latency.
        Returns within a few seconds at most, so liveness keeps ticking.
        """
        full = min(MAX_RECEIVE, self._settings.max_jobs_in_flight)
        first_free_at: float | None = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self._stopping.is_set():
            free = self._settings.max_jobs_in_flight - self.jobs_in_flight
            now = time.monotonic()
            if free > 0 and first_free_at is None:
                first_free_at = now
            if free >= full or (
                first_free_at is not None and now - first_free_at >= RECEIVE_FILL_WAIT_S
            ):
                return free
            self._slot_freed.clear()
            wait = RECEIVE_FILL_WAIT_S if first_free_at is not None else deadline - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), max(0.0, wait))
        self._last_loop_at = time.monotonic()
        return max(0, self._settings.max_jobs_in_flight - self.jobs_in_flight)

    def _start(self, messages: list[ReceivedMessage]) -> None:
        """One task per message; on a FIFO queue, one task per message group, in order."""
        if not self._fifo:
            for message in messages:
                self._start_lane(_Lane([message]))
            return
        groups: dict[str, list[ReceivedMessage]] = {}
        for message in messages:
            groups.setdefault(message.group_id or message.message_id, []).append(message)
        for group in groups.values():
            self._start_lane(_Lane(group))

    def _start_lane(self, lane: _Lane) -> None:
        task = asyncio.create_task(self._work_through(lane))
        self._jobs[task] = lane
        self.metrics.jobs_in_flight.set(self.jobs_in_flight)
        task.add_done_callback(self._job_done)

    async def _work_through(self, lane: _Lane) -> None:
        def mark_called() -> None:
            lane.called_cognito = True

        while lane.messages:
            lane.called_cognito = False
            try:
                disposition = await self._processor.process(lane.messages[0], mark_called)
            except asyncio.CancelledError:
                # Every message of the lane goes back, the current one too: the task may have
                # been cancelled before the processor ever saw it. (A second hand-back of a
                # message the processor already dealt with changes nothing.)
                await asyncio.shield(self._hand_back_all(lane.messages))
                raise
            lane.messages.pop(0)
            if disposition in (Disposition.HANDED_BACK, Disposition.LEFT) and lane.messages:
                # FIFO: a message that did not finish holds back the later ones of its group,
                # which go back in order behind it.
                await self._hand_back_all(lane.messages)
                lane.messages.clear()

    async def _hand_back_all(self, messages: list[ReceivedMessage]) -> None:
        if messages:
            await asyncio.gather(
                *(self._queue.hand_back(message, 0) for message in messages),
                return_exceptions=True,
            )

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.pop(task, None)
        self.metrics.jobs_in_flight.set(self.jobs_in_flight)
        self._slot_freed.set()

    async def _drain(self) -> None:
        """Let jobs in flight finish within the grace period; hand back the rest; flush."""
        grace = self._settings.shutdown_grace_s
        if self._jobs:
            log.info("draining", jobs_in_flight=self.jobs_in_flight, grace_s=grace)
            _, pending = await asyncio.wait(list(self._jobs), timeout=grace)
            if pending:
                log.warning("grace period over: handing back unfinished jobs", jobs=len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=FLUSH_BUDGET_S)


def _sdk_config(read_timeout_s: float, pool_size: int) -> AioConfig:
    # The SDK's own retries are off: the worker's policy owns retries (see worker.processor).
    return AioConfig(
        retries={"total_max_attempts": 1},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=read_timeout_s,
        max_pool_connections=pool_size,
    )


@asynccontextmanager
async def _health_server(worker: Worker, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(health_app(worker, worker.metrics), access_log=None)
    await runner.setup()
    # All interfaces: the ECS health check and the load balancer reach the task from outside.
    site = web.TCPSite(runner, "0.0.0.0", port)  # noqa: S104
    await site.start()
    log.info("health endpoints listening", port=site.port)  # the bound port, even for 0
    try:
        yield
    finally:
        await runner.cleanup()


async def serve(settings: Settings, *, exit_when_idle: bool = False) -> int:
    """Build the worker from ``settings``, run it until stopped, and return the exit code."""
    session = aioboto3.Session(region_name=settings.aws_region)
    pool = settings.max_jobs_in_flight + 4
    async with AsyncExitStack() as stack:
        # One Cognito client per Region of the configured pools (a pool id starts with its Region).
        cognito = {
            region: await stack.enter_async_context(
                session.client(
                    "cognito-idp",
                    region_name=region,
                    config=_sdk_config(settings.cognito_read_timeout_s, pool),
                )
            )
            for region in sorted({client.region for client in settings.cognito_clients})
        }
        sqs = await stack.enter_async_context(
            session.client("sqs", config=_sdk_config(settings.receive_wait_s + 10, pool))
        )
        sns = await stack.enter_async_context(
            session.client("sns", config=_sdk_config(AWS_READ_TIMEOUT_S, pool))
        )
        metrics = Metrics()

        def observe(call: str, size: int) -> None:
            metrics.aws_requests.labels(call).inc()
            if call != "GetQueueAttributes":
                metrics.batch_size.labels(call).observe(size)

        queue = JobQueue(
            sqs,
            settings.jobs_queue_url,
            dead_letter_queue_url=settings.dead_letter_queue_url,
            visibility_timeout_s=settings.visibility_timeout_s,
            linger_s=settings.batch_linger_s,
            observe=observe,
        )
        publisher = ResultPublisher(
            sns, settings.results_topic_arn, linger_s=settings.batch_linger_s, observe=observe
        )
        store: IdempotencyStore = MemoryStore()
        if settings.idempotency_store is IdempotencyBackend.DYNAMODB:
            assert settings.idempotency_table is not None  # checked by the settings
            dynamodb = await stack.enter_async_context(
                session.client("dynamodb", config=_sdk_config(AWS_READ_TIMEOUT_S, pool))
            )
            store = DynamoDbStore(dynamodb, settings.idempotency_table)
        gateway = CognitoGateway(cognito)
        guard = ConfigurationGuard(
            settings.cognito_clients,
            CircuitBreakers(settings.breaker_cooldown_s, settings.breaker_max_cooldown_s),
            gateway,
            metrics,
        )
        processor = JobProcessor(
            settings,
            gateway,
            queue,
            publisher,
            store,
            guard,
            RetryPolicy.from_settings(settings),
            RateLimiter(
                {
                    QuotaCategory.USER_CREATION: settings.rate_user_creation_rps,
                    QuotaCategory.USER_ACCOUNT_RECOVERY: settings.rate_user_account_recovery_rps,
                    QuotaCategory.USER_RESOURCE_READ: settings.rate_user_resource_read_rps,
                }
            ),
            metrics,
        )
        worker = Worker(settings, queue, processor, guard, metrics, exit_when_idle=exit_when_idle)
        # Flushed on the way out, after the drain: results first, then the deletes they allow.
        stack.push_async_callback(queue.close)
        stack.push_async_callback(publisher.close)
        await stack.enter_async_context(_health_server(worker, settings.health_port))
        if _writes_json_logs(settings):
            # CloudWatch metrics through the log pipeline; the last line is written after the drain.
            emitter = EmfEmitter(metrics)
            emitter.start()
            stack.push_async_callback(emitter.close)
        _install_signal_handlers(worker)
        log.info(
            "worker started",
            queue=settings.jobs_queue_url,
            clients=[client.client_id for client in settings.cognito_clients],
            max_jobs_in_flight=settings.max_jobs_in_flight,
        )
        return await worker.run()
    raise AssertionError("unreachable")  # pragma: no cover - the stack always re-raises or returns


def _writes_json_logs(settings: Settings) -> bool:
    """EMF lines belong in JSON logs only: a terminal's console log is for people."""
    log_format = settings.log_format.value
    return log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())


def _install_signal_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) > 1:
            # A second signal means "now": no drain, no flush. SQS redelivers what was in flight.
            log.warning("second signal: exiting at once", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        worker.stop(f"{signal.Signals(signum).name} received")

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
