"""``make bench``: throughput at the Cognito quota, against a naive baseline, with costs per job.

It starts the local AWS behind the fault proxy, which adds Cognito's latency and enforces a
per-category quota (answering TooManyRequestsException above it, as Cognito does), then runs:

1. one worker on N jobs (60 % sign-ups, 40 % password resets) at the default quotas;
2. the naive baseline (one message at a time, the seed's way) on the same proxy and quotas;
3. one worker at the quotas scaled down (default 40 %), below what the emulator can serve on
   this machine, to show how closely the worker tracks a quota;
4. three worker processes sharing that scaled quota;
5. the quota lifted and no added latency: the ceiling of worker plus emulator here, where the
   CPU goes, and the worker's memory at 2,000 jobs and at the end.

A producer keeps a few hundred jobs queued and a reader drains the results as they come: moto's
SQS answers in time proportional to queue depth, so holding all N jobs at once would measure moto.
Figures go to stdout, bench/results/results.json and bench/results/throughput.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.baseline import run_baseline
from tests.support.fault_proxy import FaultProxy, running_proxy
from tests.support.harness import Traffic, finish, job, start_worker
from worker.local_aws import Endpoints, create_idempotency_table, local_aws, provision

OUT = Path(__file__).parent / "results"
QUOTAS = {  # category -> (operations, default quota in requests per second)
    "UserCreation": (["SignUp", "ConfirmSignUp"], 50.0),
    "UserAccountRecovery": (["ForgotPassword", "ConfirmForgotPassword"], 30.0),
}
SIGN_UP_SHARE = 0.6
PASSWORD = "Bench-Passw0rd!"


@dataclass
class Scenario:
    """One run's figures."""

    name: str
    jobs: int
    workers: int
    seconds: float = 0.0
    jobs_per_s: float = 0.0
    bound_jobs_per_s: float | None = None  # what the quota allows for this mix
    ratio_to_quota: float | None = None
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # error code -> jobs
    throttles: int = 0
    sqs_sns_requests_per_job: float = 0.0
    worker_cpu_ms_per_job: float = 0.0
    worker_peak_rss_mb: float = 0.0
    worker_rss_mb_at_2000: float | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (second, results)


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


