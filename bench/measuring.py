"""Measuring a scenario: the processes' CPU and memory, the worker's own counters, the results'
and the Cognito calls' pace against the budget, recovery after a change, and a CPU profile.
"""

from __future__ import annotations

import bisect
import collections
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.figures import LIVE_USER_PREFIX, OUT, QUOTA_OPERATIONS, Scenario, binding_category
from bench.live_app import LiveApp
from tests.support.harness import Traffic, finish, start_worker
from worker.cognito.fleet import HEARTBEAT_S
from worker.local.aws import (
    LOOPBACK,
    Endpoints,
    Stack,
    free_port,
)


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


DYNALITE = "dynalite (DynamoDB)"


def cpu_by_role(endpoints: Endpoints) -> dict[str, float]:
    def moto_at(url: str) -> str:  # the command line local_aws.moto_server starts
        return f"moto.server -H {LOOPBACK} -p {url.rsplit(':', 1)[1]}"

    roles = {
        MOTO_COGNITO: moto_at(endpoints.moto),
        DYNALITE: "dynalite/serve.mjs",
        "Cognito front": "worker.local.aws",
        "fault proxy": "tests.support.fault_proxy",
        "fauxqs (SQS, SNS)": "fauxqs/serve.mjs",
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


def _requests_by_call(port: int) -> dict[str, float] | None:
    """The worker's SQS+SNS requests from /metrics, by call (None: no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    pattern = r'^cognito_worker_aws_requests_total\{call="([^"]+)"[^}]*\} (\S+)$'
    return {call: float(value) for call, value in re.findall(pattern, text, re.M)}


class Worker:
    """One worker process, its health port, and its last-sampled figures (kept after it dies)."""

    def __init__(self, stack: Stack, env: dict[str, str]) -> None:
        self.port = free_port()
        self.process = start_worker(stack, **env, HEALTH_PORT=str(self.port))
        self.cpu_s = 0.0
        self.peak_rss_mb = 0.0
        self.requests_by_call: dict[str, float] = {}
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
            self.requests_by_call = _requests_by_call(self.port) or self.requests_by_call

    @property
    def requests(self) -> float:
        """The SQS+SNS requests this worker made (as last sampled)."""
        return sum(self.requests_by_call.values())

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


def busy_and_total_jiffies() -> tuple[int, int]:
    """All cores' busy and total time so far, from /proc/stat's first line."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


# Above these the figures are the machine's or moto's, not the worker's: every process here
# would have gone faster with more CPU, and moto, one Python process, cannot use a second core.
MACHINE_BUSY_CAP = 0.85


MOTO_CORES_CAP = 0.75


def judge_capacity(
    scenario: Scenario, busy_before: tuple[int, int], busy_after: tuple[int, int], wall_s: float
) -> None:
    total = busy_after[1] - busy_before[1]
    scenario.machine_busy = (busy_after[0] - busy_before[0]) / total if total else 0.0
    # moto (Cognito) and dynalite (DynamoDB) are one single-threaded process each (the GIL, the
    # event loop): the busier one is the one that may have set the pace.
    busiest = max(scenario.cpu_s.get(MOTO_COGNITO, 0.0), scenario.cpu_s.get(DYNALITE, 0.0))
    scenario.moto_cores = busiest / max(wall_s, 1e-9)
    reasons = []
    if scenario.machine_busy > MACHINE_BUSY_CAP:
        reasons.append(f"the machine was {scenario.machine_busy:.0%} busy")
    if scenario.moto_cores > MOTO_CORES_CAP:
        reasons.append(f"an emulator process used {scenario.moto_cores:.2f} of its one core")
    scenario.capped = "; ".join(reasons) or None


def result_figures(
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
    by_call: dict[str, float] = {}
    for worker in workers:
        for call, count in worker.requests_by_call.items():
            by_call[call] = by_call.get(call, 0.0) + count
    scenario.sqs_sns_requests_by_call = {
        call: round(count / scenario.jobs, 3) for call, count in sorted(by_call.items())
    }
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


def first_receive(traffic: Traffic) -> datetime:
    """When the batch's first job was received: where the timelines start."""
    return min(datetime.fromisoformat(r.body["received_at"]) for r in traffic.results)


def call_figures(
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


def start_profiler(pid: int, seconds: float) -> subprocess.Popen[bytes]:
    output = OUT / "profile.txt"
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
         "--duration", str(int(seconds)), "--format", "raw", "--output", str(output),
         "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def read_profile(profiler: subprocess.Popen[bytes]) -> list[tuple[str, float]]:
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


# Once every task is ready, how long until each has joined and every roster counts them all:
# a joining task waits 1.2 heartbeats when it finds others, then each task recounts every beat.
FLEET_FORMS_S = 3 * HEARTBEAT_S


def wait_until_formed(workers: list[Worker], timeout_s: float = 120.0) -> None:
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
