"""Invitations: Cognito creates the user with a temporary password and sends it (AdminCreateUser).

What moto verifies here: the user's status (FORCE_CHANGE_PASSWORD) and attributes, and that an
existing username is refused. What it does not: moto sends no invitation, so that Cognito sends
one rests on the request the worker builds (no MessageAction, DesiredDeliveryMediums), checked in
tests/unit/test_cognito_requests.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.fault_proxy import FaultProxy
from tests.support.harness import (
    by_job_id,
    enqueue,
    finish,
    job,
    read_results,
    run_worker,
    start_worker,
    through,
    worker_env,
)
from worker.local.aws import Stack, aws_client


def user(stack: Stack, username: str) -> dict[str, str]:
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    found = idp.admin_get_user(UserPoolId=stack.user_pool_id, Username=username)
    return {a["Name"]: a["Value"] for a in found["UserAttributes"]} | {
        "status": found["UserStatus"]
    }


def test_an_invited_user_awaits_a_password_of_their_own(stack: Stack, proxy: FaultProxy) -> None:
    stack.create_confirmed_user("taken", "Taken-Passw0rd!")
    enqueue(
        stack,
        job("invite_user", job_id="inv-1", username="ines",
            user_attributes={"email": "ines@example.com", "email_verified": "true"}),
        job("invite_user", job_id="inv-2", username="taken"),
    )  # fmt: skip

    run = run_worker(stack, **through(proxy.url))

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    outcome = by_job_id(read_results(stack))
    invited = user(stack, "ines")
    assert outcome["inv-1"]["status"] == "succeeded", outcome["inv-1"]
    assert outcome["inv-1"]["user_sub"] == invited["sub"]
    assert outcome["inv-1"]["user_confirmed"] is False
    assert invited["status"] == "FORCE_CHANGE_PASSWORD"
    assert invited["email"] == "ines@example.com"
    assert outcome["inv-2"]["status"] == "failed"
    assert outcome["inv-2"]["error"]["code"] == "UsernameExistsException"
    assert user(stack, "taken")["status"] == "CONFIRMED"  # untouched
    assert proxy.stats()["users"]["AdminCreateUser"] == {"ines": 1, "taken": 1}


def test_a_lost_invitation_answer_is_the_jobs_own_user_not_a_second_invitation(
    stack: Stack, proxy: FaultProxy
) -> None:
    # Cognito acts, the answer is lost: the retry meets the user this job created.
    proxy.add_rule("reset", service="cognito", operation="AdminCreateUser", when="after", times=1)
    enqueue(stack, job("invite_user", job_id="inv-3", username="ivo"))

    run = run_worker(stack, **through(proxy.url))

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    (result,) = read_results(stack)
    assert result.body["status"] == "succeeded", result.body
    assert result.body["detail"] == "created_by_an_earlier_attempt"
    assert proxy.stats()["effects"]["AdminCreateUser"] == {"ivo": 1}
    assert user(stack, "ivo")["status"] == "FORCE_CHANGE_PASSWORD"


def test_a_deployment_refuses_invitations_unless_it_accepts_them(stack: Stack) -> None:
    enqueue(stack, job("invite_user", job_id="inv-4", username="nobody"))
    environment = worker_env(stack)
    del environment["ACCEPTED_JOB_TYPES"]  # the worker's own default, as deployed
    run = subprocess.run([sys.executable, "-m", "worker", "run", "--exit-when-idle"],
                         env=environment, capture_output=True, text=True, timeout=90)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    (result,) = read_results(stack)
    assert result.body["status"] == "rejected"
    assert result.body["error"]["code"] == "JobTypeNotAccepted"


def test_an_import_of_invitations_reports_each_row(stack: Stack, tmp_path: Path) -> None:
    stack.create_confirmed_user("old", "Old-Passw0rd!")
    (tmp_path / "team.csv").write_text(
        "username,email,email_verified,given_name\n"
        "nia,nia@example.com,true,Nia\nold,old@example.com,true,Old\n",
        encoding="utf-8",
    )
    worker = start_worker(stack)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "worker", "import", "team.csv", "--type", "invite_user",
             "--import-id", "team-1", "--wait", "--wait-timeout-s", "60",
             "--progress-interval-s", "0.2", "--report", "r.csv"],
            env=worker_env(stack), cwd=tmp_path, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
    finally:
        worker.send_signal(signal.SIGTERM)
        finish(worker)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "AdminCreateUser, with Cognito's invitation" in done.stdout  # the plan says so
    assert "FORCE_CHANGE_PASSWORD" in done.stdout
    report = (tmp_path / "r.csv").read_text(encoding="utf-8")
    assert ",nia,team-1:invite_user:2,succeeded," in report, report
    assert ",old,team-1:invite_user:3,already_exists,UsernameExistsException," in report, report
    assert user(stack, "nia")["given_name"] == "Nia"
    assert user(stack, "nia")["status"] == "FORCE_CHANGE_PASSWORD"
