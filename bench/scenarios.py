"""The scenarios: each one's stack, workers, traffic and plan, run until every job is done."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from unittest import mock

from bench import lanes
from bench.baseline import run_baseline
from bench.figures import (
    DEFAULT_QUOTAS,
    QUOTA_OPERATIONS,
    Scenario,
    budget_bound,
    mixed_jobs,
)
from bench.lanes import LaneRun
from bench.live_app import LiveApp
from bench.measuring import (
    Worker,
    busy_and_total_jiffies,
    call_figures,
    cpu_by_role,
    first_receive,
    judge_capacity,
    read_profile,
    result_figures,
    start_profiler,
    wait_until_formed,
)
from tests.support.dynalite import running_dynalite
from tests.support.fault_proxy import FaultProxy, running_proxy
from tests.support.fauxqs import running_fauxqs
from tests.support.harness import Traffic, finish
from worker.contract.fields import FieldEncryptor, encrypt_job
from worker.contract.jobs import JOB_ADAPTER, encode_job
from worker.local.aws import (
    REGION,
    Endpoints,
    Stack,
    aws_client,
    create_idempotency_table,
    local_aws,
    provision,
)

# The fleet scenarios run at this share of the default quotas (budgets and live traffic alike).
# Three workers whose claims go through DynamoDB cost about 45 ms of CPU a job across the bench's
# processes (27 of them in moto, one Python process that cannot use a second core): a machine of
# two cores cannot serve the 75 jobs/s of the default quotas, and the figures would measure it.
FLEET_SCALE = 0.4
LIVE_APP_RPS = 10.0


def rate_settings(budgets: dict[str, float]) -> dict[str, str]:
    return {
        "RATE_USER_CREATION_RPS": str(budgets["UserCreation"]),
        "RATE_USER_ACCOUNT_RECOVERY_RPS": str(budgets["UserAccountRecovery"]),
    }


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
    # The fleet forms before the batch arrives, as a running service's does: the batch measures
    # its pace, and `scale` measures a fleet forming and changing under load.
    workers += [Worker(stack, env) for _ in range(scenario.workers)]
    wait_until_formed(workers)
    roles_before = cpu_by_role(stack.endpoints)
    busy_before = busy_and_total_jiffies()
    wall_started = time.monotonic()
    with Traffic(stack, bodies, keep_queued=3000) as traffic:
        if live:
            live.__enter__()
        wall_start = datetime.now(UTC)
        steps = list(plan or [])
        profiler = _until_done(scenario, traffic, stack, env, workers, steps, profile_s, wall_start)
        if live:
            live.__exit__(None, None, None)
        for worker in workers:
            worker.sample(scrape=True)
        roles_after = cpu_by_role(stack.endpoints)
        busy_after = busy_and_total_jiffies()
        wall_s = time.monotonic() - wall_started
        for worker in workers:
            if not worker.finished:
                worker.stop()
        if profiler is not None:
            scenario.profile = read_profile(profiler)
    first = first_receive(traffic)
    result_figures(scenario, traffic, proxy.stats(), workers, live, first, wall_start)
    call_figures(scenario, first, proxy.timeline())
    scenario.cpu_s = {"workers": round(sum(w.cpu_s for w in workers), 1)} | {
        role: round(roles_after[role] - roles_before.get(role, 0.0), 1) for role in roles_after
    }
    judge_capacity(scenario, busy_before, busy_after, wall_s)


def _until_done(
    scenario: Scenario,
    traffic: Traffic,
    stack: Stack,
    env: dict[str, str],
    workers: list[Worker],
    steps: list[tuple[float, str]],
    profile_s: float,
    wall_start: datetime,
) -> subprocess.Popen[bytes] | None:
    """Sample the workers and carry out the plan's steps (timed from ``wall_start``) until every
    result is in; return the profiler if one was started."""
    started = time.monotonic()
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
            profiler = start_profiler(workers[0].process.pid, profile_s)
        while steps and now >= steps[0][0]:
            _, action = steps.pop(0)
            scenario.events.append(((datetime.now(UTC) - wall_start).total_seconds(), action))
            _carry_out(action, workers, stack, env)
        crashed = [w for w in workers if not w.finished and w.process.poll() not in (None, 0)]
        if crashed:
            run = finish(crashed[0].process)
            raise RuntimeError(f"{scenario.name}: a worker exited: {run.stderr[-2000:]}")
        if scrape and int(now) % 10 == 0:
            alive = sum(1 for w in workers if not w.finished and w.process.poll() is None)
            print(f"  {now:5.0f} s: {len(traffic.results)} results, {alive} tasks", flush=True)
        if now > 900:
            raise RuntimeError(f"{scenario.name}: only {len(traffic.results)} results")
    return profiler


def _carry_out(action: str, workers: list[Worker], stack: Stack, env: dict[str, str]) -> None:
    """One step of a scenario's plan: scale out, or kill or stop the newest task alive."""
    alive = [w for w in workers if not w.finished]
    if action == "scale out to 3":
        workers += [Worker(stack, env) for _ in range(3 - len(alive))]
    elif action == "kill one (SIGKILL)":
        alive[-1].stop(signal.SIGKILL)
    elif action.startswith("stop one"):
        alive[-1].stop(signal.SIGTERM)


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


