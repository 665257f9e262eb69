"""Reporting a run: the table for docs/benchmark.md, results.json, stdout, and the plot."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.figures import OUT, Scenario
from bench.lanes import LaneRun, lanes_table


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
    results: list[Scenario],
    lane_runs: list[LaneRun],
    load_at_start: tuple[float, float, float],
    prefix: str = "",
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
        "lanes": [asdict(r) for r in lane_runs],
    }
    (OUT / f"{prefix}results.json").write_text(json.dumps(summary, indent=2))
    tables = "\n".join(
        ([markdown_table(date, results)] if results else [])
        + ([lanes_table(lane_runs)] if lane_runs else [])
    )
    (OUT / f"{prefix}table.md").write_text(tables)
    print()
    print(f"{date}  {machine()}")
    print(f"load average at start {load_at_start}, at end {os.getloadavg()}")
    print(tables)
    if summary["worker_vs_baseline"]:
        print(f"one worker / baseline: {summary['worker_vs_baseline']:.1f}x")
    for r in results:
        print(f"{r.name}: CPU seconds by process {r.cpu_s}; failures {r.failures}")
        if r.sqs_sns_requests_by_call:
            print(f"{r.name}: SQS+SNS requests per job by call {r.sqs_sns_requests_by_call}")
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
    for run in lane_runs:
        print(f"{run.name}: CPU seconds by process {run.cpu_s}, workers {run.worker_cpu_s}; "
              f"bulk jobs still queued at the end {run.bulk_left_queued}")  # fmt: skip
        if run.capped:
            print(f"  capped: {run.capped}: these figures measure the machine, not the worker")
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
