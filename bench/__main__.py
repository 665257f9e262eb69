"""``make bench``: the worker at the Cognito quota, alone and as a fleet, against a naive baseline.

SQS and SNS are served by fauxqs (fast enough not to be the limit); moto keeps Cognito (behind the
Cognito front, which checks SecretHash) and, in a second moto process so that neither waits
behind the other on one core, DynamoDB. Each scenario's tasks are ready and have counted each
other before its batch is enqueued. The fault proxy sits in front of Cognito
only: it adds Cognito's latency and enforces the quota per category, answering
TooManyRequestsException above it as Cognito does. All scenarios run in one go, so their ratios
compare like with like:

1. ``one-worker``: one task (memory store) at the default quotas (UserCreation 50,
   UserAccountRecovery 30 RPS);
2. ``encrypted``: ``one-worker`` with every password encrypted under a KMS key (moto's KMS, behind
   the fault proxy to count the calls) and encryption required: KMS calls and CPU per job;
3. ``baseline``: the seed's way (bench/baseline.py), one message at a time;
4. ``fleet-of-3``: three tasks on one fleet budget (the quota) through one DynamoDB table;
5. ``live-app``: three tasks on a fleet budget of 40 of the 50 UserCreation RPS, while a simulated
   application sends its own sign-ups at 10 RPS on the same quota; ``live-app-headroom``: the
   same with one call a second more left to the live application;
6. ``scale``: one task, then three, one of them killed (SIGKILL), another stopped, back to one;
7. ``quota-lifted``: no quota, no added latency: the worker's own ceiling, profiled with py-spy.

The fleet scenarios (4-6) run at :data:`FLEET_SCALE` of those quotas, budgets and live traffic,
so that the machine can serve them; a scenario during which the machine or moto ran out of CPU is
marked ``capped``, its figures being theirs rather than the worker's.

The share of the budget is read twice: from the results (jobs finished a second, against what the
budgets allow for the mix), and from the Cognito calls the proxy's quota admitted (the fleet's
calls of the category the mix runs out of first, against that category's budget). The budget
limits the calls; a job finishes when Cognito's emulator answers, which takes its own time (tens
of milliseconds at p99, and over a second while one moto served DynamoDB too), so the results
scatter around the pace the calls keep. Recovery after a scale-out, a kill or a stop is read on
both.

Figures go to stdout, bench/results/results.json, table.md and throughput.png.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import aioboto3
from aiobotocore.config import AioConfig

from bench.baseline import run_baseline
from tests.support.fault_proxy import FaultProxy, running_proxy
from tests.support.fauxqs import running_fauxqs
from tests.support.harness import Traffic, finish, job, start_worker
from worker.cognito.fleet import HEARTBEAT_S
from worker.cognito.secret_hash import secret_hash
from worker.contract.fields import FieldEncryptor, encrypt_job
from worker.contract.jobs import JOB_ADAPTER, encode_job
from worker.local.aws import (
    LOOPBACK,
    REGION,
    Endpoints,
    Stack,
    aws_client,
    create_idempotency_table,
    free_port,
    local_aws,
    moto_server,
    provision,
)

OUT = Path(__file__).parent / "results"
# The fleet scenarios run at this share of the default quotas (budgets and live traffic alike).
# Three workers whose claims go through DynamoDB cost about 45 ms of CPU a job across the bench's
# processes (27 of them in moto, one Python process that cannot use a second core): a machine of
# two cores cannot serve the 75 jobs/s of the default quotas, and the figures would measure it.
FLEET_SCALE = 0.4
QUOTA_OPERATIONS = {
    "UserCreation": ["SignUp", "ConfirmSignUp"],
    "UserAccountRecovery": ["ForgotPassword", "ConfirmForgotPassword"],
}
DEFAULT_QUOTAS = {"UserCreation": 50.0, "UserAccountRecovery": 30.0}
SIGN_UP_SHARE = 0.6
PASSWORD = "Bench-Passw0rd!"
LIVE_APP_RPS = 10.0
LIVE_USER_PREFIX = "live-user-"  # the simulated application's (no scenario is named so)


@dataclass
class Scenario:
    """One scenario's figures."""

    name: str
    jobs: int
    workers: int
    budgets: dict[str, float] = field(default_factory=dict)  # the fleet's RATE_* budgets
    seconds: float = 0.0
    jobs_per_s: float = 0.0
    bound_jobs_per_s: float | None = None  # what the budgets allow for this mix
    share_of_budget: float | None = None
    # The same between the 10th and the 90th percentile of the results: the batch's start
    # (tasks starting, joining) and its end (the last jobs in a few tasks' slots) left out.
    steady_jobs_per_s: float = 0.0
    steady_share_of_budget: float | None = None
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # error code -> jobs
    failed_examples: list[dict[str, Any]] = field(default_factory=list)
    fleet_calls: int = 0  # the fleet's Cognito calls that reached the proxy
    fleet_throttles: int = 0
    fleet_throttled_share: float = 0.0
    live_calls: int = 0
    live_throttles: int = 0
    live_throttled_share: float | None = None
    sqs_sns_requests_per_job: float = 0.0
    worker_cpu_ms_per_job: float = 0.0
    worker_peak_rss_mb: float = 0.0
    kms_calls: int | None = None  # the workers' KMS calls (field decryption)
    producer_kms_calls: int | None = None
    producer_encrypt_cpu_ms_per_field: float | None = None
    # (second since the first receive, what happened)
    events: list[tuple[float, str]] = field(default_factory=list)
    recovery_s: dict[str, float | None] = field(default_factory=dict)  # event -> seconds
    cpu_s: dict[str, float] = field(default_factory=dict)
    profile: list[tuple[str, float]] = field(default_factory=list)  # (function, share of samples)
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quota_scale: float = 1.0  # the default quotas (and budgets, live traffic) times this
    machine_busy: float = 0.0  # share of all cores' time spent busy during the scenario
    # The busier moto's CPU seconds per second: each is one process, so at most about 1.
    moto_cores: float = 0.0
    capped: str | None = None  # why the figures measure the machine or moto, not the worker
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (second, jobs/s)
    # The budget as Cognito counts it: the fleet's calls of the category the mix runs out of
    # first (the bound's), as the proxy's quota admitted them, against that category's budget.
    binding_category: str | None = None
    calls_share_of_budget: float | None = None  # first call to last
    steady_calls_share_of_budget: float | None = None  # 10th to 90th percentile of the calls
    calls_timeline: list[tuple[float, float]] = field(default_factory=list)  # (second, share)
    # How long Cognito's emulator (the Cognito front and moto) took to answer: a job finishes
    # only then, so the results' timeline carries these times and the calls' does not.
    cognito_answer_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, max
    recovery_by_results_s: dict[str, float | None] = field(default_factory=dict)


