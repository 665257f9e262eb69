"""The two lanes measured: live jobs on the interactive lane while an import fills the bulk lane.

Each scenario here times what a backend sees, from the moment it sends a live sign-up to the
moment the result reaches its subscribed queue, and sets it beside the same SignUp called
directly through the same proxy (same 80 ms of latency, same quota) in the same run:

- ``quiet``: one task, nothing else queued, live sign-ups at 5 a second;
- ``lanes``: one task, a bulk backlog of several thousand sign-ups draining at the budget, live
  sign-ups at 1 then 5 a second on the interactive lane;
- ``lanes-fleet``: the same with three tasks on one fleet budget (DynamoDB store, the fleet
  scenarios' share of the quotas).

Only sign-ups run (UserCreation), so the live jobs and the import share one category and one
budget. The bulk lane's part is read from the results' ``finished_at`` within each live phase,
against what the live jobs leave of the budget; throttles are the proxy's quota answers.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.figures import DEFAULT_QUOTAS, PASSWORD
from bench.measuring import (
    MACHINE_BUSY_CAP,
    Worker,
    busy_and_total_jiffies,
    cpu_by_role,
    wait_until_formed,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.harness import job
from worker.cognito.secret_hash import secret_hash
from worker.local.aws import Endpoints, Stack, aws_client, create_idempotency_table, provision

BULK_JOBS = 4000
WARM_UP_S = 5.0
PHASE_S = 20.0
LIVE_RATES = (1.0, 5.0)
QUIET_RATE = 5.0
DIRECT_CALLS = 100


@dataclass
class Phase:
    """One stretch of live traffic at a steady rate, and what both lanes did meanwhile."""

    live_rps: float
    live_jobs: int = 0
    live_p50_ms: float = 0.0
    live_p99_ms: float = 0.0
    live_max_ms: float = 0.0
    live_jobs_per_s: float = 0.0
    bulk_jobs_per_s: float = 0.0
    # The bulk lane's jobs a second against what the live ones leave of the budget.
    bulk_share_of_what_is_left: float = 0.0


@dataclass
class LaneRun:
    """The figures of one lanes scenario."""

    name: str
    workers: int
    budget_rps: float  # the fleet's UserCreation budget
    direct_p50_ms: float = 0.0
    direct_p99_ms: float = 0.0
    phases: list[Phase] = field(default_factory=list)
    calls: int = 0
    throttled: int = 0
    failed: int = 0
    bulk_left_queued: int = 0
    worker_cpu_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0
    capped: str | None = None

    @property
    def throttled_share(self) -> float:
        return self.throttled / max(1, self.calls)


class ResultClock:
    """Reads the results queue as a subscriber would, noting when each result arrived."""

    def __init__(self, stack: Stack) -> None:
        self._sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
        self._url = stack.results_queue_url
        self.arrived: dict[str, float] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ResultClock:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            now = time.time()
            messages = answer.get("Messages", [])
            for message in messages:
                body = json.loads(message["Body"])
                if "Message" in body and "TopicArn" in body:  # not raw delivery
                    body = json.loads(body["Message"])
                key = body["job_id"] or body["sqs_message_id"]
                self.arrived.setdefault(key, now)
                self.results[key] = body
            if messages:
                self._sqs.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def direct_calls(stack: Stack, proxy: FaultProxy, rps: float, calls: int) -> list[float]:
    """SignUp called directly through the proxy at a steady rate: each call's time in ms."""
    idp = aws_client("cognito-idp", proxy.url)
    times = []
    started = time.monotonic()
    for n in range(calls):
        username = f"direct-{uuid.uuid4().hex[:12]}"
        begun = time.monotonic()
        idp.sign_up(
            ClientId=stack.client_id,
            Username=username,
            Password=PASSWORD,
            SecretHash=secret_hash(username, stack.client_id, stack.client_secret),
        )
        times.append((time.monotonic() - begun) * 1000)
        time.sleep(max(0.0, started + (n + 1) / rps - time.monotonic()))
    return times


