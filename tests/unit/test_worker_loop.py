"""The receive loop's own promises, with an in-memory queue standing in for SQS."""

import asyncio
from collections.abc import Callable, Sequence

import pytest

from worker.cognito.breaker import CircuitBreakers, ConfigurationGuard
from worker.contract.jobs import Lane
from worker.pipeline.consumer import ReceivedMessage
from worker.pipeline.processor import Disposition, ProcessorStats
from worker.service import RECEIVE_AHEAD_S, MessageHandler, MessageSource, Worker
from worker.settings import AppClient, Settings
from worker.telemetry.metrics import Metrics

SETTINGS = Settings.from_env(
    {
        "AWS_REGION": "us-east-1",
        "JOBS_QUEUE_URL": "http://127.0.0.1:1/123456789012/jobs",
        "RESULTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:results",
        "COGNITO_USER_POOL_ID": "us-east-1_abc",
        "COGNITO_CLIENT_ID": "abc123",
        "MAX_JOBS_IN_FLIGHT": "3",
        "RECEIVE_WAIT_S": "0",
        "SHUTDOWN_GRACE_S": "1",
    }
)


def message(n: int) -> ReceivedMessage:
    return ReceivedMessage(f"m{n}", f"r{n}", "{}", 1, None, {})


class ScriptedQueue:
    """Answers receives from a script; records what was asked."""

    def __init__(self, batches: Sequence[list[ReceivedMessage] | BaseException]) -> None:
        self.batches = list(batches)
        self.asked: list[int] = []
        self.handed_back: list[str] = []

    async def message_counts(self) -> dict[str, int]:
        return {"ApproximateNumberOfMessages": len(self.batches)}

    async def receive(self, max_messages: int, wait_s: int) -> list[ReceivedMessage]:
        self.asked.append(max_messages)
        await asyncio.sleep(0)
        if not self.batches:
            return []
        batch = self.batches.pop(0)
        if isinstance(batch, BaseException):
            raise batch
        return list(batch)

    async def hand_back(self, message: ReceivedMessage, delay_s: int = 0) -> None:
        self.handed_back.append(message.message_id)