@dataclass(frozen=True)
class Options:
    """What a run was asked for: the sizes, Cognito's latency, and the scales of the quotas."""

    jobs: int
    baseline_jobs: int
    scale_jobs: int
    ceiling_jobs: int
    latency_s: float
    quota_scale: float  # every scenario's quotas, budgets and live traffic times this
    fleet_scale: float  # the fleet scenarios' times this again

    @property
    def fleet_k(self) -> float:
        return self.quota_scale * self.fleet_scale

    def quotas(self) -> dict[str, float]:
        return {name: rps * self.quota_scale for name, rps in DEFAULT_QUOTAS.items()}

    def fleet_quotas(self) -> dict[str, float]:
        return {name: rps * self.fleet_k for name, rps in DEFAULT_QUOTAS.items()}


Run = Callable[[Options, Endpoints, FaultProxy], Scenario]


def one_worker(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> Scenario:
    print(f"one worker, {o.jobs} jobs at the default quota ...", flush=True)
    quotas = o.quotas()
    with configured(proxy, latency_s=o.latency_s, quotas=quotas):
        one = Scenario("one-worker", o.jobs, 1, budgets=quotas, quota_scale=o.quota_scale)
        return run_fleet(endpoints, proxy, one, shared_store=False)


def encrypted(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> Scenario:
    print(f"one worker, {o.jobs} jobs, passwords encrypted ...", flush=True)
    quotas = o.quotas()
    with configured(proxy, latency_s=o.latency_s, quotas=quotas):
        sealed = Scenario("encrypted", o.jobs, 1, budgets=quotas, quota_scale=o.quota_scale)
        return run_fleet(endpoints, proxy, sealed, shared_store=False, encrypted=True)


def baseline(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> Scenario:
    print(f"naive baseline, {o.baseline_jobs} jobs ...", flush=True)
    with configured(proxy, latency_s=o.latency_s, quotas=o.quotas()):
        return bench_baseline(endpoints, proxy, o.baseline_jobs)


def fleet_of_3(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> Scenario:
    print(f"three workers on one fleet budget, {o.jobs} jobs ...", flush=True)
    quotas = o.fleet_quotas()
    with configured(proxy, latency_s=o.latency_s, quotas=quotas):
        three = Scenario("fleet-of-3", o.jobs, 3, budgets=quotas, quota_scale=o.fleet_k)
        return run_fleet(endpoints, proxy, three)


def live_app(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> Scenario:
    kf = o.fleet_k
    print(f"three workers, fleet budget 40 of 50, live app at {LIVE_APP_RPS:g} RPS "
          f"(times {kf:g}), {o.jobs} jobs ...", flush=True)  # fmt: skip
    budgets = {"UserCreation": 40.0 * kf, "UserAccountRecovery": 30.0 * kf}
    with configured(proxy, latency_s=o.latency_s, quotas=o.fleet_quotas()):
        live = Scenario("live-app", o.jobs, 3, budgets=budgets, quota_scale=kf)
        return run_fleet(endpoints, proxy, live, live_rps=LIVE_APP_RPS * kf)


def live_app_headroom(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> Scenario:
    kf = o.fleet_k
    # The recipe of docs/fleet.md: the quota less the live peak less one call a second.
    creation = DEFAULT_QUOTAS["UserCreation"] * kf - LIVE_APP_RPS * kf - 1
    print(f"three workers, fleet budget {creation:g} of "
          f"{DEFAULT_QUOTAS['UserCreation'] * kf:g}, live app at "
          f"{LIVE_APP_RPS * kf:g} RPS, {o.jobs} jobs ...", flush=True)  # fmt: skip
    headroom = {"UserCreation": creation, "UserAccountRecovery": 30.0 * kf}
    with configured(proxy, latency_s=o.latency_s, quotas=o.fleet_quotas()):
        spared = Scenario("live-app-headroom", o.jobs, 3, budgets=headroom, quota_scale=kf)
        return run_fleet(endpoints, proxy, spared, live_rps=LIVE_APP_RPS * kf)


def scale(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> Scenario:
    print(f"scale 1 -> 3 -> 1 with a kill, {o.scale_jobs} jobs ...", flush=True)
    plan = [(12.0, "scale out to 3"), (27.0, "kill one (SIGKILL)"),
            (42.0, "stop one (SIGTERM)")]  # fmt: skip
    # A killed task's messages come back after the visibility timeout: a short one.
    short = {"VISIBILITY_TIMEOUT_S": "20", "JOB_TIMEOUT_S": "10",
             "IDEMPOTENCY_LEASE_S": "10"}  # fmt: skip
    quotas = o.fleet_quotas()
    with configured(proxy, latency_s=o.latency_s, quotas=quotas):
        scaled = Scenario("scale", o.scale_jobs, 1, budgets=quotas, quota_scale=o.fleet_k)
        return run_fleet(endpoints, proxy, scaled, extra=short, plan=plan)


def quota_lifted(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> Scenario:
    print(f"quota lifted, {o.ceiling_jobs} jobs, profiled ...", flush=True)
    with configured(proxy, latency_s=0, quotas=None):
        lifted = {"UserCreation": 10000.0, "UserAccountRecovery": 10000.0}
        ceiling = Scenario("quota-lifted", o.ceiling_jobs, 1, budgets=lifted)
        run_fleet(endpoints, proxy, ceiling, profile_s=10, shared_store=False)
    # Its RATE_* settings only keep the pacers out of the way: no share of them.
    ceiling.bound_jobs_per_s = ceiling.binding_category = None
    ceiling.share_of_budget = ceiling.steady_share_of_budget = None
    ceiling.calls_share_of_budget = ceiling.steady_calls_share_of_budget = None
    ceiling.calls_timeline = []
    return ceiling


#: Every scenario by name, in the order a full run takes them.
SCENARIOS: dict[str, Run] = {
    "one-worker": one_worker,
    "encrypted": encrypted,
    "baseline": baseline,
    "fleet-of-3": fleet_of_3,
    "live-app": live_app,
    "live-app-headroom": live_app_headroom,
    "scale": scale,
    "quota-lifted": quota_lifted,
}


LaneRunner = Callable[[Options, Endpoints, FaultProxy], LaneRun]


def _quiet(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> LaneRun:
    with configured(proxy, latency_s=o.latency_s, quotas=o.quotas()):
        return lanes.quiet(endpoints, proxy, o.quota_scale)


def _lanes(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> LaneRun:
    with configured(proxy, latency_s=o.latency_s, quotas=o.quotas()):
        return lanes.lanes(endpoints, proxy, o.quota_scale)


def _lanes_fleet(o: Options, endpoints: Endpoints, proxy: FaultProxy) -> LaneRun:
    with configured(proxy, latency_s=o.latency_s, quotas=o.fleet_quotas()):
        return lanes.lanes_fleet(endpoints, proxy, o.fleet_k)


#: The lanes' scenarios (bench/lanes.py), after the others.
LANE_SCENARIOS: dict[str, LaneRunner] = {
    "quiet": _quiet,
    "lanes": _lanes,
    "lanes-fleet": _lanes_fleet,
}


def run_scenarios(
    options: Options, chosen: set[str] | None
) -> tuple[list[Scenario], list[LaneRun]]:
    """Run the chosen scenarios (all when ``chosen`` is None) against one set of emulators."""
    results: list[Scenario] = []
    lane_runs: list[LaneRun] = []
    with local_aws() as local, running_fauxqs() as fauxqs_url, running_dynalite() as tables_url:
        endpoints = Endpoints(local.moto, local.cognito, sqs_sns=fauxqs_url, dynamodb=tables_url)
        with running_proxy(
            endpoints.moto, endpoints.cognito, upstream_dynamodb=endpoints.tables
        ) as proxy:
            for name, run in SCENARIOS.items():
                if chosen is None or name in chosen:
                    results.append(run(options, endpoints, proxy))
            for name, lane_run in LANE_SCENARIOS.items():
                if chosen is None or name in chosen:
                    lane_runs.append(lane_run(options, endpoints, proxy))
    return results, lane_runs
