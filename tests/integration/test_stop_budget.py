"""A stop fits ECS's stopTimeout even while a peer hangs: the final flush has a hard bound."""

import re
import signal
import time
from pathlib import Path

from tests.support.fault_proxy import FaultProxy
from tests.support.harness import enqueue, finish, job, start_worker, through, wait_for
from worker.local.aws import Stack
from worker.service import FLUSH_BUDGET_S, FLUSH_MIN_S, STOP_RECEIVE_GRACE_S

STACK_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation.yaml"
# What the process needs beyond its budgets to close its clients and exit, on a loaded machine.
EXIT_MARGIN_S = 5.0


def stop_budget_s(grace_s: float) -> float:
    """The longest a stop may take: the long poll's moment, the grace, the bounded flush."""
    return STOP_RECEIVE_GRACE_S + grace_s + FLUSH_BUDGET_S + FLUSH_MIN_S


def test_a_stop_with_sns_hanging_exits_inside_the_budget(stack: Stack, proxy: FaultProxy) -> None:
    grace_s = 2.0
    # Every SNS request hangs far beyond the SDK's read timeout (10 s): results cannot go out.
    with proxy.fault("timeout", service="sns", latency_s=120):
        worker = start_worker(
            stack, **through(proxy.url, SHUTDOWN_GRACE_S=str(grace_s), BATCH_LINGER_S="0")
        )
        enqueue(stack, job("confirm_sign_up", job_id="s1", username="ghost", confirmation_code="1"))
        wait_for(lambda: proxy.stats()["calls"].get("sns", {}).get("PublishBatch"), timeout_s=30)
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        run = finish(worker, timeout_s=60)
        took = time.monotonic() - stopped_at
    assert run.returncode == 0, run.stderr
    assert took < stop_budget_s(grace_s) + EXIT_MARGIN_S, f"{took:.1f} s"
    assert run.events("flush cut short"), run.stdout[-3000:]
    # Nothing lost: the job went back to the queue for the next task.
    assert stack.queue_depth(stack.jobs_queue_url) == 1


def test_the_stacks_stop_timeout_holds_grace_and_flush_with_a_margin() -> None:
    template = STACK_TEMPLATE.read_text(encoding="utf-8")
    stop_timeout = int(re.search(r"^\s*StopTimeout: (\d+)", template, re.MULTILINE)[1])  # type: ignore[index]
    grace = float(re.search(r'SHUTDOWN_GRACE_S, Value: "([\d.]+)"', template)[1])  # type: ignore[index]
    assert stop_budget_s(grace) + EXIT_MARGIN_S <= stop_timeout
    # Fargate's ceiling for stopTimeout.
    assert stop_timeout <= 120
