"""The plan an import prints before it sends anything: which rows take which path and why, how
long each takes at the configured budgets, what users receive, the state they end in, and what
it does to the pool's monthly active users (MAU), with the source of each cost claim.

The budgets are the worker's ``RATE_*_RPS`` settings as this shell has them (else their
defaults, docs/settings.md): the worker that does the jobs may be configured otherwise, and the
plan says which values it used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: The sources of the plan's MAU claims, cited by number.
SOURCES = (
    "[1] AWS, Amazon Cognito Developer Guide, 'Importing users into user pools from a CSV file': "
    "a CSV import does not add billed MAUs; password operations do "
    "(docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pools-using-import-tool.html)",
    "[2] AWS, Amazon Cognito API Reference, CreateUserImportJob: 'without adding Amazon Cognito "
    "MAU costs' (docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/"
    "API_CreateUserImportJob.html)",
)
# The worker's defaults (worker/settings.py, docs/settings.md); the importer may not import them.
_BUDGETS = {
    "RATE_USER_CREATION_RPS": 50.0,
    "RATE_USER_ACCOUNT_RECOVERY_RPS": 30.0,
    "RATE_USER_RESOURCE_READ_RPS": 50.0,
}


@dataclass(frozen=True, slots=True)
class _WorkerPath:
    calls: str
    budgets: tuple[str, ...]  # one call a row in each
    receive: str
    state: str
    mau: str


_WORKER_PATHS = {
    "import_user": _WorkerPath(
        "AdminCreateUser, then AdminSetUserPassword",
        ("RATE_USER_CREATION_RPS", "RATE_USER_ACCOUNT_RECOVERY_RPS"),
        "nothing (Cognito's messages are suppressed)",
        "CONFIRMED, with the password in the file (permanent)",
        "one MAU per user this month: AdminSetUserPassword is a password operation, and "
        "password operations generate MAUs [1]",
    ),
    "invite_user": _WorkerPath(
        "AdminCreateUser, with Cognito's invitation",
        ("RATE_USER_CREATION_RPS",),
        "an invitation each, with a temporary password, by email (or SMS)",
        "FORCE_CHANGE_PASSWORD until the first sign-in sets a password",
        "not stated in the AWS references at hand; count one MAU a row to be safe",
    ),
    "sign_up": _WorkerPath(
        "SignUp",
        ("RATE_USER_CREATION_RPS",),
        "a confirmation code each, by email or SMS",
        "UNCONFIRMED until the user enters the code",
        "not stated in the AWS references at hand; count one MAU a row to be safe",
    ),
    "forgot_password": _WorkerPath(
        "ForgotPassword",
        ("RATE_USER_ACCOUNT_RECOVERY_RPS",),
        "a password-reset code each",
        "unchanged until the user resets the password",
        "one MAU per user this month: password resets generate MAUs [1]",
    ),
    "resend_confirmation_code": _WorkerPath(
        "ResendConfirmationCode",
        ("RATE_USER_RESOURCE_READ_RPS",),
        "a new confirmation code each",
        "unchanged (UNCONFIRMED until the user enters the code)",
        "not stated in the AWS references at hand; count one MAU a row to be safe",
    ),
}


@dataclass(frozen=True, slots=True)
class PlanCounts:
    """How many rows take each path."""

    job_type: str
    worker_rows: int
    job_rows: int
    job_parts: int
    invalid: int
    sent_earlier: int = 0
    worker_reason: str = ""
    job_reason: str = ""


def budget(environ: Mapping[str, str], name: str) -> float:
    """A budget from the environment, else the worker's default."""
    try:
        value = float(environ.get(name, ""))
    except ValueError:
        return _BUDGETS[name]
    return value if value > 0 else _BUDGETS[name]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_lines(counts: PlanCounts, environ: Mapping[str, str]) -> list[str]:
    """The plan, as the lines printed."""
    lines = ["plan:"]
    if counts.worker_rows:
        path = _WORKER_PATHS[counts.job_type]
        rates = {name: budget(environ, name) for name in path.budgets}
        slowest = min(rates.values())
        used = ", ".join(f"{name}={rate:g}" for name, rate in rates.items())
        lines += [
            f"  {counts.worker_rows:>9,} row(s) as {counts.job_type} jobs through the worker"
            + (f" ({counts.worker_reason})" if counts.worker_reason else ""),
            f"            calls: {path.calls}; about {_duration(counts.worker_rows / slowest)} "
            f"at {slowest:g} rows/s ({used}; the quota is shared with live traffic)",
            f"            users receive: {path.receive}; they end {path.state}",
            f"            MAU: {path.mau}",
        ]
    if counts.job_rows:
        lines += [
            f"  {counts.job_rows:>9,} row(s) through Cognito's user import job, in "
            f"{counts.job_parts} job(s)" + (f" ({counts.job_reason})" if counts.job_reason else ""),
            "            time: Cognito's own pace, which AWS does not document; no worker budget "
            "is spent, and jobs run one at a time (one active import job per account)",
            "            users receive: nothing now; they end RESET_REQUIRED: each resets the "
            "password (a code to the verified email or phone) before the first sign-in",
            "            MAU: none from the import [1][2]; each user's own password reset "
            "later counts one MAU in its month [1]",
        ]
    if counts.sent_earlier:
        lines.append(f"  {counts.sent_earlier:>9,} row(s) sent by an earlier run (--resume)")
    if counts.invalid:
        lines.append(f"  {counts.invalid:>9,} invalid row(s): not sent")
    if len(lines) == 1:
        lines.append("  nothing to send")
    if counts.worker_rows or counts.job_rows:
        lines += [f"  {source}" for source in SOURCES]
    return lines
