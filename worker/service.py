"""The composition root and lifecycle: builds every part, runs the receive loops, drains on SIGTERM.

Each lane (the jobs queue, and the bulk jobs queue when there is one) has a receive loop of its
own. A loop receives only as many messages as there are free job slots, so every received message
starts at once and the next receive never waits for the slowest job of the last batch. The bulk
loop leaves :data:`INTERACTIVE_SLOTS` slots to the interactive one and receives only while the
pacers hold less than :data:`RECEIVE_AHEAD_S` of calls: no bulk message waits in memory for
long, and none stands between a live job and its slot (the pacers put live calls first).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aioboto3
import aiobotocore.session
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
from worker.cognito.limit_watch import EnforcedLimitsWatch, enforced_limits_watch
from worker.cognito.limits import teach_provisioned_limits
from worker.cognito.ratelimit import QuotaCategory, RateLimiter
from worker.contract.jobs import JobResult, Lane
from worker.operations.emf import EmfEmitter
from worker.operations.health import Check, health_app
from worker.operations.signals import StopSignals
from worker.pipeline.aws_retries import AWS_ERRORS
from worker.pipeline.batching import MAX_BATCH
from worker.pipeline.consumer import MAX_RECEIVE, JobQueue, Lanes, ReceivedMessage
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
# Burst mode: turns of a lane's receive loop in a row that must find it empty before it ends.
EMPTY_TURNS_TO_DRAIN = 2
# How long free job slots wait for more to free before a receive for fewer than ten.
RECEIVE_FILL_WAIT_S = 0.2
# Receive no more while the pacers hold more than this many seconds of calls waiting: a job
# waiting longer in this task is one another task could start (at the end of a batch, the last
# messages sit in one task's slots while the others idle), and its wait counts against its job
# timeout. Enough for the pacers never to run dry while a receive and its claims are under way
# (tens of milliseconds). Measured in fleet-of-3: 2 s left one task alone for the batch's last
# 3-4 s (92.6 % of the budget over the batch); 1 s, for 1.5-2 s (95.0 %), the same 97 % steady.
RECEIVE_AHEAD_S = 1.0
# Job slots the bulk lane never takes (at most half of MAX_JOBS_IN_FLIGHT): an interactive job
# always finds one free, whatever an import has in flight.
INTERACTIVE_SLOTS = 10
# How long a long poll may still answer once the worker is told to stop.
STOP_RECEIVE_GRACE_S = 1.0
# The longest pause between receives while SQS fails.
RECEIVE_BACKOFF_CAP_S = 5.0
# Liveness fails when the loop has not gone round for this long beyond a long poll.
LIVENESS_SLACK_S = 60.0
# Readiness fails after this many receives in a row failed; liveness when they fail this long.
RECEIVE_FAILURES_NOT_READY = 2
RECEIVE_FAILING_UNHEALTHY_S = 120.0
# The probe of every app client at start, before the first receive: short, so that a Cognito out
# of reach delays the start by this much at most (the ECS health check's start period is 20 s).
START_PROBE_TIMEOUT_S = 5.0
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
class _Strand:
    """The messages one task works through in order: one, or a FIFO group's messages."""

    messages: list[ReceivedMessage]
    lane: Lane
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
        bulk: MessageSource | None = None,
        exit_when_idle: bool = False,
        pacer_backlog_s: Callable[[Lane | None], float] = lambda _lane: 0.0,
        pacer_rate_rps: Callable[[], float] = lambda: math.inf,
    ) -> None:
        self._settings = settings
        self._pacer_backlog_s = pacer_backlog_s
        self._pacer_rate_rps = pacer_rate_rps
        self._sources = {Lane.INTERACTIVE: queue}
        self._fifo = {Lane.INTERACTIVE: settings.jobs_queue_url.endswith(".fifo")}
        if bulk is not None:
            self._sources[Lane.BULK] = bulk
            self._fifo[Lane.BULK] = (settings.bulk_jobs_queue_url or "").endswith(".fifo")
        self._processor = processor
        self._guard = guard
        self.metrics = metrics
        self._exit_when_idle = exit_when_idle
        self._jobs: dict[asyncio.Task[None], _Strand] = {}
        self._slot_freed = {lane: asyncio.Event() for lane in self._sources}
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_loop_at = time.monotonic()
        # Per lane: the last receive error, how many receives failed in a row, since when.
        self._last_receive_error: dict[Lane, str | None] = dict.fromkeys(self._sources)
        self._receive_failures = dict.fromkeys(self._sources, 0)
        self._receive_failing_since: dict[Lane, float | None] = dict.fromkeys(self._sources)
        # Burst mode: per lane, how many turns in a row found it empty (see _every_lane_drained).
        self._empty_turns = dict.fromkeys(self._sources, 0)
        self._started_at = time.monotonic()
        self._burst_waiting_logged_at = 0.0
        self.flush_deadline: float | None = None
        self._ready = False
        self._gave_up_on_configuration = False

    @property
    def jobs_in_flight(self) -> int:
        """Messages received and not yet finished."""
        return sum(len(strand.messages) for strand in self._jobs.values())

    def jobs_in_flight_of(self, lane: Lane) -> int:
        """Messages of ``lane`` received and not yet finished."""
        return sum(len(s.messages) for s in self._jobs.values() if s.lane is lane)

    @property
    def lanes(self) -> tuple[Lane, ...]:
        """The lanes this worker receives from."""
        return tuple(self._sources)

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
        lane, failing_s = self._longest_failing()
        last_error = self._last_receive_error[lane]
        if failing_s is not None and failing_s > RECEIVE_FAILING_UNHEALTHY_S:
            # Running but useless (no credentials, no permission, no queue): a new task may get
            # what this one lacks, and a deployment that never gets healthy is rolled back.
            return Check(
                False,
                {
                    "status": "receive failing",
                    "reason": f"every receive for {failing_s:.0f} s failed",
                    "last_receive_error": last_error,
                    **self._lane_named(lane),
                },
            )
        body: dict[str, Any] = {
            "status": "ok",
            "last_loop_s_ago": round(age, 1),
            "jobs_in_flight": self.jobs_in_flight,
            **self._in_flight_by_lane(),
        }
        if last_error:
            body["last_receive_error"] = last_error
            body.update(self._lane_named(lane))
            if failing_s is not None:
                body["receive_failing_s"] = round(failing_s, 1)
        return Check(True, body)

    def _longest_failing(self) -> tuple[Lane, float | None]:
        """The lane whose receives have failed the longest, and for how long (None: none)."""
        since = {lane: t for lane, t in self._receive_failing_since.items() if t is not None}
        if not since:
            failing = [lane for lane, error in self._last_receive_error.items() if error]
            return (failing[0] if failing else Lane.INTERACTIVE), None
        lane = min(since, key=lambda name: since[name])
        return lane, time.monotonic() - since[lane]

    def _lane_named(self, lane: Lane) -> dict[str, str]:
        """``{"lane": ...}`` when there are two lanes to tell apart, else nothing."""
        return {"lane": lane.value} if len(self._sources) > 1 else {}

    def _in_flight_by_lane(self) -> dict[str, dict[str, int]]:
        if len(self._sources) == 1:
            return {}
        by_lane = {lane.value: self.jobs_in_flight_of(lane) for lane in self._sources}
        return {"jobs_in_flight_by_lane": by_lane}

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
        lane = max(self._receive_failures, key=lambda name: self._receive_failures[name])
        if self._receive_failures[lane] >= RECEIVE_FAILURES_NOT_READY:
            return Check(
                False,
                {
                    "status": "receive failing",
                    "reason": self._last_receive_error[lane],
                    "failed_receives": self._receive_failures[lane],
                    **self._lane_named(lane),
                },
            )
        body: dict[str, Any] = {
            "status": "ready",
            "jobs_in_flight": self.jobs_in_flight,
            **self._in_flight_by_lane(),
        }
        unverified = self._guard.unverified()
        if unverified:
            # Taking work, but the probe at start could not tell whether these are sound.
            body["unverified_clients"] = unverified
        return Check(True, body)

    # -- lifecycle ----------------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Stop receiving; the drain of jobs in flight follows in :meth:`run`."""
        if self._stopping.is_set():
            return
        # Act first, log after: a log line that cannot be written must not keep the worker going.
        self._stopping.set()
        # Jobs that have not reached Cognito yet go straight back to the queue.
        for task, strand in self._jobs.items():
            if not strand.called_cognito:
                task.cancel()
        log.info("stopping", reason=reason, jobs_in_flight=self.jobs_in_flight)

    async def run(self) -> int:
        """Receive and process until stopped (or idle, in burst mode); return the exit code."""
        self._loop_task = asyncio.create_task(self._probe_then_receive())
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

    async def _probe_then_receive(self) -> None:
        """Probe every app client, then receive: readiness tells a wrong configuration from the
        start, and no job is received for a client already known to be broken."""
        probing = asyncio.ensure_future(self._guard.probe_at_start(START_PROBE_TIMEOUT_S))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({probing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not probing.done():  # told to stop while probing
            probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probing
            return
        probing.result()
        self._last_loop_at = time.monotonic()
        self._ready = True
        if self._exit_when_idle and self._guard.all_open():
            # Burst mode: nothing can be done until an operator fixes the configuration, and
            # nothing was received, so the queue is as it was.
            log.error(
                "burst mode gives up: every app client's configuration is broken; "
                "nothing was received",
                clients=self._guard.reasons(),
            )
            self._gave_up_on_configuration = True
            self.stop("every app client's circuit breaker is open")
            return
        await self._receive_loops()

    async def _receive_loops(self) -> None:
        """One receive loop per lane; if one dies, the others are stopped and its error raised."""
        if len(self._sources) == 1:
            await self._receive_loop(Lane.INTERACTIVE)
            return
        try:
            async with asyncio.TaskGroup() as loops:
                for lane in self._sources:
                    loops.create_task(self._receive_loop(lane))
        except ExceptionGroup as died:
            raise died.exceptions[0] from None

    async def _receive_loop(self, lane: Lane) -> None:
        source = self._sources[lane]
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
            await self._while_the_pacers_are_behind(lane)
            free = await self._free_slots(lane)
            if free == 0:
                continue
            try:
                messages = await self._receive_unless_stopped(source, free)
            except AWS_ERRORS as error:
                failures += 1
                # The code or class name only: SDK texts can carry the role ARN and account id,
                # and this goes to the health endpoints.
                self._last_receive_error[lane] = error_code(error)
                self._receive_failures[lane] = failures
                if self._receive_failing_since[lane] is None:
                    self._receive_failing_since[lane] = time.monotonic()
                self._last_loop_at = time.monotonic()
                delay = min(RECEIVE_BACKOFF_CAP_S, 0.5 * 2**failures)
                log.warning(
                    "receive failed",
                    error=self._last_receive_error[lane],
                    failed_in_a_row=failures,
                    retry_in_s=delay,
                    **self._lane_named(lane),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            failures = 0
            if self._stopping.is_set():
                # Received while told to stop: none of them started, all go straight back.
                await self._hand_back_all(messages)
                return
            self._last_receive_error[lane] = None
            self._receive_failures[lane] = 0
            self._receive_failing_since[lane] = None
            self._last_loop_at = time.monotonic()
            self._start(messages, lane)
            if self._exit_when_idle and self._every_lane_drained(
                lane, not messages and not self._jobs and await self._drained(source)
            ):
                log.info("queue drained", mode="exit-when-idle")
                self.stop("the queue is empty")
                return

    def _every_lane_drained(self, lane: Lane, drained: bool) -> bool:
        """Burst mode: note whether ``lane`` is drained; say whether every lane is, with no job
        in flight. It ends when nothing is left anywhere, not merely nothing visible: a message
        handed back for later, or held by a worker that died, still counts.

        A lane counts as drained after :data:`EMPTY_TURNS_TO_DRAIN` turns in a row that each
        received nothing and read zero counts. One reading is not enough: SQS's counts are
        approximate, and a message becoming visible again while they are read can be in
        neither count (moto computes the two counts a moment apart and shows it: a message
        handed back for 1 s, read at that second, counted nowhere). A long poll lies between
        the readings, and it would have received such a message."""
        self._empty_turns[lane] = self._empty_turns[lane] + 1 if drained else 0
        return not self._jobs and all(
            turns >= EMPTY_TURNS_TO_DRAIN for turns in self._empty_turns.values()
        )

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

    async def _receive_unless_stopped(
        self, source: MessageSource, free: int
    ) -> list[ReceivedMessage]:
        """Receive; when told to stop during a long poll, give it a moment, then abandon it.

        Abandoning a long poll that is about to answer would hide its messages for the whole
        visibility timeout, so a poll that answers within the moment is taken and handed back.
        """
        receive = asyncio.ensure_future(
            source.receive(min(MAX_RECEIVE, free), self._settings.receive_wait_s)
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

    async def _drained(self, source: MessageSource) -> bool:
        try:
            counts = await source.message_counts()
        except AWS_ERRORS as error:
            log.warning("could not tell whether the queue is drained", error=error_code(error))
            return False
        if any(counts.values()):
            self._say_what_burst_waits_for(counts)
            return False
        return True

    async def _while_the_pacers_are_behind(self, lane: Lane) -> None:
        """Wait while the pacers hold more than :data:`RECEIVE_AHEAD_S` of calls (a few seconds
        at most, so liveness keeps ticking). The interactive lane counts its own calls only:
        they go ahead of every bulk one."""
        deadline = time.monotonic() + 5
        counted = Lane.INTERACTIVE if lane is Lane.INTERACTIVE else None
        while not self._stopping.is_set() and time.monotonic() < deadline:
            behind_s = self._pacer_backlog_s(counted) - RECEIVE_AHEAD_S
            if lane is Lane.BULK:
                # Also the bulk jobs received and not yet at the pacer (being decoded, claimed):
                # else the next receive comes before the last one's calls are counted.
                not_yet_paced = self._not_yet_called(Lane.BULK) / self._pacer_rate_rps()
                behind_s = max(behind_s, not_yet_paced - RECEIVE_AHEAD_S)
            if behind_s <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(behind_s, 0.5))
        self._last_loop_at = time.monotonic()

    def _not_yet_called(self, lane: Lane) -> int:
        """Jobs of ``lane`` received and not yet past their first Cognito call."""
        return sum(
            len(strand.messages)
            for strand in self._jobs.values()
            if strand.lane is lane and not strand.called_cognito
        )

    def _slots_of(self, lane: Lane) -> int:
        """How many job slots ``lane`` may fill: all of them, less the interactive lane's own
        for the bulk lane."""
        slots = self._settings.max_jobs_in_flight
        if lane is Lane.BULK:
            slots -= min(INTERACTIVE_SLOTS, slots // 2)
        return slots

    async def _free_slots(self, lane: Lane) -> int:
        """Wait for free job slots: enough for a full receive, or a few after a short while.

        Receiving as soon as one slot frees would make every receive a one-message request;
        waiting a moment for ten keeps SQS requests per job low at a small cost in latency.
        Returns within a few seconds at most, so liveness keeps ticking.
        """
        slots = self._slots_of(lane)
        full = min(MAX_RECEIVE, slots)
        first_free_at: float | None = None
        deadline = time.monotonic() + 5
        freed = self._slot_freed[lane]
        while time.monotonic() < deadline and not self._stopping.is_set():
            free = slots - self.jobs_in_flight
            now = time.monotonic()
            if free > 0 and first_free_at is None:
                first_free_at = now
            if free >= full or (
                first_free_at is not None and now - first_free_at >= RECEIVE_FILL_WAIT_S
            ):
                return free
            freed.clear()
            wait = RECEIVE_FILL_WAIT_S if first_free_at is not None else deadline - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(freed.wait(), max(0.0, wait))
        self._last_loop_at = time.monotonic()
        return max(0, slots - self.jobs_in_flight)

    def _start(self, messages: list[ReceivedMessage], lane: Lane) -> None:
        """One task per message; on a FIFO queue, one task per message group, in order."""
        if not self._fifo[lane]:
            for message in messages:
                self._start_strand(_Strand([message], lane))
            return
        groups: dict[str, list[ReceivedMessage]] = {}
        for message in messages:
            groups.setdefault(message.group_id or message.message_id, []).append(message)
        for group in groups.values():
            self._start_strand(_Strand(group, lane))

    def _start_strand(self, strand: _Strand) -> None:
        task = asyncio.create_task(self._work_through(strand))
        self._jobs[task] = strand
        self._count_in_flight()
        now = time.time()
        for message in strand.messages:
            if message.sent_at is not None:
                waited = max(0.0, now - message.sent_at)
                self.metrics.queue_wait.labels(strand.lane.value).observe(waited)
        task.add_done_callback(self._job_done)

    def _count_in_flight(self) -> None:
        self.metrics.jobs_in_flight.set(self.jobs_in_flight)
        for lane in self._sources:
            self.metrics.lane_jobs_in_flight.labels(lane.value).set(self.jobs_in_flight_of(lane))

    async def _work_through(self, strand: _Strand) -> None:
        def mark_called() -> None:
            strand.called_cognito = True

        while strand.messages:
            strand.called_cognito = False
            try:
                disposition = await self._processor.process(strand.messages[0], mark_called)
            except asyncio.CancelledError:
                # Every message of the strand goes back, the current one too: the task may have
                # been cancelled before the processor ever saw it. (A second hand-back of a
                # message the processor already dealt with changes nothing.)
                await asyncio.shield(self._hand_back_all(strand.messages))
                raise
            strand.messages.pop(0)
            if disposition in (Disposition.HANDED_BACK, Disposition.LEFT) and strand.messages:
                # FIFO: a message that did not finish holds back the later ones of its group,
                # which go back in order behind it.
                await self._hand_back_all(strand.messages)
                strand.messages.clear()

    async def _hand_back_all(self, messages: list[ReceivedMessage]) -> None:
        if messages:
            await asyncio.gather(
                *(self._sources[message.lane].hand_back(message, 0) for message in messages),
                return_exceptions=True,
            )

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.pop(task, None)
        self._count_in_flight()
        for freed in self._slot_freed.values():
            freed.set()

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
    # A session that knows GetProvisionedLimit, which the pinned SDK predates (cognito/limits.py).
    botocore_session = teach_provisioned_limits(aiobotocore.session.get_session())
    session = aioboto3.Session(region_name=settings.aws_region, botocore_session=botocore_session)
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

        # Batch only when there is something to batch with: the one job in flight sends its
        # result and its delete at once. (Set once the worker exists.)
        in_flight = [lambda: 0]
        interactive_in_flight = [lambda: 0]

        def others_in_flight() -> bool:
            return in_flight[0]() > 1

        def live_result_at_once(result: JobResult) -> bool:
            """With two lanes, a live job's result does not wait for companions while its lane
            is not busy: the bulk lane's pending results go along, and the live job's backend
            is waiting for this one. A busy interactive lane (a batch's worth of its jobs in
            flight) batches as usual, so a task at the quota on live work alone keeps its
            batches full."""
            return result.lane is Lane.INTERACTIVE and interactive_in_flight[0]() < MAX_BATCH

        queues = [
            JobQueue(
                sqs,
                url,
                dead_letter_queue_url=dlq_url,
                visibility_timeout_s=settings.visibility_timeout_s,
                lane=lane,
                linger_s=settings.batch_linger_s,
                linger_while=others_in_flight,
                observe=observe,
            )
            for lane, url, dlq_url in (
                (Lane.INTERACTIVE, settings.jobs_queue_url, settings.dead_letter_queue_url),
                (Lane.BULK, settings.bulk_jobs_queue_url, settings.bulk_dead_letter_queue_url),
            )
            if url is not None
        ]
        lanes = Lanes(queues)
        publisher = ResultPublisher(
            sns,
            settings.results_topic_arn,
            linger_s=settings.batch_linger_s,
            linger_while=others_in_flight,
            at_once=live_result_at_once if settings.bulk_jobs_queue_url else _never,
            observe=observe,
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
            },
            reserved_share=settings.interactive_reserved_share,
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
            lanes,
            publisher,
            store,
            guard,
            RetryPolicy.from_settings(settings),
            limiter,
            metrics,
        )
        worker = Worker(
            settings,
            lanes.queues[Lane.INTERACTIVE],
            processor,
            guard,
            metrics,
            bulk=lanes.queues.get(Lane.BULK),
            exit_when_idle=exit_when_idle,
            pacer_backlog_s=limiter.backlog_s,
            pacer_rate_rps=limiter.slowest_rate_rps,
        )
        in_flight[0] = lambda: worker.jobs_in_flight
        interactive_in_flight[0] = lambda: worker.jobs_in_flight_of(Lane.INTERACTIVE)
        # Flushed on the way out, after the drain, within what is left of the flush budget.
        stack.push_async_callback(_flush, worker, lanes, publisher)
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
        if settings.cap_budgets_at_enforced_limits:
            await stack.enter_async_context(
                enforced_limits_watch(
                    EnforcedLimitsWatch(limiter, cognito), settings.enforced_limits_interval_s
                )
            )
        log.info(
            "worker started",
            queue=settings.jobs_queue_url,
            bulk_queue=settings.bulk_jobs_queue_url,
            clients=[client.client_id for client in settings.cognito_clients],
            max_jobs_in_flight=settings.max_jobs_in_flight,
        )
        return await worker.run()
    raise AssertionError("unreachable")  # pragma: no cover - the stack always re-raises or returns


def _writes_json_logs(settings: Settings) -> bool:
    """EMF lines belong in JSON logs only: a terminal's console log is for people."""
    log_format = settings.log_format.value
    return log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())


def _never(_result: JobResult) -> bool:
    return False


async def _flush(worker: Worker, queue: Lanes, publisher: ResultPublisher) -> None:
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
