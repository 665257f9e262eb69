"""A job cut off while it waits for the rate limiter sent nothing, and its next delivery knows it.

The premise arises three ways: a stop (SIGTERM cancels the waits), a kill (nothing is released
at all), and the job's own timeout. Each time, the jobs are sign-ups for usernames other people
already own, so a redelivery that took "Cognito may have acted" for true would count
``UsernameExistsException`` as this job's own success, for someone else's account.

What the store recorded is read over the wire from its DynamoDB table: after a stop or a timeout
the claim says no request left (``ambiguous`` false, no attempt). After a kill the claim still
says "may have acted" (it is written so before any call, and nobody lived to clear it): there the
redelivery asks Cognito when the user was created (AdminGetUser), and a user older than the job is
not the job's.
"""

import signal
import time
from typing import Any

import pytest

from tests.support.harness import (
    ResultCollector,
    by_job_id,
    create_confirmed_user,
    enqueue,
    finish,
    job,
    read_results,
    run_worker,
    start_worker,
    wait_for,
)
from worker.local.aws import Stack, aws_client, create_idempotency_table
from worker.pipeline.idempotency import job_key

TAKEN = [f"taken-{n}" for n in range(4)]
PASSWORD = "Their-Passw0rd!"
# One SignUp every 5 s: the first job's call goes, the other three wait behind it.
SLOW = {"RATE_USER_CREATION_RPS": "0.2"}


@pytest.fixture
def table(stack: Stack) -> str:
    return create_idempotency_table(stack.endpoints)


def claims(stack: Stack, table: str) -> dict[str, dict[str, Any]]:
    """The store's items of this test's jobs, by job id."""
    dynamodb = aws_client("dynamodb", stack.endpoints.tables)
    items = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    keys = {job_key(stack.client_id, f"job-{name}"): f"job-{name}" for name in TAKEN}
    return {keys[item["pk"]["S"]]: item for item in items if item["pk"]["S"] in keys}


def enqueue_sign_ups_for_taken_names(stack: Stack) -> None:
    for name in TAKEN:
        create_confirmed_user(stack, name)
    # Someone else's account is older than the job by more than the second of slack the
    # worker allows between Cognito's clock and SQS's.
    time.sleep(2.5)
    enqueue(stack, *(job("sign_up", job_id=f"job-{name}", username=name, password=PASSWORD)
                     for name in TAKEN))  # fmt: skip


def assert_every_job_failed_as_taken(results: list[Any]) -> None:
    outcome = by_job_id(results)
    assert set(outcome) == {f"job-{name}" for name in TAKEN}
    for job_id, result in outcome.items():
        assert result["status"] == "failed", (job_id, result)
        assert result["error"]["code"] == "UsernameExistsException", (job_id, result)
        assert result["detail"] is None, (job_id, result)


@pytest.mark.parametrize("cut_off_by", ["sigterm", "sigkill"])
def test_a_redelivered_sign_up_cut_off_while_waiting_does_not_take_a_taken_name(
    stack: Stack, table: str, cut_off_by: str
) -> None:
    enqueue_sign_ups_for_taken_names(stack)
    store = {"IDEMPOTENCY_STORE": "dynamodb", "IDEMPOTENCY_TABLE": table}
    short = {"VISIBILITY_TIMEOUT_S": "15", "JOB_TIMEOUT_S": "5", "IDEMPOTENCY_LEASE_S": "5"}
    worker = start_worker(stack, **store, **short, **SLOW)
    results = ResultCollector(stack)
    # The first call went (and failed: the name is taken); the other three are waiting.
    try:
        wait_for(lambda: results.poll(), timeout_s=60)
    except AssertionError:
        worker.send_signal(signal.SIGTERM)
        stopped = finish(worker)
        raise AssertionError(stopped.stdout[-3000:] + stopped.stderr[-3000:]) from None
    waiting = wait_for(lambda: len(claims(stack, table)) == len(TAKEN) and claims(stack, table))
    assert sum(item["state"]["S"] == "in_progress" for item in waiting.values()) == 3
    worker.send_signal(signal.SIGTERM if cut_off_by == "sigterm" else signal.SIGKILL)
    first = finish(worker)
    if cut_off_by == "sigterm":
        assert first.returncode == 0, first.stdout[-3000:]
        # Released (lease 0), not completed: they go to the next task.
        released = [item for item in claims(stack, table).values()
                    if item["state"]["S"] == "in_progress"]  # fmt: skip
        assert all(float(item["lease_until"]["N"]) == 0 for item in released), released
        assert len(released) == 3, claims(stack, table)
        # No request of theirs left: the store says so.
        assert all(item["ambiguous"]["BOOL"] is False for item in released), released
    else:
        assert first.returncode == -signal.SIGKILL

    # The next task takes the rest, at full speed, once their visibility and leases end.
    second = run_worker(stack, **store, **short, timeout_s=120)
    assert second.returncode == 0, second.stdout[-3000:]
    results.poll()
    assert_every_job_failed_as_taken(results.results)
    assert PASSWORD not in first.stdout + second.stdout


def test_a_sign_up_whose_timeout_ends_its_wait_is_not_taken_for_sent(
    stack: Stack, table: str
) -> None:
    enqueue_sign_ups_for_taken_names(stack)
    store = {"IDEMPOTENCY_STORE": "dynamodb", "IDEMPOTENCY_TABLE": table}
    # A slot every 2.5 s against a 4 s job timeout: the third and fourth jobs time out waiting,
    # having sent nothing; they go back and are tried again.
    run = run_worker(stack, **store, RATE_USER_CREATION_RPS="0.4", JOB_TIMEOUT_S="4",
                     RETRY_BACKOFF_CAP_S="1", timeout_s=180)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    timed_out = [e for e in run.events("job handed back to the queue")
                 if e.get("error_code") == "JobTimeout"]  # fmt: skip
    assert timed_out, run.stdout[-3000:]
    assert_every_job_failed_as_taken(read_results(stack))