def mixed_jobs(count: int, prefix: str) -> list[str]:
    """Sign-ups and password resets in the bench's mix (resets of unknown users succeed)."""
    bodies = []
    for i in range(count):
        username = f"{prefix}-{i}"
        if (i % 10) < SIGN_UP_SHARE * 10:
            bodies.append(job("sign_up", job_id=username, username=username, password=PASSWORD))
        else:
            bodies.append(job("forgot_password", job_id=username, username=username))
    return bodies


def binding_category(budgets: dict[str, float]) -> str:
    """The quota category the mix runs out of first: the one :func:`budget_bound` comes from."""
    shares = {"UserCreation": SIGN_UP_SHARE, "UserAccountRecovery": 1 - SIGN_UP_SHARE}
    return min(shares, key=lambda category: budgets[category] / shares[category])


def budget_bound(budgets: dict[str, float]) -> float:
    """The highest job rate the budgets allow for the mix: its scarcest category decides."""
    return min(
        budgets["UserCreation"] / SIGN_UP_SHARE,
        budgets["UserAccountRecovery"] / (1 - SIGN_UP_SHARE),
    )


def rate_settings(budgets: dict[str, float]) -> dict[str, str]:
    return {
        "RATE_USER_CREATION_RPS": str(budgets["UserCreation"]),
        "RATE_USER_ACCOUNT_RECOVERY_RPS": str(budgets["UserAccountRecovery"]),
    }


# ------------------------------------------------------------------------------ process figures


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _descendants() -> set[int]:
    """This process's children, grandchildren and so on (the machine may run other benches)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    mine = {os.getpid()}
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in mine} - mine
        grew = bool(more)
        mine |= more
    return mine - {os.getpid()}


def _pids(marker: str) -> list[int]:
    found = []
    for pid in _descendants():
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(pid)
        except OSError:
            continue
    return found


MOTO_COGNITO = "moto (Cognito)"
MOTO_DYNAMODB = "moto (DynamoDB)"


def _cpu_by_role(endpoints: Endpoints) -> dict[str, float]:
    def moto_at(url: str) -> str:  # the command line local_aws.moto_server starts
        return f"moto.server -H {LOOPBACK} -p {url.rsplit(':', 1)[1]}"

    roles = {
        MOTO_COGNITO: moto_at(endpoints.moto),
        MOTO_DYNAMODB: moto_at(endpoints.tables),
        "Cognito front": "worker.local.aws",
        "fault proxy": "tests.support.fault_proxy",
        "fauxqs (SQS, SNS)": "serve.mjs",
    }
    total = {}
    for role, marker in roles.items():
        seconds = 0.0
        for pid in _pids(marker):
            try:
                seconds += _proc_cpu_s(pid)
            except OSError:
                continue
        total[role] = seconds
    return total


def _metrics(port: int) -> dict[str, float]:
    """The worker's counters from /metrics: SQS+SNS requests, summed."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    requests = sum(
        float(value)
        for value in re.findall(r"^cognito_worker_aws_requests_total\{[^}]*\} (\S+)$", text, re.M)
    )
    return {"sqs_sns_requests": requests}


class Worker:
    """One worker process, its health port, and its last-sampled figures (kept after it dies)."""

    def __init__(self, stack: Stack, env: dict[str, str]) -> None:
        self.port = free_port()
        self.process = start_worker(stack, **env, HEALTH_PORT=str(self.port))
        self.cpu_s = 0.0
        self.peak_rss_mb = 0.0
        self.requests = 0.0
        self.finished = False

    def sample(self, scrape: bool) -> None:
        if self.finished:
            return
        try:
            self.cpu_s = _proc_cpu_s(self.process.pid)
            self.peak_rss_mb = max(self.peak_rss_mb, _proc_peak_rss_mb(self.process.pid))
        except OSError:
            return
        if scrape:
            self.requests = _metrics(self.port).get("sqs_sns_requests", self.requests)

    def ready(self) -> bool:
        """Whether the worker answers its readiness check."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2):
                return True
        except OSError:  # refused, not listening yet, or 503 (an HTTPError is an OSError)
            return False

    def kill(self) -> None:
        """Make sure the process is gone (after a failed scenario)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, how: int = signal.SIGTERM) -> None:
        self.sample(scrape=True)
        self.process.send_signal(how)
        finish(self.process)
        self.finished = True


