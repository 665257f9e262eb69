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
7. ``quota-lifted``: no quota, no added latency: the worker's own ceiling, profiled with py-spy;
8. the two lanes (bench/lanes.py): ``quiet`` (live sign-ups on an empty queue), ``lanes`` (live
   sign-ups at 1 and 5 a second while thousands of bulk sign-ups drain at the budget) and
   ``lanes-fleet`` (the same with three tasks), each beside the direct SignUp in the same run.

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

Figures go to stdout, bench/results/results.json, table.md and throughput.png. The scenarios are in
``scenarios``, what they measure and how in ``figures`` and ``measuring``, the report in
``reporting``.
"""

from __future__ import annotations

import argparse
import os

from bench.figures import OUT
from bench.reporting import plot, report
from bench.scenarios import FLEET_SCALE, Options, run_scenarios


def _arguments() -> argparse.Namespace:
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
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    chosen = set(args.only.split(",")) if args.only else None
    options = Options(
        jobs=args.jobs,
        baseline_jobs=args.baseline_jobs,
        scale_jobs=args.scale_jobs,
        ceiling_jobs=args.ceiling_jobs,
        latency_s=args.latency_ms / 1000,
        quota_scale=args.quota_scale,
        fleet_scale=args.fleet_scale,
    )
    OUT.mkdir(exist_ok=True)
    load_at_start = os.getloadavg()
    results, lane_runs = run_scenarios(options, chosen)
    k = args.quota_scale
    prefix = "" if chosen is None and k == 1.0 else f"partial-{k:g}-"
    report(results, lane_runs, load_at_start, prefix)
    if chosen is None:
        plot(results, OUT / f"{prefix}throughput.png")


if __name__ == "__main__":
    main()
