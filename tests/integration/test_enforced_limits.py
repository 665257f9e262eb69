"""CAP_BUDGETS_AT_ENFORCED_LIMITS over the wire: the worker reads the rates Cognito enforces
(GetProvisionedLimit, answered by the local front as the API reference gives it; moto has no such
operation) before its first call, and paces within them.

What no emulator here shows: the rates of a real account, and throttling above them (the local
front enforces no quota); the pacing itself is the limiter's, covered by its unit tests.
"""

from __future__ import annotations

from tests.support.harness import by_job_id, enqueue, job, read_results, run_worker
from worker.local.aws import Stack


def test_a_budget_above_the_enforced_rate_is_capped_before_the_first_call(stack: Stack) -> None:
    enqueue(stack, job("sign_up", job_id="capped-1", username="cap-ann", password="Cap-Passw0rd!"))
    done = run_worker(stack, CAP_BUDGETS_AT_ENFORCED_LIMITS="true", RATE_USER_CREATION_RPS="80")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [line["event"] for line in done.logs if "event" in line]  # not the EMF lines
    (capped,) = done.events("budget capped at the enforced limit")
    # The local front's UserCreation rate is Cognito's free 50.
    assert capped.items() >= {
        "category": "UserCreation", "setting_rps": 80.0, "enforced_rps": 50.0, "budget_rps": 50.0,
    }.items()  # fmt: skip
    assert events.index("budget capped at the enforced limit") < events.index("worker started")
    # The other budgets are at or under their rates: nothing to cap, nothing said.
    assert by_job_id(read_results(stack))["capped-1"]["status"] == "succeeded"


def test_a_limit_that_cannot_be_read_leaves_the_budgets_and_the_jobs_run(stack: Stack) -> None:
    enqueue(stack, job("forgot_password", job_id="unread-1", username="nobody-here"))
    # moto reached directly has no GetProvisionedLimit: it answers with an HTML error page.
    done = run_worker(
        stack,
        CAP_BUDGETS_AT_ENFORCED_LIMITS="true",
        AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=stack.endpoints.moto,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (unreadable,) = done.events("enforced limit unreadable: the budgets stay as they are")
    assert unreadable["level"] == "warning"
    assert unreadable["categories"] == ["UserCreation", "UserAccountRecovery", "UserResourceRead"]
    assert unreadable["budgets_rps"] == {
        "UserCreation": 50.0, "UserAccountRecovery": 30.0, "UserResourceRead": 50.0,
    }  # fmt: skip
    assert not done.events("budget capped at the enforced limit")
    assert by_job_id(read_results(stack))["unread-1"]["status"] in {"succeeded", "failed"}