# ------------------------------------------------------------------------------ the live app


class LiveApp:
    """The application's own sign-ups at a steady rate on the same quota, no retries."""

    def __init__(self, stack: Stack, cognito_url: str, rps: float) -> None:
        self.stack, self.url, self.rps = stack, cognito_url, rps
        self.calls = 0
        self.throttled = 0
        self.other_errors: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> LiveApp:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    async def _run(self) -> None:
        session = aioboto3.Session(
            region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
        )
        config = AioConfig(retries={"total_max_attempts": 1}, max_pool_connections=50)
        async with session.client("cognito-idp", endpoint_url=self.url, config=config) as idp:
            pending: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            n = 0
            while not self._stop.is_set():
                username = f"{LIVE_USER_PREFIX}{os.getpid()}-{n}"
                task = asyncio.create_task(self._sign_up(idp, username))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                await asyncio.sleep(max(0.0, started + n / self.rps - time.monotonic()))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _sign_up(self, idp: Any, username: str) -> None:
        self.calls += 1
        try:
            await idp.sign_up(
                ClientId=self.stack.client_id,
                Username=username,
                Password=PASSWORD,
                SecretHash=secret_hash(username, self.stack.client_id, self.stack.client_secret),
            )
        except idp.exceptions.TooManyRequestsException:
            self.throttled += 1
        except Exception as error:
            self.other_errors[type(error).__name__] += 1


# ------------------------------------------------------------------------------ scenarios


@contextmanager
def configured(
    proxy: FaultProxy, *, latency_s: float, quotas: dict[str, float] | None
) -> Iterator[None]:
    proxy.clear_rules()
    proxy.clear_quota()
    proxy.reset_stats()
    if latency_s:
        proxy.add_rule("latency", service="cognito", latency_s=latency_s)
    for name, rps in (quotas or {}).items():
        proxy.set_quota(name, QUOTA_OPERATIONS[name], rps)
    yield
    proxy.clear_rules()
    proxy.clear_quota()


def run_fleet(
    endpoints: Endpoints,
    proxy: FaultProxy,
    scenario: Scenario,
    *,
    extra: dict[str, str] | None = None,
    live_rps: float = 0.0,
    plan: list[tuple[float, str]] | None = None,
    profile_s: float = 0.0,
    shared_store: bool = True,
    encrypted: bool = False,
) -> Scenario:
    """Run ``scenario.workers`` tasks (more or fewer, as ``plan`` says) until every job is done."""
    stack = provision(endpoints, f"bench-{scenario.name}-{int(time.time())}")
    env = {
        **stack.worker_env(),
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": proxy.url,
        "RECEIVE_WAIT_S": "20",
        "LOG_LEVEL": "WARNING",
        **rate_settings(scenario.budgets),
        **(extra or {}),
    }
    if shared_store:  # a fleet counts itself, and shares its claims, through DynamoDB
        env |= {
            "IDEMPOTENCY_STORE": "dynamodb",
            "IDEMPOTENCY_TABLE": create_idempotency_table(endpoints),
        }
    bodies = mixed_jobs(scenario.jobs, scenario.name)
    if encrypted:  # the worker decrypts through the proxy, which counts its KMS calls
        key_arn = aws_client("kms", endpoints.moto).create_key()["KeyMetadata"]["Arn"]
        bodies = encrypted_bodies(bodies, key_arn, proxy, scenario)
        env |= {
            "FIELD_ENCRYPTION_KEY_ARNS": key_arn,
            "REQUIRE_ENCRYPTED_FIELDS": "true",
            "AWS_ENDPOINT_URL_KMS": proxy.url,
        }
    scenario.bound_jobs_per_s = budget_bound(scenario.budgets)
    live = LiveApp(stack, proxy.url, live_rps) if live_rps else None
    workers: list[Worker] = []
    try:
        _run(scenario, stack, bodies, env, proxy, workers, live, plan, profile_s)
    finally:
        for worker in workers:
            worker.kill()
        if live:
            live.__exit__(None, None, None)
    scenario.load_average = os.getloadavg()
    return scenario


def encrypted_bodies(
    bodies: list[str], key_arn: str, proxy: FaultProxy, scenario: Scenario
) -> list[str]:
    """The bodies with each password encrypted as a producer would (one FieldEncryptor)."""
    # The producer's SDK finds KMS (the proxy, to count its calls) and credentials in the env.
    producer_env = {
        "AWS_ENDPOINT_URL_KMS": proxy.url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
    }
    with mock.patch.dict(os.environ, producer_env):
        encryptor = FieldEncryptor(key_arn)
        jobs = [JOB_ADAPTER.validate_json(body) for body in bodies]
        started = time.process_time()
        sealed = [encode_job(encrypt_job(job, encryptor)) for job in jobs]
        encrypted = sum(1 for job in jobs if getattr(job, "password", None) is not None)
        scenario.producer_encrypt_cpu_ms_per_field = (
            (time.process_time() - started) * 1000 / max(1, encrypted)
        )
    scenario.producer_kms_calls = sum(proxy.stats()["calls"].get("kms", {}).values())
    return sealed


