"""FIFO jobs queues: the jobs of one message group are done in the order they were sent, and a job
that does not finish holds back only the later jobs of its own group.

The FIFO queues are created here (the provisioned stack's are standard); the results topic stays
standard. moto's FIFO emulation delivers a group's messages in send order and delivers none of a
group while one of its messages is in flight, which is what SQS promises. moto does not emulate
FIFO throughput limits or the five-minute deduplication window beyond its own bookkeeping, and
neither is tested here.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from itertools import pairwise
from typing import Any

from tests.support.fault_proxy import FaultProxy
from tests.support.harness import (
    by_job_id,
    create_confirmed_user,
    job,
    queue_depth,
    read_results,
    run_worker,
)
from worker.local.aws import Stack, aws_client

from .conftest import BOTH_EMULATORS

pytestmark = BOTH_EMULATORS

USERS = ("ann", "bob")
JOBS_PER_USER = 5


def fifo_queues(stack: Stack) -> dict[str, str]:
    """A FIFO jobs queue redriving to a FIFO DLQ after 5 receives; the worker settings for them."""
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    name = f"fifo-{uuid.uuid4().hex[:8]}"
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes=fifo)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}
    jobs_url = sqs.create_queue(
        QueueName=f"{name}-jobs.fifo",
        Attributes={**fifo, "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    return {"JOBS_QUEUE_URL": jobs_url, "DEAD_LETTER_QUEUE_URL": dlq_url}


def send_interleaved(stack: Stack, queues: dict[str, str]) -> list[str]:
    """ann-0, bob-0, ann-1, bob-1, ...: forgot_password jobs, one group per user, one at a time
    so the send order is certain. Return the job ids in send order."""
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    sent = []
    for i in range(JOBS_PER_USER):
        for user in USERS:
            job_id = f"{user}-{i}"
            sqs.send_message(
                QueueUrl=queues["JOBS_QUEUE_URL"],
                MessageBody=job("forgot_password", job_id=job_id, username=user),
                MessageGroupId=user,
            )
            sent.append(job_id)
    return sent


def timeline(results: dict[str, dict[str, Any]], user: str) -> list[tuple[datetime, datetime]]:
    """(received_at, finished_at) of the user's jobs, in send order."""
    return [
        (
            datetime.fromisoformat(results[f"{user}-{i}"]["received_at"]),
            datetime.fromisoformat(results[f"{user}-{i}"]["finished_at"]),
        )
        for i in range(JOBS_PER_USER)
    ]


def assert_in_send_order(results: dict[str, dict[str, Any]], user: str) -> None:
    times = timeline(results, user)
    finished = [done for _, done in times]
    assert finished == sorted(finished), f"{user}'s jobs finished out of order: {finished}"
    assert len(set(finished)) == len(finished)
    # One at a time: each job's delivery began only once the one before it had finished.
    for (_, before_done), (started, _) in pairwise(times):
        assert started >= before_done, f"{user}'s jobs overlapped: {times}"


def assert_one_success_each(results: list[Any], sent: list[str]) -> dict[str, dict[str, Any]]:
    job_ids = [r.body["job_id"] for r in results]
    assert sorted(job_ids) == sorted(sent), "exactly one result per job"
    outcome = by_job_id(results)
    assert {r["status"] for r in outcome.values()} == {"succeeded"}, outcome
    return outcome


def test_the_jobs_of_one_group_are_done_in_send_order(stack: Stack) -> None:
    for user in USERS:
        create_confirmed_user(stack, user)
    queues = fifo_queues(stack)
    sent = send_interleaved(stack, queues)

    run = run_worker(stack, **queues)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    outcome = assert_one_success_each(read_results(stack), sent)
    for user in USERS:
        assert_in_send_order(outcome, user)
    assert queue_depth(stack, queues["JOBS_QUEUE_URL"]) == 0
    assert queue_depth(stack, queues["DEAD_LETTER_QUEUE_URL"]) == 0


def test_a_failing_job_holds_back_only_its_own_group(stack: Stack, proxy: FaultProxy) -> None:
    """ann-0's first delivery fails every attempt (N = RETRY_MAX_ATTEMPTS) and goes back with a
    1 s backoff: ann-1..4 wait behind it, bob's group goes on."""
    attempts = 2
    for user in USERS:
        create_confirmed_user(stack, user)
    queues = fifo_queues(stack)
    sent = send_interleaved(stack, queues)
    proxy.add_rule("internal_error", service="cognito", username="ann", times=attempts)

    # Only Cognito goes through the proxy: SQS stays with the emulator that holds the queues.
    run = run_worker(
        stack,
        AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=proxy.url,
        **queues,
        RETRY_MAX_ATTEMPTS=str(attempts),
        RETRY_BACKOFF_CAP_S="1",
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    outcome = assert_one_success_each(read_results(stack), sent)
    for user in USERS:
        assert_in_send_order(outcome, user)
    # ann-0's first delivery failed whole and went back; the delivery that finished it made
    # one call.
    (handed_back,) = run.events("job handed back to the queue")
    assert handed_back["job_id"] == "ann-0"
    assert handed_back["attempts"] == attempts
    assert handed_back["receive_count"] == 1
    assert outcome["ann-0"]["attempts"] == 1
    # The calls that reached Cognito: N failed for ann-0, then one per job. So none of ann's later
    # jobs was tried while ann-0 was failing (with the order above: none before ann-0 succeeded).
    stats = proxy.stats()
    assert stats["users"]["ForgotPassword"] == {
        "ann": attempts + JOBS_PER_USER,
        "bob": JOBS_PER_USER,
    }
    assert stats["effects"]["ForgotPassword"] == {"ann": JOBS_PER_USER, "bob": JOBS_PER_USER}
    # Only ann's group waited: bob's group went on while ann-0 was held back (bob's first jobs
    # were done before ann-0 was; how many depends on timing, at least the first).
    ann_0_done = timeline(outcome, "ann")[0][1]
    assert timeline(outcome, "bob")[0][1] < ann_0_done
    assert queue_depth(stack, queues["JOBS_QUEUE_URL"]) == 0
    assert queue_depth(stack, queues["DEAD_LETTER_QUEUE_URL"]) == 0
