"""The fleet budget, end to end: worker processes sharing one DynamoDB table share the RATE_*
budget, and a stopped task's share goes back to the others.

Calls are counted where they reach Cognito, at the fault proxy; each worker's own pacing rate is
read from its /metrics. The margins are wide (the machine is shared): the point is half versus
whole, not the second decimal. SQS and SNS come from fauxqs, so the emulator is not the limit.
"""

import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from subprocess import Popen

import pytest

from tests.support import harness
from tests.support.fault_proxy import FaultProxy
from tests.support.harness import enqueue, finish, job, start_worker, wait_for
from worker.local.aws import Stack, create_idempotency_table, free_port

pytestmark = pytest.mark.parametrize("emulator", ["fauxqs"], indirect=True)

BUDGET_RPS = 12.0  # the fleet's UserAccountRecovery budget
WINDOW_S = 4.0


def pacing_rate(port: int) -> float | None:
    """The worker's current UserAccountRecovery pacing rate, from its /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    found = re.search(
        r'^cognito_worker_limiter_rate_rps\{category="UserAccountRecovery"\} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else None


def calls_per_s(proxy: FaultProxy, window_s: float = WINDOW_S) -> float:
    """ForgotPassword calls per second reaching Cognito over the window."""
    proxy.reset_stats()
    time.sleep(window_s)
    return proxy.stats()["calls"].get("cognito-idp", {}).get("ForgotPassword", 0) / window_s


@pytest.fixture
def fleet(stack: Stack, proxy: FaultProxy) -> Iterator[tuple[list[Popen[str]], list[int]]]:
    enqueue(stack, *(job("forgot_password", job_id=f"f-{i}", username=f"f-{i}")
                     for i in range(600)))  # fmt: skip
    table = create_idempotency_table(stack.endpoints)
    ports = [free_port(), free_port()]
    workers = [
        start_worker(
            stack,
            AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=proxy.url,
            IDEMPOTENCY_STORE="dynamodb",
            IDEMPOTENCY_TABLE=table,
            RATE_USER_ACCOUNT_RECOVERY_RPS=str(BUDGET_RPS),
            HEALTH_PORT=str(port),
        )
        for port in ports
    ]
    yield workers, ports
    running = [worker for worker in workers if worker.pid in harness._outputs]
    for worker in running:
        worker.send_signal(signal.SIGTERM)
    for worker in running:
        finish(worker)


def test_two_workers_on_one_table_each_pace_at_half_the_budget_and_a_stopped_ones_share_is_freed(
    fleet: tuple[list[Popen[str]], list[int]], proxy: FaultProxy
) -> None:
    (first, second), ports = fleet
    half = BUDGET_RPS / 2

    # Both have joined: each paces at (a little under) half the budget. (The task that found
    # the roster empty starts at the whole budget and halves at its next heartbeat, while the
    # other, which found it there, waits out that heartbeat before its first call.)
    def at_half() -> bool:
        return all(0.7 * half <= (pacing_rate(port) or 0.0) <= half for port in ports)

    wait_for(at_half, timeout_s=30)
    # Together they keep to the budget (two full budgets would be twice this).
    together = calls_per_s(proxy)
    assert 0.6 * BUDGET_RPS <= together <= 1.2 * BUDGET_RPS, together

    second.send_signal(signal.SIGTERM)
    run = finish(second)
    assert run.returncode == 0
    # The survivor takes the whole budget within a few heartbeats.
    wait_for(lambda: (pacing_rate(ports[0]) or 0) > 0.8 * BUDGET_RPS, timeout_s=10)
    alone = calls_per_s(proxy)
    assert 0.6 * BUDGET_RPS <= alone <= 1.2 * BUDGET_RPS, alone
    assert first.poll() is None
