"""Burst mode says what it waits for, and ends with a summary an operator can paste in a ticket."""

from tests.support.harness import enqueue, job, run_worker
from worker.local.aws import Stack, aws_client


def test_burst_mode_says_what_it_waits_for_and_sums_up(stack: Stack) -> None:
    enqueue(stack, job("confirm_sign_up", job_id="b1", username="ghost", confirmation_code="1"))
    # A job that becomes visible only later, as one handed back "for later" would.
    aws_client("sqs", stack.endpoints.moto).send_message(
        QueueUrl=stack.jobs_queue_url,
        MessageBody=job("confirm_sign_up", job_id="b2", username="ghost2", confirmation_code="1"),
        DelaySeconds=4,
    )
    run = run_worker(stack)
    assert run.returncode == 0, run.stderr
    waiting = run.events("burst mode waiting")
    assert waiting, run.stdout[-3000:]
    assert waiting[0]["delayed"] == 1
    assert "in_flight_elsewhere" in waiting[0]
    (summary,) = run.events("burst summary")
    assert summary["jobs"] == 2
    assert summary["failed"] == 2
    assert summary["succeeded"] == 0
    assert summary["rejected"] == 0
    # It waited for the delayed job (4 s from sending, less the worker's own start).
    assert summary["duration_s"] >= 2
    assert abs(summary["jobs_per_s"] - 2 / summary["duration_s"]) <= 0.1