def quota_bound(scale: float = 1.0) -> float:
    """The highest job rate the quotas allow for the mix: its scarcest category decides."""
    creation = QUOTAS["UserCreation"][1] * scale / SIGN_UP_SHARE
    recovery = QUOTAS["UserAccountRecovery"][1] * scale / (1 - SIGN_UP_SHARE)
    return min(creation, recovery)


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pids(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cpu_by_role() -> dict[str, float]:
    roles = {"emulator (moto)": "moto.server", "Cognito front": "worker.local_aws",
             "proxy": "tests.support.fault_proxy"}  # fmt: skip
    return {role: sum(_proc_cpu_s(pid) for pid in _pids(marker)) for role, marker in roles.items()}


@contextmanager
def configured(
    proxy: FaultProxy, *, latency_s: float, quota: bool, scale: float = 1.0
) -> Iterator[None]:
    proxy.clear_rules()
    proxy.clear_quota()
    proxy.reset_stats()
    if latency_s:
        proxy.add_rule("latency", service="cognito", latency_s=latency_s)
    if quota:
        for name, (operations, rps) in QUOTAS.items():
            proxy.set_quota(name, operations, rps * scale)
    yield
    proxy.clear_rules()
    proxy.clear_quota()


def run_workers(
    endpoints: Endpoints, proxy: FaultProxy, scenario: Scenario, settings: dict[str, str]
) -> Scenario:
    stack = provision(endpoints, f"bench-{scenario.name}-{int(time.time())}")
    bodies = mixed_jobs(scenario.jobs, scenario.name)
    env = {
        "AWS_ENDPOINT_URL": proxy.url,
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": proxy.url,
        "RECEIVE_WAIT_S": "20",
        "LOG_LEVEL": "INFO",
        **settings,
    }
    roles_before = _cpu_by_role()
    with Traffic(stack, bodies, keep_queued=300) as traffic:
        workers = [start_worker(stack, **env) for _ in range(scenario.workers)]
        started = time.monotonic()
        while len(traffic.results) < scenario.jobs:
            time.sleep(0.2)
            if scenario.worker_rss_mb_at_2000 is None and len(traffic.results) >= 2000:
                scenario.worker_rss_mb_at_2000 = max(_proc_peak_rss_mb(w.pid) for w in workers)
            if time.monotonic() - started > 1800:
                raise RuntimeError(f"{scenario.name}: only {len(traffic.results)} results")
        worker_cpu = sum(_proc_cpu_s(w.pid) for w in workers)
        scenario.worker_peak_rss_mb = max(_proc_peak_rss_mb(w.pid) for w in workers)
        roles_after = _cpu_by_role()
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            finish(worker)
    stats = proxy.stats()
    bodies_out = [r.body for r in traffic.results]
    first = min(datetime.fromisoformat(b["received_at"]) for b in bodies_out)
    finished = sorted(datetime.fromisoformat(b["finished_at"]) for b in bodies_out)
    scenario.seconds = (finished[-1] - first).total_seconds()
    scenario.jobs_per_s = scenario.jobs / scenario.seconds
    scenario.failed = sum(1 for b in bodies_out if b["status"] != "succeeded")
    for body in bodies_out:
        if body["status"] != "succeeded":
            code = (body.get("error") or {}).get("code", "unknown")
            scenario.failures[code] = scenario.failures.get(code, 0) + 1
    scenario.throttles = stats["faults"].get("quota_throttle", 0)
    requests = stats["requests"]
    scenario.sqs_sns_requests_per_job = (requests.get("sqs", 0) + requests.get("sns", 0)) / (
        scenario.jobs
    )
    scenario.worker_cpu_ms_per_job = worker_cpu * 1000 / scenario.jobs
    scenario.cpu_s = {"worker": round(worker_cpu, 1)} | {
        role: round(roles_after[role] - roles_before.get(role, 0.0), 1) for role in roles_after
    }
    per_second: dict[int, int] = {}
    for moment in finished:
        second = int((moment - first).total_seconds())
        per_second[second] = per_second.get(second, 0) + 1
    scenario.timeline = sorted(per_second.items())
    return scenario


def bench_baseline(endpoints: Endpoints, proxy: FaultProxy, jobs: int) -> Scenario:
    stack = provision(endpoints, f"bench-baseline-{int(time.time())}")
    scenario = Scenario("baseline", jobs, 1)
    with Traffic(stack, mixed_jobs(jobs, "baseline"), keep_queued=100) as traffic:
        time.sleep(0.5)
        started = time.monotonic()
        # Its CPU is not measured: it runs in this process, beside the producer thread.
        done = run_baseline(stack, proxy.url, jobs)
        scenario.seconds = time.monotonic() - started
        del traffic
    scenario.jobs = done
    scenario.jobs_per_s = done / scenario.seconds
    stats = proxy.stats()
    scenario.throttles = stats["faults"].get("quota_throttle", 0)
    requests = stats["requests"]
    scenario.sqs_sns_requests_per_job = (requests.get("sqs", 0) + requests.get("sns", 0)) / done
    return scenario


def plot(scenarios: list[Scenario], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for scenario in scenarios:
        seconds = [s for s, _ in scenario.timeline]
        counts = [c for _, c in scenario.timeline]
        line = axes.plot(
            seconds, counts, label=f"{scenario.name} ({scenario.jobs_per_s:.1f} jobs/s)"
        )[0]
        if scenario.bound_jobs_per_s:
            axes.axhline(scenario.bound_jobs_per_s, color=line.get_color(), linestyle=":")
    axes.set_xlabel("seconds since the first job was received")
    axes.set_ylabel("results per second")
    axes.set_title("results per second; dotted: the quota's bound for the job mix")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def budgets(scale: float) -> dict[str, str]:
    """The worker's rate budgets: the quota it is given."""
    return {
        "RATE_USER_CREATION_RPS": str(QUOTAS["UserCreation"][1] * scale),
        "RATE_USER_ACCOUNT_RECOVERY_RPS": str(QUOTAS["UserAccountRecovery"][1] * scale),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--baseline-jobs", type=int, default=300)
    parser.add_argument("--ceiling-jobs", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=80)
    parser.add_argument("--quota-scale", type=float, default=0.4)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    latency = args.latency_ms / 1000
    scale = args.quota_scale
    results: list[Scenario] = []
    with local_aws() as endpoints, running_proxy(endpoints.moto, endpoints.cognito) as proxy:
        with configured(proxy, latency_s=latency, quota=True):
            print(f"1/5 one worker, {args.jobs} jobs at the default quota ...", flush=True)
            one = Scenario("default-quota", args.jobs, 1, bound_jobs_per_s=quota_bound())
            results.append(run_workers(endpoints, proxy, one, budgets(1.0)))
        with configured(proxy, latency_s=latency, quota=True):
            print(f"2/5 naive baseline, {args.baseline_jobs} jobs ...", flush=True)
            results.append(bench_baseline(endpoints, proxy, args.baseline_jobs))
        with configured(proxy, latency_s=latency, quota=True, scale=scale):
            print(f"3/5 one worker, {args.jobs} jobs at {scale:.0%} of the quota ...", flush=True)
            scaled = Scenario("scaled-quota", args.jobs, 1, bound_jobs_per_s=quota_bound(scale))
            results.append(run_workers(endpoints, proxy, scaled, budgets(scale)))
        with configured(proxy, latency_s=latency, quota=True, scale=scale):
            print(f"4/5 three workers sharing {scale:.0%} of the quota ...", flush=True)
            three = Scenario("three-workers", args.jobs, 3, bound_jobs_per_s=quota_bound(scale))
            # Several tasks share their claims through DynamoDB, as in production.
            shared = {
                "IDEMPOTENCY_STORE": "dynamodb",
                "IDEMPOTENCY_TABLE": create_idempotency_table(endpoints),
            }
            results.append(run_workers(endpoints, proxy, three, budgets(scale) | shared))
        with configured(proxy, latency_s=0, quota=False):
            print(f"5/5 quota lifted, {args.ceiling_jobs} jobs ...", flush=True)
            ceiling = Scenario("quota-lifted", args.ceiling_jobs, 1)
            results.append(run_workers(endpoints, proxy, ceiling, budgets(200.0)))
    for scenario in results:
        if scenario.bound_jobs_per_s:
            scenario.ratio_to_quota = scenario.jobs_per_s / scenario.bound_jobs_per_s
    report(results)
    plot([r for r in results if r.name in ("default-quota", "scaled-quota", "three-workers")],
         OUT / "throughput.png")  # fmt: skip


def markdown_table(date: str, machine: str, results: list[Scenario]) -> str:
    """The table for the README."""
    lines = [
        f"Measured {date} on {machine}.",
        "",
        "| scenario | jobs | jobs/s | quota bound | of bound | failed | throttles "
        "| SQS+SNS requests/job | worker CPU ms/job | worker peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        bound = f"{r.bound_jobs_per_s:.0f}" if r.bound_jobs_per_s else "—"
        share = f"{r.ratio_to_quota:.1%}" if r.ratio_to_quota is not None else "—"
        rss = f"{r.worker_peak_rss_mb:.1f}" if r.worker_peak_rss_mb else "—"
        cpu = f"{r.worker_cpu_ms_per_job:.2f}" if r.worker_cpu_ms_per_job else "—"
        lines.append(
            f"| {r.name} | {r.jobs:,} | {r.jobs_per_s:.1f} | {bound} | {share} | {r.failed} "
            f"| {r.throttles} | {r.sqs_sns_requests_per_job:.3f} | {cpu} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def report(results: list[Scenario]) -> None:
    by_name = {r.name: r for r in results}
    one, base = by_name["default-quota"], by_name["baseline"]
    summary: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}",
        "worker_vs_baseline": one.jobs_per_s / base.jobs_per_s,
        "scenarios": [asdict(r) | {"timeline": None} for r in results],
    }
    (OUT / "results.json").write_text(json.dumps(summary, indent=2))
    (OUT / "table.md").write_text(markdown_table(summary["date"], summary["machine"], results))
    print()
    print(f"{summary['date']}  {summary['machine']}")
    print(f"worker / baseline at the default quota: {summary['worker_vs_baseline']:.1f}x")
    header = (
        f"{'scenario':<15}{'jobs':>7}{'jobs/s':>9}{'bound':>7}{'of bound':>10}{'failed':>8}"
        f"{'throttles':>11}"
        f"{'SQS+SNS/job':>13}{'CPU ms/job':>12}{'peak RSS MB':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        share = f"{r.ratio_to_quota:.1%}" if r.ratio_to_quota is not None else "-"
        bound = f"{r.bound_jobs_per_s:.0f}" if r.bound_jobs_per_s else "-"
        print(
            f"{r.name:<15}{r.jobs:>7}{r.jobs_per_s:>9.1f}{bound:>7}{share:>10}{r.failed:>8}"
            f"{r.throttles:>11}{r.sqs_sns_requests_per_job:>13.3f}"
            f"{r.worker_cpu_ms_per_job:>12.2f}{r.worker_peak_rss_mb:>13.1f}"
        )
    lifted = by_name["quota-lifted"]
    print(
        f"\nquota lifted: worker peak RSS at 2,000 results "
        f"{lifted.worker_rss_mb_at_2000 or 0:.1f} MB, at {lifted.jobs:,} "
        f"{lifted.worker_peak_rss_mb:.1f} MB; CPU seconds by process: {lifted.cpu_s}"
    )


if __name__ == "__main__":
    main()