def _busy_and_total_jiffies() -> tuple[int, int]:
    """All cores' busy and total time so far, from /proc/stat's first line."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


# Above these the figures are the machine's or moto's, not the worker's: every process here
# would have gone faster with more CPU, and moto, one Python process, cannot use a second core.
MACHINE_BUSY_CAP = 0.85
MOTO_CORES_CAP = 0.75


def _judge_capacity(
    scenario: Scenario, busy_before: tuple[int, int], busy_after: tuple[int, int], wall_s: float
) -> None:
    total = busy_after[1] - busy_before[1]
    scenario.machine_busy = (busy_after[0] - busy_before[0]) / total if total else 0.0
    # Each moto is one process: the busier one is the one that may have set the pace.
    busiest = max(scenario.cpu_s.get(MOTO_COGNITO, 0.0), scenario.cpu_s.get(MOTO_DYNAMODB, 0.0))
    scenario.moto_cores = busiest / max(wall_s, 1e-9)
    reasons = []
    if scenario.machine_busy > MACHINE_BUSY_CAP:
        reasons.append(f"the machine was {scenario.machine_busy:.0%} busy")
    if scenario.moto_cores > MOTO_CORES_CAP:
        reasons.append(f"a moto process used {scenario.moto_cores:.2f} of its one core")
    scenario.capped = "; ".join(reasons) or None


# Once every task is ready, how long until each has joined and every roster counts them all:
# a joining task waits 1.2 heartbeats when it finds others, then each task recounts every beat.
FLEET_FORMS_S = 3 * HEARTBEAT_S


def _wait_until_formed(workers: list[Worker], timeout_s: float = 120.0) -> None:
    """Wait until every worker answers ready, then for the fleet to count them all."""
    deadline = time.monotonic() + timeout_s
    waiting = list(workers)
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} worker(s) not ready within {timeout_s:g} s")
        for worker in list(waiting):
            if worker.process.poll() is not None:
                raise RuntimeError(f"a worker exited: {finish(worker.process).stderr[-2000:]}")
            if worker.ready():
                waiting.remove(worker)
        time.sleep(0.2)
    time.sleep(FLEET_FORMS_S)


def _run(
    scenario: Scenario,
    stack: Stack,
    bodies: list[str],
    env: dict[str, str],
    proxy: FaultProxy,
    workers: list[Worker],
    live: LiveApp | None,
    plan: list[tuple[float, str]] | None,
    profile_s: float,
) -> None:
    steps = list(plan or [])
    # The fleet forms before the batch arrives, as a running service's does: the batch measures
    # its pace, and `scale` measures a fleet forming and changing under load.
    workers += [Worker(stack, env) for _ in range(scenario.workers)]
    _wait_until_formed(workers)
    roles_before = _cpu_by_role(stack.endpoints)
    busy_before = _busy_and_total_jiffies()
    wall_started = time.monotonic()
    with Traffic(stack, bodies, keep_queued=3000) as traffic:
        if live:
            live.__enter__()
        started = time.monotonic()
        wall_start = datetime.now(UTC)
        last_scrape = 0.0
        profiler: subprocess.Popen[bytes] | None = None
        while len(traffic.results) < scenario.jobs:
            time.sleep(0.25)
            now = time.monotonic() - started
            scrape = now - last_scrape >= 2.0
            last_scrape = now if scrape else last_scrape
            for worker in workers:
                worker.sample(scrape)
            if profile_s and profiler is None and len(traffic.results) >= scenario.jobs // 5:
                profiler = _start_profiler(workers[0].process.pid, profile_s)
            while steps and now >= steps[0][0]:
                _, action = steps.pop(0)
                scenario.events.append(((datetime.now(UTC) - wall_start).total_seconds(), action))
                alive = [w for w in workers if not w.finished]
                if action == "scale out to 3":
                    workers += [Worker(stack, env) for _ in range(3 - len(alive))]
                elif action == "kill one (SIGKILL)":
                    alive[-1].stop(signal.SIGKILL)
                elif action.startswith("stop one"):
                    alive[-1].stop(signal.SIGTERM)
            crashed = [w for w in workers if not w.finished and w.process.poll() not in (None, 0)]
            if crashed:
                run = finish(crashed[0].process)
                raise RuntimeError(f"{scenario.name}: a worker exited: {run.stderr[-2000:]}")
            if scrape and int(now) % 10 == 0:
                alive = sum(1 for w in workers if not w.finished and w.process.poll() is None)
                print(f"  {now:5.0f} s: {len(traffic.results)} results, {alive} tasks", flush=True)
            if now > 900:
                raise RuntimeError(f"{scenario.name}: only {len(traffic.results)} results")
        if live:
            live.__exit__(None, None, None)
        for worker in workers:
            worker.sample(scrape=True)
        roles_after = _cpu_by_role(stack.endpoints)
        busy_after = _busy_and_total_jiffies()
        wall_s = time.monotonic() - wall_started
        for worker in workers:
            if not worker.finished:
                worker.stop()
        if profiler is not None:
            scenario.profile = _read_profile(profiler)
    first = _first_receive(traffic)
    _figures(scenario, traffic, proxy.stats(), workers, live, first, wall_start)
    _call_figures(scenario, first, proxy.timeline())
    scenario.cpu_s = {"workers": round(sum(w.cpu_s for w in workers), 1)} | {
        role: round(roles_after[role] - roles_before.get(role, 0.0), 1) for role in roles_after
    }
    _judge_capacity(scenario, busy_before, busy_after, wall_s)


def _figures(
    scenario: Scenario,
    traffic: Traffic,
    stats: dict[str, Any],
    workers: list[Worker],
    live: LiveApp | None,
    first: datetime,
    events_zero: datetime,
) -> None:
    bodies = [r.body for r in traffic.results]
    finished = sorted(datetime.fromisoformat(b["finished_at"]) for b in bodies)
    done = {b["job_id"] for b in bodies}
    scenario.seconds = (finished[-1] - first).total_seconds()
    scenario.jobs_per_s = len(done) / scenario.seconds
    for body in bodies:
        if body["status"] != "succeeded":
            scenario.failed += 1
            code = (body.get("error") or {}).get("code", "unknown")
            scenario.failures[code] = scenario.failures.get(code, 0) + 1
            if len(scenario.failed_examples) < 5:
                scenario.failed_examples.append(body)
    tenth, ninetieth = finished[len(finished) // 10], finished[len(finished) * 9 // 10]
    middle_s = (ninetieth - tenth).total_seconds()
    scenario.steady_jobs_per_s = (len(finished) * 8 // 10) / middle_s if middle_s else 0.0
    if scenario.bound_jobs_per_s:
        scenario.share_of_budget = scenario.jobs_per_s / scenario.bound_jobs_per_s
        scenario.steady_share_of_budget = scenario.steady_jobs_per_s / scenario.bound_jobs_per_s
    cognito = stats["calls"].get("cognito-idp", {})
    all_calls = sum(cognito.get(op, 0) for ops in QUOTA_OPERATIONS.values() for op in ops)
    throttles = stats["faults"].get("quota_throttle", 0)
    if live:
        scenario.live_calls, scenario.live_throttles = live.calls, live.throttled
        scenario.live_throttled_share = live.throttled / max(1, live.calls)
    scenario.fleet_calls = all_calls - scenario.live_calls
    scenario.fleet_throttles = throttles - scenario.live_throttles
    scenario.fleet_throttled_share = scenario.fleet_throttles / max(1, scenario.fleet_calls)
    scenario.sqs_sns_requests_per_job = sum(w.requests for w in workers) / scenario.jobs
    scenario.worker_cpu_ms_per_job = sum(w.cpu_s for w in workers) * 1000 / scenario.jobs
    scenario.worker_peak_rss_mb = max(w.peak_rss_mb for w in workers)
    if scenario.producer_kms_calls is not None:
        kms_calls = sum(stats["calls"].get("kms", {}).values())
        scenario.kms_calls = kms_calls - scenario.producer_kms_calls
    offsets = [(moment - first).total_seconds() for moment in finished]
    scenario.timeline = _per_second(offsets)
    # The events were timed from the workers' start; the timelines start at the first receive.
    lead = (first - events_zero).total_seconds()
    scenario.events = [(round(moment - lead, 2), action) for moment, action in scenario.events]
    bound = scenario.bound_jobs_per_s
    if bound:
        for moment, action in scenario.events:
            scenario.recovery_by_results_s[action] = _recovery(offsets, moment, bound)


def _first_receive(traffic: Traffic) -> datetime:
    """When the batch's first job was received: where the timelines start."""
    return min(datetime.fromisoformat(r.body["received_at"]) for r in traffic.results)


