"""The composition root and lifecycle: builds every part, runs the receive loop, drains on SIGTERM.

The loop receives only as many messages as it has free job slots, so every received message starts
at once and the next receive never waits for the slowest job of the last batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aioboto3
from aiobotocore.config import AioConfig
from aiohttp import web
from botocore.exceptions import ClientError

from worker.cognito.breaker import CircuitBreakers, ConfigurationGuard
from worker.cognito.fleet import (
    DynamoDbRoster,
    FleetMembership,
    Roster,
    SoloRoster,
    fleet_membership,
)
from worker.cognito.gateway import CognitoGateway
from worker.cognito.ratelimit import QuotaCategory, RateLimiter
from worker.operations.emf import EmfEmitter
from worker.operations.health import Check, health_app
from worker.operations.signals import StopSignals
from worker.pipeline.aws_retries import AWS_ERRORS
from worker.pipeline.consumer import MAX_RECEIVE, JobQueue, ReceivedMessage
from worker.pipeline.decisions import RetryPolicy
from worker.pipeline.idempotency import DynamoDbStore, IdempotencyStore, MemoryStore
from worker.pipeline.processor import Disposition, JobProcessor, ProcessorStats
from worker.pipeline.results import ResultPublisher
from worker.settings import IdempotencyBackend, Settings, SettingsError
from worker.telemetry.logs import get_logger
from worker.telemetry.metrics import Metrics

log = get_logger("service")

# How long an SDK call may take before it counts as a transient failure.
CONNECT_TIMEOUT_S = 3
AWS_READ_TIMEOUT_S = 10
# Time after the grace period for handing back unfinished jobs and flushing results, deletes and
# hand-backs: a hard bound, so a stop fits ECS's stopTimeout even while SQS or SNS hang (their
# read timeouts are 10-30 s). The final flush gets at least FLUSH_MIN_S of it.
FLUSH_BUDGET_S = 5.0
FLUSH_MIN_S = 1.0
# Exit codes (2, a bad setting, is the command line's).
EXIT_OK = 0
EXIT_LOOP_DIED = 1
EXIT_CONFIGURATION = 3  # burst mode only: every app client's configuration is broken
# How long free job slots wait for more to free before a receive for fewer than ten.
RECEIVE_FILL_WAIT_S = 0.2
# Receive no more while the pacers hold more than this many seconds of calls waiting: a job
# waiting longer in this task is one another task could start (at the end of a batch, the last
# messages sit in one task's slots while the others idle), and its wait counts against its job
# timeout. Enough for the pacers never to run dry while a receive and its claims are under way
# (tens of milliseconds). Measured in fleet-of-3: 2 s left one task alone for the batch's last
# 3-4 s (92.6 % of the budget over the batch); 1 s, for 1.5-2 s (95.0 %), the same 97 % steady.
RECEIVE_AHEAD_S = 1.0
# How long a long poll may still answer once the worker is told to stop.
STOP_RECEIVE_GRACE_S = 1.0
# The longest pause between receives while SQS fails.
RECEIVE_BACKOFF_CAP_S = 5.0
# Liveness fails when the loop has not gone round for this long beyond a long poll.
LIVENESS_SLACK_S = 60.0
# Readiness fails after this many receives in a row failed; liveness when they fail this long.
RECEIVE_FAILURES_NOT_READY = 2
RECEIVE_FAILING_UNHEALTHY_S = 120.0
# Burst mode: how often it says what it is still waiting for.
BURST_WAITING_LOG_EVERY_S = 10.0


class MessageSource(Protocol):
    """What the receive loop asks of the jobs queue (a :class:`JobQueue` in production)."""

    async def receive(self, max_messages: int, wait_s: int) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages, waiting at most ``wait_s`` for the first."""
        ...

    async def hand_back(self, message: ReceivedMessage, delay_s: int = 0) -> None:
        """Make the message visible again after ``delay_s``."""
        ...

    async def message_counts(self) -> dict[str, int]:
        """The queue's approximate counts: visible, in flight (not visible) and delayed."""
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
        pacer_backlog_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._settings = settings
        self._pacer_backlog_s = pacer_backlog_s
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
        self._receive_failures = 0
        self._receive_failing_since: float | None = None
        self._started_at = time.monotonic()
        self._burst_waiting_logged_at = 0.0
        self.flush_deadline: float | None = None
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
        failing_s = self._receive_failing_s()
        if failing_s is not None and failing_s > RECEIVE_FAILING_UNHEALTHY_S:
            # Running but useless (no credentials, no permission, no queue): a new task may get
            # what this one lacks, and a deployment that never gets healthy is rolled back.
            return Check(
                False,
                {
                    "status": "receive failing",
                    "reason": f"every receive for {failing_s:.0f} s failed",
                    "last_receive_error": self._last_receive_error,
                },
            )
        body: dict[str, Any] = {
            "status": "ok",
            "last_loop_s_ago": round(age, 1),
            "jobs_in_flight": self.jobs_in_flight,
        }
        if self._last_receive_error:
            body["last_receive_error"] = self._last_receive_error
            if failing_s is not None:
                body["receive_failing_s"] = round(failing_s, 1)
        return Check(True, body)

    def _receive_failing_s(self) -> float | None:
        if self._receive_failing_since is None:
            return None
        return time.monotonic() - self._receive_failing_since

    def readiness(self) -> Check:
        """Ready once the clients are up, until the drain begins; not while receives keep failing
        or an app client's breaker is open."""
        if self._stopping.is_set():
            return Check(False, {"status": "draining", "jobs_in_flight": self.jobs_in_flight})
        if not self._ready:
            return Check(False, {"status": "starting"})
        broken = self._guard.reasons()
        if broken:
            return Check(False, {"status": "configuration error", "clients": broken})
        if self._receive_failures >= RECEIVE_FAILURES_NOT_READY:
            return Check(
                False,
                {
                    "status": "receive failing",
                    "reason": self._last_receive_error,
                    "failed_receives": self._receive_failures,
                },
            )
        return Check(True, {"status": "ready", "jobs_in_flight": self.jobs_in_flight})

    # -- lifecycle ----------------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Stop receiving; the drain of jobs in flight follows in :meth:`run`."""
        if self._stopping.is_set():
            return
        # Act first, log after: a log line that cannot be written must not keep the worker going.
        self._stopping.set()
        # Jobs that have not reached Cognito yet go straight back to the queue.
        for task, lane in self._jobs.items():
            if not lane.called_cognito:
                task.cancel()
        log.info("stopping", reason=reason, jobs_in_flight=self.jobs_in_flight)

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
        by_disposition = {
            disposition.value: n for disposition, n in self._processor.stats.by_disposition.items()
        }
        if self._exit_when_idle:
            duration_s = time.monotonic() - self._started_at
            jobs = sum(by_disposition.get(status, 0) for status in _FINAL_STATUSES)
            log.info(
                "burst summary",
                jobs=jobs,
                **{status: by_disposition.get(status, 0) for status in _FINAL_STATUSES},
                handed_back=by_disposition.get("handed_back", 0),
                duration_s=round(duration_s, 1),
                jobs_per_s=round(jobs / duration_s, 1) if duration_s > 0 else 0.0,
            )
        log.info("worker stopped", exit_code=exit_code, **by_disposition)
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
            await self._while_the_pacers_are_behind()
            free = await self._free_slots()
            if free == 0:
                continue
            try:
                messages = await self._receive_unless_stopped(free)
            except AWS_ERRORS as error:
                failures += 1
                # The code or class name only: SDK texts can carry the role ARN and account id,
                # and this goes to the health endpoints.
                self._last_receive_error = error_code(error)
                self._receive_failures = failures
                if self._receive_failing_since is None:
                    self._receive_failing_since = time.monotonic()
                self._last_loop_at = time.monotonic()
                delay = min(RECEIVE_BACKOFF_CAP_S, 0.5 * 2**failures)
                log.warning(
                    "receive failed",
                    error=self._last_receive_error,
                    failed_in_a_row=failures,
                    retry_in_s=delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            failures = 0
            if self._stopping.is_set():
                # Received while told to stop: none of them started, all go straight back.
                await self._hand_back_all(messages)
                return
            self._last_receive_error = None
            self._receive_failures = 0
            self._receive_failing_since = None
            self._last_loop_at = time.monotonic()
            self._start(messages)
            # Burst mode ends when nothing is left anywhere, not merely nothing visible: a message
            # handed back for later, or held by a worker that died, still counts.
            if self._exit_when_idle and not messages and not self._jobs and await self._drained():
                log.info("queue drained", mode="exit-when-idle")
                self.stop("the queue is empty")
                return

    def _say_what_burst_waits_for(self, counts: dict[str, int]) -> None:
        """Burst mode: now and then, say which messages keep it from ending."""
        now = time.monotonic()
        if now - self._burst_waiting_logged_at < BURST_WAITING_LOG_EVERY_S:
            return
        self._burst_waiting_logged_at = now
        log.info(
            "burst mode waiting",
            in_flight_elsewhere=counts.get("ApproximateNumberOfMessagesNotVisible", 0),
            delayed=counts.get("ApproximateNumberOfMessagesDelayed", 0),
            visible=counts.get("ApproximateNumberOfMessages", 0),
            hint="messages held by another consumer or handed back for later; "
            "burst mode ends once none is left",
        )

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
            counts = await self._queue.message_counts()
        except AWS_ERRORS as error:
            log.warning("could not tell whether the queue is drained", error=error_code(error))
            return False
        if any(counts.values()):
            self._say_what_burst_waits_for(counts)
            return False
        return True

    async def _while_the_pacers_are_behind(self) -> None:
        """Wait while the pacers hold more than :data:`RECEIVE_AHEAD_S` of calls (a few seconds
        at most, so liveness keeps ticking)."""
        deadline = time.monotonic() + 5
        while not self._stopping.is_set() and time.monotonic() < deadline:
            behind_s = self._pacer_backlog_s() - RECEIVE_AHEAD_S
            if behind_s <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(behind_s, 0.5))
        self._last_loop_at = time.monotonic()

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
            self.flush_deadline = time.monotonic() + FLUSH_BUDGET_S
            if pending:
                log.warning("grace period over: handing back unfinished jobs", jobs=len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=FLUSH_BUDGET_S)
        if self.flush_deadline is None:
            self.flush_deadline = time.monotonic() + FLUSH_BUDGET_S


