"""The soak: many jobs under mixed faults (`make soak`, 20,000 jobs). Skipped in `make test`.

Same promises as the 500-job fault test, at a scale that shows slow leaks and rare races. SQS and
SNS come from fauxqs (moto's SQS slows with depth and would set the pace); the fault proxy sits in
front of fauxqs and of the Cognito front, so SQS, SNS and Cognito calls all meet faults.

Throttling comes as Cognito's does, from the rate: the proxy's UserCreation quota is 30 RPS, under
the worker's budget of 40 (other traffic has taken the headroom), so the worker is throttled until
its pacer yields, and again each time it probes upwards; 1 % of Cognito calls are throttled at
random besides. (The 500-job test's 20 % of random throttles would hold any pacer that yields to
throttling at its floor for 20,000 jobs: that test is about retries, this one about time.)
"""

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.fault_proxy import FaultProxy, running_proxy
from tests.support.harness import Traffic, finish, job, queue_depth, start_worker, through
from worker.local.aws import Endpoints, Stack

SOAK_JOBS = int(os.environ.get("SOAK_JOBS", "0"))
pytestmark = pytest.mark.parametrize("emulator", ["fauxqs"], indirect=True)


@pytest.mark.skipif(not SOAK_JOBS, reason="the soak runs with `make soak` (SOAK_JOBS=20000)")
@pytest.mark.timeout(SOAK_JOBS / 5 + 600)
def test_soak_every_job_ends_once_under_faults(stack: Stack, endpoints: Endpoints) -> None:
    bodies = [job("sign_up", job_id=f"s-{i}", username=f"s-{i}", password="Soak-Passw0rd!")
              for i in range(SOAK_JOBS)]  # fmt: skip
    with running_proxy(
        endpoints.queues_and_topics, endpoints.cognito, seed=11, upstream_dynamodb=endpoints.tables
    ) as proxy:
        add_soak_faults(proxy)
        with Traffic(stack, bodies, keep_queued=300) as traffic:
            worker = start_worker(
                stack, **through(proxy.url, RETRY_BACKOFF_CAP_S="1", LOG_LEVEL="WARNING")
            )
            started = time.monotonic()
            # "At the start": once the worker is warm (imports done, pools and buffers filled).
            traffic.wait_for_results(min(1000, SOAK_JOBS), timeout_s=600)
            rss_start = _rss_mb(worker.pid)
            traffic.wait_for_results(SOAK_JOBS, timeout_s=SOAK_JOBS / 5 + 120)
            seconds = time.monotonic() - started
            rss_end = _rss_mb(worker.pid)
            worker.send_signal(signal.SIGTERM)
            run = finish(worker)
        stats = proxy.stats()
    per_job = Counter(r.body["job_id"] for r in traffic.results)
    statuses = Counter(r.body["status"] for r in traffic.results)
    duplicates = sum(count - 1 for count in per_job.values())
    effects = Counter(stats["effects"].get("SignUp", {}).values())
    print(
        f"\nsoak: {SOAK_JOBS} jobs; Cognito calls "
        f"{sum(stats['calls'].get('cognito-idp', {}).values())}; faults injected "
        f"{stats['faults']}; terminal results "
        f"{len(per_job)} ({dict(statuses)}); duplicates {duplicates}; "
        f"lost {SOAK_JOBS - len(per_job)}; SignUps carried out per user {dict(effects)}; "
        f"{seconds:.0f} s; worker RSS {rss_start:.1f} MB after 1,000 results, "
        f"{rss_end:.1f} MB at the end"
    )
    assert run.returncode == 0
    assert len(per_job) == SOAK_JOBS
    assert duplicates == 0
    assert statuses == {"succeeded": SOAK_JOBS}
    assert effects == {1: SOAK_JOBS}
    assert queue_depth(stack, stack.jobs_queue_url) == 0


def add_soak_faults(proxy: FaultProxy) -> None:
    """A 30 RPS quota, 1 % random throttles, 3 % internal errors; 2 % 503s and resets anywhere."""
    proxy.set_quota("UserCreation", ["SignUp", "ConfirmSignUp"], 30)
    proxy.add_rule("throttle", service="cognito", probability=0.01)
    proxy.add_rule("internal_error", service="cognito", probability=0.03)
    proxy.add_rule("http_503", probability=0.02)
    proxy.add_rule("reset", probability=0.02)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