def _call_figures(
    scenario: Scenario,
    first: datetime,
    admitted: list[tuple[float, str, str | None, float]],
) -> None:
    """The share of the budget as Cognito counts it, from the calls the proxy's quota admitted.

    Results finish when Cognito's emulator answers, in its own time (the answer times are kept
    too), so their timeline scatters around the pace the calls keep. The calls are what the budget
    limits, and what is measured against it here.
    """
    answers = sorted(took for _, _, _, took in admitted)
    if answers:
        scenario.cognito_answer_ms = {
            name: round(answers[min(len(answers) - 1, int(len(answers) * q))] * 1000, 1)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        }
    if not scenario.budgets:
        return
    category = binding_category(scenario.budgets)
    budget = scenario.budgets[category]
    operations = set(QUOTA_OPERATIONS[category])
    zero = first.timestamp()
    calls = sorted(
        at - zero
        for at, operation, username, _ in admitted
        if operation in operations and not (username or "").startswith(LIVE_USER_PREFIX)
    )
    if len(calls) < 10:
        return
    scenario.binding_category = category
    scenario.calls_share_of_budget = (len(calls) - 1) / (calls[-1] - calls[0]) / budget
    tenth, ninetieth = calls[len(calls) // 10], calls[len(calls) * 9 // 10]
    middle = len(calls) * 9 // 10 - len(calls) // 10
    scenario.steady_calls_share_of_budget = middle / (ninetieth - tenth) / budget
    scenario.calls_timeline = [(t, rate / budget) for t, rate in _per_second(calls)]
    for moment, action in scenario.events:
        scenario.recovery_s[action] = _recovery(calls, moment, budget)


def _per_second(offsets: list[float], window: float = 2.0) -> list[tuple[float, float]]:
    """Events per second over a sliding ``window``, every half second, from ``window`` on."""
    timeline = []
    t = window
    while offsets and t <= offsets[-1]:
        count = sum(1 for o in offsets if t - window < o <= t)
        timeline.append((round(t, 1), count / window))
        t += 0.5
    return timeline


# Recovery is read over spans of this many seconds: at 40 % of the quotas the scarcer category's
# budget is 12 calls a second, so one call is 4 % of a 2 s span and 2 % of a 4 s one, and a fleet
# pacing at 97 % of it shows 95 % or more over every 4 s span of its steady state.
RECOVERY_SPAN_S = 4.0


def _recovery(moments: list[float], at: float, rate: float) -> float | None:
    """Seconds after ``at`` until the fleet is back within 5 % of ``rate``: the first moment from
    which every span of :data:`RECOVERY_SPAN_S` starting in the next :data:`RECOVERY_SPAN_S`
    holds at least 95 % of ``rate`` (``moments``: sorted seconds of the calls or results).

    The spans start at the moment measured, not end there: a trailing window would add its own
    length to every recovery.
    """

    def count(start: float) -> int:
        return bisect.bisect_right(moments, start + RECOVERY_SPAN_S) - bisect.bisect_right(
            moments, start
        )

    needed = 0.95 * rate * RECOVERY_SPAN_S
    candidate = at
    while candidate + 2 * RECOVERY_SPAN_S <= moments[-1]:
        starts = [candidate + step * 0.25 for step in range(int(RECOVERY_SPAN_S / 0.25) + 1)]
        if all(count(start) >= needed for start in starts):
            return round(candidate - at, 1)
        candidate += 0.1
    return None


def _start_profiler(pid: int, seconds: float) -> subprocess.Popen[bytes]:
    output = OUT / "profile.txt"
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
         "--duration", str(int(seconds)), "--format", "raw", "--output", str(output),
         "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _read_profile(profiler: subprocess.Popen[bytes]) -> list[tuple[str, float]]:
    """Where the samples were, by the worker's (or library's) module: the top ten by share."""
    try:
        profiler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        profiler.kill()
        return []
    path = OUT / "profile.txt"
    if not path.exists():
        return []
    by_module: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        by_module[_owner(frames)] += int(count)
    path.unlink()
    return [(name, round(n / total, 3)) for name, n in by_module.most_common(10)] if total else []


def _owner(frames: list[str]) -> str:
    """Name a sample by its innermost frame, as ``package.module: function``."""
    leaf = frames[-1]
    function, _, where = leaf.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    marker = "site-packages/"
    if marker in path:
        path = path.split(marker, 1)[1]
    elif "/worker/" in path:
        path = "worker/" + path.split("/worker/", 1)[1]
    elif "/lib/python" in path:
        path = "stdlib/" + path.split("/lib/python", 1)[1].split("/", 1)[-1]
    return f"{path.removesuffix('.py')}: {function}"


def bench_baseline(endpoints: Endpoints, proxy: FaultProxy, jobs: int) -> Scenario:
    stack = provision(endpoints, f"bench-baseline-{int(time.time())}")
    scenario = Scenario("baseline", jobs, 1, budgets=dict(DEFAULT_QUOTAS))
    scenario.bound_jobs_per_s = budget_bound(scenario.budgets)
    with Traffic(stack, mixed_jobs(jobs, "baseline"), keep_queued=1000):
        time.sleep(0.5)
        started = time.monotonic()
        # Its CPU is not measured: it runs in this process, beside the producer thread.
        done = run_baseline(stack, proxy.url, jobs)
        scenario.seconds = time.monotonic() - started
    scenario.jobs = done
    scenario.jobs_per_s = done / scenario.seconds
    scenario.share_of_budget = scenario.jobs_per_s / scenario.bound_jobs_per_s
    stats = proxy.stats()
    scenario.fleet_throttles = stats["faults"].get("quota_throttle", 0)
    scenario.fleet_calls = sum(stats["calls"].get("cognito-idp", {}).values())
    scenario.fleet_throttled_share = scenario.fleet_throttles / max(1, scenario.fleet_calls)
    scenario.sqs_sns_requests_per_job = 3.0  # receive, publish, delete: one each per job
    scenario.load_average = os.getloadavg()
    return scenario


# ------------------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--baseline-jobs", type=int, default=200)
    parser.add_argument("--scale-jobs", type=int, default=4500)
    parser.add_argument("--ceiling-jobs", type=int, default=6000)
    parser.add_argument("--latency-ms", type=float, default=80)
    parser.add_argument("--only", help="comma-separated scenario names (default: all)")
    parser.add_argument(
        "--quota-scale",
        type=float,
        default=1.0,
        help="scale the quotas, budgets and live traffic of every scenario (to fit a busy machine)",
    )
    parser.add_argument(
        "--fleet-scale",
        type=float,
        default=FLEET_SCALE,
        help="scale them further in the fleet scenarios (fleet-of-3, live-app, scale)",
    )
    args = parser.parse_args()
    chosen = set(args.only.split(",")) if args.only else None

    def want(name: str) -> bool:
        return chosen is None or name in chosen

    OUT.mkdir(exist_ok=True)
    latency = args.latency_ms / 1000
    k = args.quota_scale
    quotas = {name: rps * k for name, rps in DEFAULT_QUOTAS.items()}
    kf = k * args.fleet_scale
    fleet_quotas = {name: rps * kf for name, rps in DEFAULT_QUOTAS.items()}
    live_budgets = {"UserCreation": 40.0 * kf, "UserAccountRecovery": 30.0 * kf}
    results: list[Scenario] = []
    load_at_start = os.getloadavg()
    with local_aws() as local, running_fauxqs() as fauxqs_url, moto_server() as tables_url:
        endpoints = Endpoints(local.moto, local.cognito, sqs_sns=fauxqs_url, dynamodb=tables_url)
        with running_proxy(endpoints.moto, endpoints.cognito) as proxy:
            if want("one-worker"):
                print(f"one worker, {args.jobs} jobs at the default quota ...", flush=True)
                with configured(proxy, latency_s=latency, quotas=quotas):
                    one = Scenario("one-worker", args.jobs, 1, budgets=quotas, quota_scale=k)
                    results.append(run_fleet(endpoints, proxy, one, shared_store=False))
            if want("encrypted"):
                print(f"one worker, {args.jobs} jobs, passwords encrypted ...", flush=True)
                with configured(proxy, latency_s=latency, quotas=quotas):
                    sealed = Scenario("encrypted", args.jobs, 1, budgets=quotas, quota_scale=k)
                    results.append(
                        run_fleet(endpoints, proxy, sealed, shared_store=False, encrypted=True)
                    )
            if want("baseline"):
                print(f"naive baseline, {args.baseline_jobs} jobs ...", flush=True)
                with configured(proxy, latency_s=latency, quotas=quotas):
                    results.append(bench_baseline(endpoints, proxy, args.baseline_jobs))
            if want("fleet-of-3"):
                print(f"three workers on one fleet budget, {args.jobs} jobs ...", flush=True)
                with configured(proxy, latency_s=latency, quotas=fleet_quotas):
                    three = Scenario("fleet-of-3", args.jobs, 3, budgets=fleet_quotas)
                    three.quota_scale = kf
                    results.append(run_fleet(endpoints, proxy, three))
            if want("live-app"):
                print(f"three workers, fleet budget 40 of 50, live app at {LIVE_APP_RPS:g} RPS "
                      f"(times {kf:g}), {args.jobs} jobs ...", flush=True)  # fmt: skip
                with configured(proxy, latency_s=latency, quotas=fleet_quotas):
                    live = Scenario("live-app", args.jobs, 3, budgets=live_budgets)
                    live.quota_scale = kf
                    results.append(run_fleet(endpoints, proxy, live, live_rps=LIVE_APP_RPS * kf))
            if want("live-app-headroom"):
                # The recipe of docs/fleet.md: the quota less the live peak less one call a second.
                creation = DEFAULT_QUOTAS["UserCreation"] * kf - LIVE_APP_RPS * kf - 1
                print(f"three workers, fleet budget {creation:g} of "
                      f"{DEFAULT_QUOTAS['UserCreation'] * kf:g}, live app at "
                      f"{LIVE_APP_RPS * kf:g} RPS, {args.jobs} jobs ...", flush=True)  # fmt: skip
                headroom = {"UserCreation": creation, "UserAccountRecovery": 30.0 * kf}
                with configured(proxy, latency_s=latency, quotas=fleet_quotas):
                    spared = Scenario("live-app-headroom", args.jobs, 3, budgets=headroom)
                    spared.quota_scale = kf
                    results.append(run_fleet(endpoints, proxy, spared, live_rps=LIVE_APP_RPS * kf))
            if want("scale"):
                print(f"scale 1 -> 3 -> 1 with a kill, {args.scale_jobs} jobs ...", flush=True)
                plan = [(12.0, "scale out to 3"), (27.0, "kill one (SIGKILL)"),
                        (42.0, "stop one (SIGTERM)")]  # fmt: skip
                # A killed task's messages come back after the visibility timeout: a short one.
                short = {"VISIBILITY_TIMEOUT_S": "20", "JOB_TIMEOUT_S": "10",
                         "IDEMPOTENCY_LEASE_S": "10"}  # fmt: skip
                with configured(proxy, latency_s=latency, quotas=fleet_quotas):
                    scale = Scenario("scale", args.scale_jobs, 1, budgets=fleet_quotas)
                    scale.quota_scale = kf
                    results.append(run_fleet(endpoints, proxy, scale, extra=short, plan=plan))
            if want("quota-lifted"):
                print(f"quota lifted, {args.ceiling_jobs} jobs, profiled ...", flush=True)
                with configured(proxy, latency_s=0, quotas=None):
                    lifted = {"UserCreation": 10000.0, "UserAccountRecovery": 10000.0}
                    ceiling = Scenario("quota-lifted", args.ceiling_jobs, 1, budgets=lifted)
                    results.append(
                        run_fleet(endpoints, proxy, ceiling, profile_s=10, shared_store=False)
                    )
                    # Its RATE_* settings only keep the pacers out of the way: no share of them.
                    ceiling.bound_jobs_per_s = ceiling.binding_category = None
                    ceiling.share_of_budget = ceiling.steady_share_of_budget = None
                    ceiling.calls_share_of_budget = ceiling.steady_calls_share_of_budget = None
                    ceiling.calls_timeline = []
    prefix = "" if chosen is None and k == 1.0 else f"partial-{k:g}-"
    report(results, load_at_start, prefix)
    if chosen is None:
        plot(results, OUT / f"{prefix}throughput.png")


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def markdown_table(date: str, results: list[Scenario]) -> str:
    """The table for docs/benchmark.md."""
    lines = [
        f"Measured {date} on {machine()}.",
        "",
        "| scenario | quotas | tasks | jobs | jobs/s | budget bound | of budget | steady "
        "| calls of budget | steady calls | failed "
        "| fleet throttled | live app throttled | SQS+SNS requests/job | worker CPU ms/job "
        "| peak RSS MB | machine busy | moto cores | Cognito answer p50/p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|",
    ]
    for r in results:
        bound = f"{r.bound_jobs_per_s:.1f}" if r.bound_jobs_per_s else "—"
        share = f"{r.share_of_budget:.1%}" if r.share_of_budget is not None else "—"
        if r.capped:
            share += " (capped)"
        steady = f"{r.steady_share_of_budget:.1%}" if r.steady_share_of_budget is not None else "—"
        live = f"{r.live_throttled_share:.2%}" if r.live_throttled_share is not None else "—"
        rss = f"{r.worker_peak_rss_mb:.1f}" if r.worker_peak_rss_mb else "—"
        cpu = f"{r.worker_cpu_ms_per_job:.2f}" if r.worker_cpu_ms_per_job else "—"
        tasks = "1→3→1" if r.name == "scale" else str(r.workers)
        calls = _percent(r.calls_share_of_budget)
        steady_calls = _percent(r.steady_calls_share_of_budget)
        answer = r.cognito_answer_ms
        answers = f"{answer['p50']:.0f} / {answer['p99']:.0f}" if answer else "—"
        lines.append(
            f"| {r.name} | {r.quota_scale:.0%} | {tasks} | {r.jobs:,} | {r.jobs_per_s:.1f} "
            f"| {bound} | {share} | {steady} | {calls} | {steady_calls} | {r.failed} "
            f"| {r.fleet_throttled_share:.2%} ({r.fleet_throttles}/{r.fleet_calls}) "
            f"| {live} | {r.sqs_sns_requests_per_job:.3f} | {cpu} | {rss} "
            f"| {r.machine_busy:.0%} | {r.moto_cores:.2f} | {answers} |"
        )
    return "\n".join(lines) + "\n"


def _percent(share: float | None) -> str:
    return f"{share:.1%}" if share is not None else "—"


def report(
    results: list[Scenario], load_at_start: tuple[float, float, float], prefix: str = ""
) -> None:
    by_name = {r.name: r for r in results}
    date = datetime.now(UTC).isoformat(timespec="seconds")
    summary: dict[str, Any] = {
        "date": date,
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "worker_vs_baseline": (
            by_name["one-worker"].jobs_per_s / by_name["baseline"].jobs_per_s
            if "one-worker" in by_name and "baseline" in by_name
            else None
        ),
        "scenarios": [asdict(r) for r in results],
    }
    (OUT / f"{prefix}results.json").write_text(json.dumps(summary, indent=2))
    (OUT / f"{prefix}table.md").write_text(markdown_table(date, results))
    print()
    print(f"{date}  {machine()}")
    print(f"load average at start {load_at_start}, at end {os.getloadavg()}")
    print(markdown_table(date, results))
    if summary["worker_vs_baseline"]:
        print(f"one worker / baseline: {summary['worker_vs_baseline']:.1f}x")
    for r in results:
        print(f"{r.name}: CPU seconds by process {r.cpu_s}; failures {r.failures}")
        if r.capped:
            print(f"  capped: {r.capped}: these figures measure the machine, not the worker")
        for example in r.failed_examples:
            print(f"  failed: {json.dumps(example)[:400]}")
    if "scale" in by_name:
        scale = by_name["scale"]
        print(
            f"scale events (s): {scale.events}; back within 5 % of the budget after, by the "
            f"calls: {scale.recovery_s}; by the results: {scale.recovery_by_results_s}"
        )
    if "encrypted" in by_name:
        sealed = by_name["encrypted"]
        plain = by_name.get("one-worker")
        added = (
            f", {sealed.worker_cpu_ms_per_job - plain.worker_cpu_ms_per_job:+.2f} ms of worker "
            "CPU a job against one-worker"
            if plain
            else ""
        )
        print(
            f"encrypted: the worker's KMS calls {sealed.kms_calls} for {sealed.jobs} jobs; "
            f"the producer's {sealed.producer_kms_calls}, at "
            f"{sealed.producer_encrypt_cpu_ms_per_field:.2f} ms CPU a password to encrypt{added}"
        )
    for name in ("live-app", "live-app-headroom"):
        if name in by_name:
            live = by_name[name]
            print(f"{name}: live app calls {live.live_calls}, throttled {live.live_throttles}")
    if "quota-lifted" in by_name:
        print("where the worker's CPU goes (py-spy samples, innermost frame):")
        for name, share in by_name["quota-lifted"].profile:
            print(f"  {share:6.1%}  {name}")


def plot(results: list[Scenario], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for scenario in results:
        if (
            scenario.name not in ("one-worker", "fleet-of-3", "live-app")
            or not scenario.calls_timeline
        ):
            continue
        left.plot(
            [t for t, _ in scenario.calls_timeline],
            [100 * share for _, share in scenario.calls_timeline],
            label=f"{scenario.name} ({_percent(scenario.steady_calls_share_of_budget)} steady)",
        )
    left.axhline(100, color="grey", linestyle=":")
    left.set_ylim(0, 115)
    left.set_xlabel("seconds since the first job was received")
    left.set_ylabel("% of the budget (Cognito calls, 2 s window)")
    left.set_title("the fleet's calls of the scarcer category, against its budget")
    left.legend(loc="lower right")
    scale = next(r for r in results if r.name == "scale")
    if scale.bound_jobs_per_s:
        right.plot(
            [t for t, _ in scale.timeline],
            [100 * rate / scale.bound_jobs_per_s for _, rate in scale.timeline],
            color="C3", alpha=0.3, label="results finished (jobs/s against the bound)",
        )  # fmt: skip
    right.plot(
        [t for t, _ in scale.calls_timeline],
        [100 * share for _, share in scale.calls_timeline],
        color="C3", label="Cognito calls (against the budget)",
    )  # fmt: skip
    right.axhspan(95, 100, color="C3", alpha=0.1)
    right.set_ylim(0, 115)
    for moment, action in scale.events:
        right.axvline(moment, color="grey", linestyle="--")
        right.text(moment, 0.03, action, transform=right.get_xaxis_transform(), rotation=90,
                   fontsize=8, va="bottom", ha="right")  # fmt: skip
    right.set_xlabel("seconds since the first job was received")
    right.set_title("scale 1 → 3 → 1, one task killed; band: within 5 % of the budget")
    right.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