class SlowProcessor:
    """Each job takes `seconds`; records which jobs ran to the end."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.finished: list[str] = []
        self.stats = ProcessorStats()

    async def process(
        self, msg: ReceivedMessage, on_cognito_call: Callable[[], None]
    ) -> Disposition:
        on_cognito_call()
        await asyncio.sleep(self.seconds)
        self.finished.append(msg.message_id)
        return Disposition.SUCCEEDED


class SoundConfiguration:
    """A probe that always passes (no breaker opens in these tests)."""

    async def probe(self, app_client: AppClient) -> None:
        return None


def build_worker(
    queue: MessageSource,
    processor: MessageHandler,
    *,
    exit_when_idle: bool = False,
    pacer_backlog_s: Callable[[Lane | None], float] = lambda _lane: 0.0,
) -> Worker:
    metrics = Metrics()
    guard = ConfigurationGuard(
        SETTINGS.cognito_clients, CircuitBreakers(1, 1), SoundConfiguration(), metrics
    )
    return Worker(
        SETTINGS,
        queue,
        processor,
        guard,
        metrics,
        exit_when_idle=exit_when_idle,
        pacer_backlog_s=pacer_backlog_s,
    )


async def test_a_dead_receive_loop_exits_non_zero_and_fails_liveness() -> None:
    queue = ScriptedQueue([RuntimeError("a bug in the loop")])
    loop = build_worker(queue, SlowProcessor(0), exit_when_idle=True)
    assert await loop.run() == 1
    check = loop.liveness()
    assert not check.ok
    assert check.body["status"] == "dead"


async def test_receives_only_what_free_slots_can_start() -> None:
    queue = ScriptedQueue([[message(1), message(2)], [message(3)], [], []])
    processor = SlowProcessor(0.6)
    loop = build_worker(queue, processor, exit_when_idle=True)
    assert await loop.run() == 0
    # Three slots: first ask for 3; with two jobs running, the next receive waits a moment for
    # more slots to free, then asks for the 1 it has.
    assert queue.asked[:2] == [3, 1]
    assert sorted(processor.finished) == ["m1", "m2", "m3"]


async def test_no_receive_while_the_pacers_hold_more_than_the_look_ahead_of_calls() -> None:
    queue = ScriptedQueue([[message(1)], [message(2)], [], []])
    loop = asyncio.get_running_loop()
    behind_until = loop.time() + 0.6
    # The pacers hold a second of calls more than the look-ahead for 0.6 s, then catch up.
    loop_worker = build_worker(
        queue,
        SlowProcessor(0),
        exit_when_idle=True,
        pacer_backlog_s=lambda _lane: RECEIVE_AHEAD_S + 1 if loop.time() < behind_until else 0.0,
    )
    started = loop.time()
    assert await loop_worker.run() == 0
    # Held back the first receive until the backlog fell under the look-ahead.
    assert loop.time() - started >= 0.6
    assert queue.asked[0] == 3


async def test_stop_lets_jobs_in_flight_finish_within_the_grace_period() -> None:
    queue = ScriptedQueue([[message(1), message(2)]] + [[]] * 100)
    processor = SlowProcessor(0.3)
    loop = build_worker(queue, processor)
    running = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    loop.stop("test")
    assert not loop.readiness().ok
    assert await running == 0
    assert sorted(processor.finished) == ["m1", "m2"]


async def test_jobs_past_the_grace_period_are_cancelled() -> None:
    queue = ScriptedQueue([[message(1)]] + [[]] * 100)
    processor = SlowProcessor(30)
    loop = build_worker(queue, processor)
    running = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    loop.stop("test")
    assert await asyncio.wait_for(running, 5) == 0
    assert processor.finished == []


async def test_receives_that_keep_failing_turn_readiness_then_liveness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.exceptions import ClientError, NoCredentialsError

    import worker.service as service

    monkeypatch.setattr(service, "RECEIVE_BACKOFF_CAP_S", 0.05)
    monkeypatch.setattr(service, "RECEIVE_FAILING_UNHEALTHY_S", 0.5)
    denied = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:sts::123456789012:x"}},
        "ReceiveMessage",
    )
    queue = ScriptedQueue([NoCredentialsError()] * 3 + [denied] * 100)
    worker = build_worker(queue, SlowProcessor(0))
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)
    ready = worker.readiness()
    assert not ready.ok
    assert ready.body["status"] == "receive failing"
    assert worker.liveness().ok
    await asyncio.sleep(0.6)
    live = worker.liveness()
    assert not live.ok
    assert live.body["status"] == "receive failing"
    # The code only: the SDK's text names the account and role.
    assert live.body["last_receive_error"] == "AccessDenied"
    assert "123456789012" not in str(live.body) + str(worker.readiness().body)
    worker.stop("test over")
    assert await run == 0


async def test_one_good_receive_makes_the_worker_ready_again() -> None:
    from botocore.exceptions import NoCredentialsError

    queue = ScriptedQueue([NoCredentialsError(), NoCredentialsError(), [], [], [], []])
    worker = build_worker(queue, SlowProcessor(0))
    run = asyncio.create_task(worker.run())
    for _ in range(100):
        await asyncio.sleep(0.1)
        if len(queue.asked) >= 4:
            break
    assert worker.readiness().ok
    worker.stop("test over")
    assert await run == 0


class CountsMissAMessage(ScriptedQueue):
    """SQS's counts are approximate: the first reading misses a message that is about to
    become visible again (moto shows this for a message read at the second it returns)."""

    def __init__(self, batches: Sequence[list[ReceivedMessage] | BaseException]) -> None:
        super().__init__(batches)
        self.readings = 0

    async def message_counts(self) -> dict[str, int]:
        self.readings += 1
        return {} if self.readings == 1 else await super().message_counts()


async def test_burst_mode_does_not_end_on_one_reading_of_an_empty_queue() -> None:
    # Nothing visible on the first turn; the message returns on the second.
    queue = CountsMissAMessage([[], [message(1)], [], []])
    processor = SlowProcessor(0)
    assert await build_worker(queue, processor, exit_when_idle=True).run() == 0
    assert processor.finished == ["m1"]