def _enqueue_bulk(stack: Stack, count: int, label: str) -> None:
    """Fill the bulk lane as an import would, ten a request, from a few threads."""
    assert stack.bulk_jobs_queue_url is not None
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    bodies = [
        job("sign_up", job_id=f"{label}-bulk-{n}", username=f"{label}-bulk-{n}",
            password=PASSWORD, batch=f"{label}-bulk")
        for n in range(count)
    ]  # fmt: skip

    def send(start: int) -> None:
        chunk = bodies[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
        answer = sqs.send_message_batch(QueueUrl=stack.bulk_jobs_queue_url, Entries=entries)
        assert not answer.get("Failed"), answer

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(0, count, 10)))


def _live_phase(stack: Stack, rps: float, seconds: float, label: str) -> dict[str, float]:
    """Send live sign-ups to the interactive lane at ``rps``; return each job's send time."""
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    sent: dict[str, float] = {}
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        job_id = f"{label}-live-{rps:g}-{n}"
        body = job("sign_up", job_id=job_id, username=job_id, password=PASSWORD)
        sent[job_id] = time.time()
        sqs.send_message(QueueUrl=stack.jobs_queue_url, MessageBody=body)
        n += 1
        time.sleep(max(0.0, started + n / rps - time.monotonic()))
    return sent