_FINAL_STATUSES = ("succeeded", "failed", "rejected")


def error_code(error: BaseException) -> str:
    """An AWS error's code (``AccessDenied``), else its class name (``NoCredentialsError``).

    Never the message: SDK messages can name the role ARN, the account id or an endpoint.
    """
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or type(error).__name__)
    return type(error).__name__


def _sdk_config(read_timeout_s: float, pool_size: int) -> AioConfig:
    # The SDK's own retries are off: the worker's policy owns retries (see pipeline.processor).
    return AioConfig(
        retries={"total_max_attempts": 1},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=read_timeout_s,
        max_pool_connections=pool_size,
    )


@asynccontextmanager
async def _health_server(worker: Worker, host: str, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(health_app(worker, worker.metrics), access_log=None)
    await runner.setup()
    # Loopback by default: the ECS container health check runs inside the container and a
    # sidecar scraper shares the task's network namespace; HEALTH_HOST opens it wider.
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise _listen_error(error, host, port) from None
    log.info("health endpoints listening", host=host, port=site.port)  # the bound port, even for 0
    try:
        yield
    finally:
        await runner.cleanup()


def _listen_error(error: OSError, host: str, port: int) -> SettingsError:
    """One line an operator can act on, naming the setting to change."""
    if error.errno == errno.EADDRINUSE:
        return SettingsError("HEALTH_PORT", f"port {port} on {host} is already in use")
    if error.errno == errno.EACCES:
        return SettingsError("HEALTH_PORT", f"no permission to listen on port {port}")
    reason = error.strerror or type(error).__name__
    return SettingsError("HEALTH_HOST", f"cannot listen on {host} port {port} ({reason})")


async def serve(
    settings: Settings, *, exit_when_idle: bool = False, signals: StopSignals | None = None
) -> int:
    """Build the worker from ``settings``, run it until stopped, and return the exit code.

    Stop signals are heard from the start: one that comes while the clients are being created
    ends the start-up with exit code 0 (there is nothing to drain yet).
    """
    signals = signals or StopSignals()
    signals.attach(asyncio.get_running_loop())
    starting = asyncio.current_task()
    assert starting is not None  # serve() always runs in a task

    def cancel_start_up(_reason: str) -> None:
        starting.cancel()

    signals.on_stop(cancel_start_up)
    try:
        return await _build_and_run(settings, exit_when_idle, signals)
    except asyncio.CancelledError:
        if not signals.received or starting.cancelling() > 1:
            raise
        starting.uncancel()
        log.info("stopped during start-up", reason=signals.reason, exit_code=EXIT_OK)
        return EXIT_OK


async def _build_and_run(settings: Settings, exit_when_idle: bool, signals: StopSignals) -> int:
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
        roster: Roster = SoloRoster()  # no shared store: a fleet of one
        if settings.idempotency_store is IdempotencyBackend.DYNAMODB:
            assert settings.idempotency_table is not None  # checked by the settings
            dynamodb = await stack.enter_async_context(
                session.client("dynamodb", config=_sdk_config(AWS_READ_TIMEOUT_S, pool))
            )
            store = DynamoDbStore(dynamodb, settings.idempotency_table)
            roster = DynamoDbRoster(dynamodb, settings.idempotency_table)
        # The RATE_* settings are the fleet's budgets; the limiter paces at this task's share.
        limiter = RateLimiter(
            {
                QuotaCategory.USER_CREATION: settings.rate_user_creation_rps,
                QuotaCategory.USER_ACCOUNT_RECOVERY: settings.rate_user_account_recovery_rps,
                QuotaCategory.USER_RESOURCE_READ: settings.rate_user_resource_read_rps,
            }
        )
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
            limiter,
            metrics,
        )
        worker = Worker(
            settings,
            queue,
            processor,
            guard,
            metrics,
            exit_when_idle=exit_when_idle,
            pacer_backlog_s=limiter.backlog_s,
        )
        # Flushed on the way out, after the drain, within what is left of the flush budget.
        stack.push_async_callback(_flush, worker, queue, publisher)
        await stack.enter_async_context(
            _health_server(worker, settings.health_host, settings.health_port)
        )
        if _writes_json_logs(settings):
            # CloudWatch metrics through the log pipeline; the last line is written after the drain.
            emitter = EmfEmitter(metrics)
            emitter.start()
            stack.push_async_callback(emitter.close)
        # From here on a signal stops the worker (drain, flush) instead of the start-up.
        signals.on_stop(worker.stop)
        # Joined before the first Cognito call; left after the drain, before the final flush.
        await stack.enter_async_context(
            fleet_membership(FleetMembership(roster, limiter.set_standing))
        )
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


async def _flush(worker: Worker, queue: JobQueue, publisher: ResultPublisher) -> None:
    """Publish pending results, then send the deletes they allow; give up at the deadline.

    Whatever is not sent by then is not lost: an unpublished result's message is not deleted
    either, so SQS redelivers it and the idempotency store answers for it.
    """
    deadline = worker.flush_deadline or time.monotonic() + FLUSH_BUDGET_S
    budget = max(FLUSH_MIN_S, deadline - time.monotonic())

    async def flush_in_order() -> None:
        await publisher.close()
        await queue.close()

    try:
        await asyncio.wait_for(flush_in_order(), budget)
    except TimeoutError:
        log.warning(
            "flush cut short",
            budget_s=round(budget, 1),
            note="a result not published was not deleted either: SQS redelivers its message",
        )
