"""Looking a job up in the idempotency table the worker wrote: `cognito-worker job` and the
producer library's `look_up_job`, against DynamoDB over HTTP (`endpoints.tables`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

from tests.support.harness import (
    create_unconfirmed_user,
    enqueue,
    finish,
    job,
    read_results,
    run_worker,
    start_worker,
    wait_for,
    worker_env,
)
from worker.importer.aws import TableLookup
from worker.local.aws import Stack, aws_client, create_idempotency_table
from worker.producer import JobStatus, look_up_job, look_up_jobs

PASSWORD = "Corr3ct-Horse-Battery!"


def job_command(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "job", *args],
        env={**worker_env(stack), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_a_finished_job_is_looked_up_with_its_result(stack: Stack) -> None:
    table = create_idempotency_table(stack.endpoints)
    store = {"IDEMPOTENCY_STORE": "dynamodb", "IDEMPOTENCY_TABLE": table}
    enqueue(stack, job("sign_up", job_id="s1", username="sam", password=PASSWORD))
    assert run_worker(stack, **store).returncode == 0
    (published,) = read_results(stack)

    shown = job_command(stack, "s1", **store)
    found = job_command(stack, "s1", "--json", **store)
    missing = job_command(stack, "nobody", **store)
    dynamodb = aws_client("dynamodb", stack.endpoints.tables)
    state = look_up_job(table, "s1", client_id=stack.client_id, client=dynamodb)

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"job s1 (client {stack.client_id}): finished, succeeded")
    assert found.returncode == 0
    assert as_json(found)["status"] == "finished"
    assert as_json(found)["result"] == published.body
    assert state is not None
    assert state.status is JobStatus.FINISHED
    assert state.result is not None
    assert state.result.user_sub == published.body["user_sub"]
    assert missing.returncode == 3
    assert "no record" in missing.stdout
    assert PASSWORD not in shown.stdout + found.stdout


def test_many_jobs_are_read_a_hundred_a_request_as_one_at_a_time_reads_them(stack: Stack) -> None:
    """The import's resume reads its rows' records with BatchGetItem: the same states GetItem
    gives, in the order asked, records and no-records mixed, across several requests."""
    table = create_idempotency_table(stack.endpoints)
    store = {"IDEMPOTENCY_STORE": "dynamodb", "IDEMPOTENCY_TABLE": table}
    sent = [f"r{i}" for i in range(130)]
    enqueue(stack, *(job("forgot_password", job_id=j, username=f"nobody-{j}") for j in sent))
    assert run_worker(stack, **store).returncode == 0
    asked = [f"{kind}{i}" for i in range(130) for kind in ("r", "never-sent-")]  # 260, mixed
    dynamodb = aws_client("dynamodb", stack.endpoints.tables)

    one_by_one = {
        j: look_up_job(table, j, client_id=stack.client_id, client=dynamodb) for j in asked
    }
    batched = look_up_jobs(table, asked[:100], client_id=stack.client_id, client=dynamodb)
    lookup = TableLookup(table, stack.client_id, region=None, client=dynamodb, concurrency=2)
    many = list(lookup.look_up_many(asked))

    assert [answer.job_id for answer in many] == asked
    assert all(not answer.error for answer in many)
    assert {answer.job_id: answer.state for answer in many} == one_by_one
    assert batched == {j: one_by_one[j] for j in asked[:100]}
    found = {j: state.status for j, state in one_by_one.items() if state is not None}
    assert found == dict.fromkeys(sent, JobStatus.FINISHED)


def test_a_job_waiting_for_its_next_delivery_is_pending_with_its_failures(stack: Stack) -> None:
    """ResendConfirmationCode straight to moto answers HTTP 500: the first delivery fails and
    goes back for 10 s (5 x 2^1), in which the job is pending with one failed delivery."""
    table = create_idempotency_table(stack.endpoints)
    store = {"IDEMPOTENCY_STORE": "dynamodb", "IDEMPOTENCY_TABLE": table}
    create_unconfirmed_user(stack, "dana")
    enqueue(stack, job("resend_confirmation_code", job_id="p1", username="dana"))
    worker = start_worker(
        stack,
        AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=stack.endpoints.moto,
        RETRY_MAX_ATTEMPTS="1",
        RETRY_BACKOFF_CAP_S="60",
        **store,
    )
    try:

        def pending() -> dict[str, Any] | None:
            done = job_command(stack, "p1", "--json", **store)
            state = as_json(done) if done.returncode == 0 else None
            return state if state and state["status"] == "pending" else None

        state = wait_for(pending, timeout_s=60, interval_s=0.5)
        shown = job_command(stack, "p1", **store)
    finally:
        worker.send_signal(signal.SIGTERM)
        finish(worker)

    assert state["failed_deliveries"] == 1
    assert state["result"] is None
    assert shown.returncode == 0
    assert "pending, waiting for its next delivery" in shown.stdout
    assert "deliveries so far that failed: 1" in shown.stdout


def test_with_the_memory_store_there_is_nothing_to_look_up(stack: Stack) -> None:
    done = job_command(stack, "s1", IDEMPOTENCY_STORE="memory")
    assert done.returncode == 2
    assert "nothing to look up" in done.stderr
