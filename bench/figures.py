"""What a scenario measures (:class:`Scenario`) and what against: the quotas, the job mix, the
budget the mix allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.harness import job

OUT = Path(__file__).parent / "results"


QUOTA_OPERATIONS = {
    "UserCreation": ["SignUp", "ConfirmSignUp"],
    "UserAccountRecovery": ["ForgotPassword", "ConfirmForgotPassword"],
}


DEFAULT_QUOTAS = {"UserCreation": 50.0, "UserAccountRecovery": 30.0}


SIGN_UP_SHARE = 0.6


PASSWORD = "Bench-Passw0rd!"


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
    sqs_sns_requests_by_call: dict[str, float] = field(default_factory=dict)
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