def _wait_for(clock: ResultClock, job_ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(j in clock.arrived for j in job_ids):
        time.sleep(0.1)


def _finished_within(clock: ResultClock, prefix: str, start: float, end: float) -> int:
    return sum(
        1
        for job_id, body in list(clock.results.items())
        if job_id.startswith(prefix)
        and start <= datetime.fromisoformat(body["finished_at"]).timestamp() < end
    )


def _phase_figures(
    clock: ResultClock, sent: dict[str, float], run: LaneRun, label: str, rps: float
) -> Phase:
    _wait_for(clock, list(sent), timeout_s=30)
    latencies = [(clock.arrived[j] - t) * 1000 for j, t in sent.items() if j in clock.arrived]
    start, end = min(sent.values()), max(sent.values()) + 1 / rps
    live_rate = _finished_within(clock, f"{label}-live-{rps:g}-", start, end) / (end - start)
    bulk_rate = _finished_within(clock, f"{label}-bulk-", start, end) / (end - start)
    left = max(1e-9, run.budget_rps - live_rate)
    return Phase(
        live_rps=rps,
        live_jobs=len(latencies),
        live_p50_ms=statistics.median(latencies) if latencies else 0.0,
        live_p99_ms=_percentile(latencies, 0.99),
        live_max_ms=max(latencies, default=0.0),
        live_jobs_per_s=live_rate,
        bulk_jobs_per_s=bulk_rate,
        bulk_share_of_what_is_left=bulk_rate / left,
    )


def run_lanes(
    endpoints: Endpoints,
    proxy: FaultProxy,
    run: LaneRun,
    *,
    bulk_jobs: int,
    rates: tuple[float, ...],
) -> LaneRun:
    """Provision a stack with both lanes, start the tasks, measure the direct call, then fill
    the bulk lane (if ``bulk_jobs``) and send live sign-ups at each rate in turn."""
    label = f"{run.name}-{int(time.time())}"
    stack = provision(endpoints, f"bench-{label}")
    env = {
        **stack.worker_env(),
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": proxy.url,
        "RECEIVE_WAIT_S": "20",
        "LOG_LEVEL": "WARNING",
        "RATE_USER_CREATION_RPS": str(run.budget_rps),
    }
    if run.workers > 1:
        env |= {
            "IDEMPOTENCY_STORE": "dynamodb",
            "IDEMPOTENCY_TABLE": create_idempotency_table(endpoints),
        }
    direct = direct_calls(stack, proxy, QUIET_RATE, DIRECT_CALLS)
    run.direct_p50_ms, run.direct_p99_ms = statistics.median(direct), _percentile(direct, 0.99)
    workers = [Worker(stack, env) for _ in range(run.workers)]
    try:
        wait_until_formed(workers)
        proxy.reset_stats()
        roles_before, busy_before = cpu_by_role(endpoints), busy_and_total_jiffies()
        with ResultClock(stack) as clock:
            if bulk_jobs:
                _enqueue_bulk(stack, bulk_jobs, label)
                time.sleep(WARM_UP_S)
            for rps in rates:
                sent = _live_phase(stack, rps, PHASE_S, label)
                run.phases.append(_phase_figures(clock, sent, run, label, rps))
            for worker in workers:
                worker.sample(scrape=False)
            stats = proxy.stats()
            busy_after = busy_and_total_jiffies()
            run.cpu_s = {
                role: round(seconds - roles_before.get(role, 0.0), 1)
                for role, seconds in cpu_by_role(endpoints).items()
            }
            run.failed = sum(1 for b in clock.results.values() if b["status"] != "succeeded")
        run.calls = sum(stats["calls"].get("cognito-idp", {}).values())
        run.throttled = stats["faults"].get("quota_throttle", 0)
        run.worker_cpu_s = round(sum(w.cpu_s for w in workers), 1)
        busy = busy_after[0] - busy_before[0]
        run.machine_busy = busy / max(1, busy_after[1] - busy_before[1])
        if run.machine_busy > MACHINE_BUSY_CAP:
            run.capped = f"machine {run.machine_busy:.0%} busy"
        if stack.bulk_jobs_queue_url and bulk_jobs:
            run.bulk_left_queued = stack.queue_depth(stack.bulk_jobs_queue_url)
    finally:
        for worker in workers:
            worker.kill()
    return run


def quiet(endpoints: Endpoints, proxy: FaultProxy, quota_scale: float) -> LaneRun:
    budget = DEFAULT_QUOTAS["UserCreation"] * quota_scale
    print(f"quiet queue: live sign-ups at {QUIET_RATE:g}/s, one task ...", flush=True)
    return run_lanes(endpoints, proxy, LaneRun("quiet", 1, budget), bulk_jobs=0,
                     rates=(QUIET_RATE,))  # fmt: skip


def lanes(endpoints: Endpoints, proxy: FaultProxy, quota_scale: float) -> LaneRun:
    budget = DEFAULT_QUOTAS["UserCreation"] * quota_scale
    print(f"two lanes: {BULK_JOBS} bulk sign-ups, live at {LIVE_RATES}/s, one task ...",
          flush=True)  # fmt: skip
    return run_lanes(endpoints, proxy, LaneRun("lanes", 1, budget), bulk_jobs=BULK_JOBS,
                     rates=LIVE_RATES)  # fmt: skip


def lanes_fleet(endpoints: Endpoints, proxy: FaultProxy, fleet_k: float) -> LaneRun:
    budget = DEFAULT_QUOTAS["UserCreation"] * fleet_k
    print(f"two lanes, three tasks on a fleet budget of {budget:g}/s ...", flush=True)
    return run_lanes(endpoints, proxy, LaneRun("lanes-fleet", 3, budget), bulk_jobs=BULK_JOBS,
                     rates=LIVE_RATES)  # fmt: skip


def lanes_table(runs: list[LaneRun]) -> str:
    """The lanes' figures, one row a live phase, for docs/benchmark.md."""
    lines = [
        "| scenario | tasks | budget/s | live/s | live p50 / p99 / max ms | direct p50 / p99 ms "
        "| p99 over direct | bulk jobs/s | bulk of what live leaves | throttled | failed "
        "| worker CPU s | machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        for p in r.phases:
            capped = " (capped)" if r.capped else ""
            bulk = (
                f"{p.bulk_jobs_per_s:.1f} | {p.bulk_share_of_what_is_left:.1%}"
                if r.phases and r.name != "quiet"
                else "— | —"
            )
            lines.append(
                f"| {r.name}{capped} | {r.workers} | {r.budget_rps:g} | {p.live_rps:g} "
                f"| {p.live_p50_ms:.0f} / {p.live_p99_ms:.0f} / {p.live_max_ms:.0f} "
                f"| {r.direct_p50_ms:.0f} / {r.direct_p99_ms:.0f} "
                f"| {p.live_p99_ms - r.direct_p99_ms:+.0f} ms "
                f"| {bulk} "
                f"| {r.throttled_share:.2%} ({r.throttled}/{r.calls}) | {r.failed} "
                f"| {r.worker_cpu_s:.1f} | {r.machine_busy:.0%} |"
            )
    return "\n".join(lines) + "\n"
