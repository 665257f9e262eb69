"""The producer library over HTTP against the local AWS: what lands on the queue, what the worker
makes of it, and how results come back."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioboto3
import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.harness import enqueue, read_results, run_worker, user_status, wait_for
from worker.contract.jobs import ForgotPasswordJob, SignUpJob, decode_job
from worker.local.aws import REGION, Stack, aws_client
from worker.producer import (
    AsyncJobProducer,
    AsyncResultFollower,
    FailedJob,
    InvalidJob,
    JobProducer,
    ResultFollower,
    SentJob,
    temporary_results_queue,
)
from worker.producer.jobs import sqs_id

PASSWORD = "Corr3ct-Horse!"


@pytest.fixture(autouse=True)
def _local_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioboto3 clients made by the library read credentials from the environment, as in production.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def drain(stack: Stack, queue_url: str) -> list[dict[str, Any]]:
    """Every message on the queue (received, then deleted), with its system attributes."""
    sqs = aws_client("sqs", stack.endpoints.moto)
    messages: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
        )  # fmt: skip
        batch = answer.get("Messages", [])
        if not batch:
            return messages
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )


def fifo_queue(stack: Stack) -> str:
    sqs = aws_client("sqs", stack.endpoints.moto)
    name = f"jobs-{uuid.uuid4().hex[:8]}.fifo"
    return str(sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"])


def sign_ups(
    count: int, batch: str | None = None, prefix: str = "user"
) -> Iterator[dict[str, Any]]:
    for i in range(count):
        job: dict[str, Any] = {
            "version": 1, "type": "sign_up", "job_id": f"{prefix}-{i}",
            "username": f"{prefix}{i}", "password": PASSWORD,
            "user_attributes": {"email": f"{prefix}{i}@example.com"},
        }  # fmt: skip
        if batch is not None:
            job["batch"] = batch
        yield job


# ------------------------------------------------------------------- what lands on the queue


def test_send_many_puts_every_job_on_the_queue_as_the_worker_will_decode_it(stack: Stack) -> None:
    batches: list[tuple[int, int]] = []
    producer = JobProducer(stack.jobs_queue_url, client=aws_client("sqs", stack.endpoints.moto))
    report = producer.send_many(
        sign_ups(25), on_batch=lambda sent, failed: batches.append((len(sent), len(failed)))
    )
    assert (report.sent_count, report.failed, report.sent) == (25, [], [])
    assert batches == [(10, 0), (10, 0), (5, 0)]
    bodies = [m["Body"] for m in drain(stack, stack.jobs_queue_url)]
    jobs = {job.job_id: job for job in map(decode_job, bodies)}
    assert set(jobs) == {f"user-{i}" for i in range(25)}
    for expected in sign_ups(25):
        job = jobs[expected["job_id"]]
        assert isinstance(job, SignUpJob)
        assert job.password.get_secret_value() == PASSWORD  # the real secret, not "**********"
        assert job.user_attributes == expected["user_attributes"]


def test_the_input_is_read_one_batch_at_a_time(stack: Stack) -> None:
    read = 0
    sent_when_read: list[int] = []
    producer = JobProducer(stack.jobs_queue_url, client=aws_client("sqs", stack.endpoints.moto))
    sent = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal read
        for job in sign_ups(35):
            read += 1
            sent_when_read.append(sent)
            yield job

    def on_batch(batch: list[SentJob], _failed: list[FailedJob]) -> None:
        nonlocal sent
        sent += len(batch)

    producer.send_many(counted(), on_batch=on_batch)
    # A job is read only once all but the ten before it have left: nothing is read far ahead.
    assert max(index - sent for index, sent in enumerate(sent_when_read)) == 10
    assert read == 35


def test_a_model_and_a_dict_send_the_same_body(stack: Stack) -> None:
    producer = JobProducer(stack.jobs_queue_url, client=aws_client("sqs", stack.endpoints.moto))
    fields = {"version": 1, "type": "forgot_password", "job_id": "same", "username": "Zoë"}
    producer.send(fields)
    producer.send(ForgotPasswordJob.model_validate(fields))
    first, second = (m["Body"] for m in drain(stack, stack.jobs_queue_url))
    assert first == second
    assert json.loads(first)["username"] == "Zoë"


def test_a_job_without_an_id_is_given_one_and_the_caller_learns_it(stack: Stack) -> None:
    producer = JobProducer(stack.jobs_queue_url, client=aws_client("sqs", stack.endpoints.moto))
    sent = producer.send({"version": 1, "type": "forgot_password", "username": "alice"})
    (message,) = drain(stack, stack.jobs_queue_url)
    assert uuid.UUID(sent.job_id)
    assert json.loads(message["Body"])["job_id"] == sent.job_id
    assert message["MessageId"] == sent.message_id


def test_an_invalid_job_is_refused_before_anything_of_it_is_sent(stack: Stack) -> None:
    producer = JobProducer(stack.jobs_queue_url, client=aws_client("sqs", stack.endpoints.moto))
    jobs = list(sign_ups(15))
    jobs[12]["password"] = "has a space"
    with pytest.raises(InvalidJob) as refused:
        producer.send_many(jobs)
    assert refused.value.index == 12
    assert refused.value.job_id == "user-12"
    assert refused.value.reason == "sign_up.password: String should match pattern '^\\S+$'"
    assert "has a space" not in str(refused.value)
    # The twelve before it were sent; it and the ones after were not.
    sent = {json.loads(m["Body"])["job_id"] for m in drain(stack, stack.jobs_queue_url)}
    assert sent == {f"user-{i}" for i in range(12)}


def test_skip_invalid_reports_the_invalid_and_sends_the_rest(stack: Stack) -> None:
    producer = JobProducer(stack.jobs_queue_url, client=aws_client("sqs", stack.endpoints.moto))
    jobs = list(sign_ups(12))
    jobs[3]["username"] = "two words"
    del jobs[7]["password"]
    report = producer.send_many(jobs, skip_invalid=True)
    assert report.sent_count == 10
    assert [(f.index, f.job_id, f.code, f.sender_fault) for f in report.failed] == [
        (3, "user-3", "InvalidJob", True),
        (7, "user-7", "InvalidJob", True),
    ]
    assert report.failed[1].message == "sign_up.password: Field required"
    assert len(drain(stack, stack.jobs_queue_url)) == 10


# ------------------------------------------------------------------- FIFO


async def test_fifo_groups_by_username_deduplicates_by_job_id_and_keeps_order(
    stack: Stack,
) -> None:
    queue_url = fifo_queue(stack)
    users = ["alice", "Zoë", "李小龙", "bob"]
    jobs = []
    for step in range(3):  # a sign-up, then two more jobs per user, in this order
        for user in users:
            jobs.append({"version": 1, "type": "forgot_password", "job_id": f"{user}-{step}",
                         "username": user})  # fmt: skip
    async with AsyncJobProducer(queue_url, endpoint_url=stack.endpoints.moto) as producer:
        report = await producer.send_many(jobs, keep_sent=True)
        await producer.send(jobs[0])  # the same job id: SQS accepts it and drops it as a duplicate
    assert report.sent_count == 12
    assert not report.failed
    assert all(sent.sequence_number for sent in report.sent)
    messages = drain(stack, queue_url)
    assert len(messages) == 12
    by_group: dict[str, list[str]] = {}
    for message in messages:
        attributes = message["Attributes"]
        body = json.loads(message["Body"])
        assert attributes["MessageDeduplicationId"] == sqs_id(body["job_id"])
        by_group.setdefault(attributes["MessageGroupId"], []).append(body["job_id"])
    assert by_group["alice"] == ["alice-0", "alice-1", "alice-2"]
    assert by_group["bob"] == ["bob-0", "bob-1", "bob-2"]
    # SQS allows ASCII only in group ids: a non-ASCII username is grouped by its SHA-256.
    others = {group: ids for group, ids in by_group.items() if group not in {"alice", "bob"}}
    assert sorted(others.values()) == [
        ["Zoë-0", "Zoë-1", "Zoë-2"], ["李小龙-0", "李小龙-1", "李小龙-2"]
    ]  # fmt: skip
    assert all(len(group) == 64 for group in others)


def test_fifo_group_and_deduplication_ids_can_be_chosen(stack: Stack) -> None:
    queue_url = fifo_queue(stack)
    producer = JobProducer(queue_url, client=aws_client("sqs", stack.endpoints.moto))
    job = {"version": 1, "type": "forgot_password", "username": "alice"}
    producer.send(job, group_id="tenant-1", deduplication_id="once")
    producer.send(job, group_id="tenant-1", deduplication_id="once")
    producer.send_many([job, {**job, "username": "bob"}], group_id="import-7")
    messages = drain(stack, queue_url)
    assert [m["Attributes"]["MessageGroupId"] for m in messages].count("tenant-1") == 1
    assert [m["Attributes"]["MessageGroupId"] for m in messages].count("import-7") == 2


# ------------------------------------------------------------------- Failed entries


@pytest.fixture
def sqs_through_proxy(proxy: FaultProxy) -> Any:
    return aws_client("sqs", proxy.url)


def test_failed_entries_that_sqs_may_accept_later_are_retried(
    stack: Stack, proxy: FaultProxy, sqs_through_proxy: Any
) -> None:
    producer = JobProducer(stack.jobs_queue_url, client=sqs_through_proxy)
    with proxy.fault("fail_entries", operation="SendMessageBatch", entries=3, times=2):
        report = producer.send_many(sign_ups(20))
    assert (report.sent_count, report.failed) == (20, [])
    assert proxy.stats()["faults"]["fail_entries"] == 2
    ids = [json.loads(m["Body"])["job_id"] for m in drain(stack, stack.jobs_queue_url)]
    assert sorted(ids) == sorted(f"user-{i}" for i in range(20))  # each exactly once


def test_failed_entries_are_reported_per_job_when_retrying_cannot_help(
    stack: Stack, proxy: FaultProxy, sqs_through_proxy: Any
) -> None:
    producer = JobProducer(stack.jobs_queue_url, client=sqs_through_proxy, max_attempts=3)
    seen: list[FailedJob] = []
    with proxy.fault("fail_entries", operation="SendMessageBatch", entries=2, sender_fault=True):
        report = producer.send_many(
            sign_ups(15), on_batch=lambda _sent, failed: seen.extend(failed)
        )
    assert report.sent_count == 11
    assert report.failed == seen
    assert [(f.index, f.job_id, f.code, f.sender_fault) for f in report.failed] == [
        (0, "user-0", "InvalidMessageContents", True),
        (1, "user-1", "InvalidMessageContents", True),
        (10, "user-10", "InvalidMessageContents", True),
        (11, "user-11", "InvalidMessageContents", True),
    ]
    assert proxy.stats()["calls"]["sqs"]["SendMessageBatch"] == 2  # sender faults: no retry
    with proxy.fault("fail_entries", operation="SendMessageBatch", entries=1):
        report = producer.send_many(sign_ups(4, prefix="again"))
    # A failure SQS calls transient, every time: retried max_attempts times, then reported.
    assert [(f.job_id, f.code, f.sender_fault) for f in report.failed] == [
        ("again-0", "InternalError", False)
    ]
    assert report.sent_count == 3
    sent = {json.loads(m["Body"])["job_id"] for m in drain(stack, stack.jobs_queue_url)}
    assert "user-0" not in sent
    assert "again-0" not in sent
    assert len(sent) == 14


async def test_the_async_producer_retries_and_reports_like_the_sync_one(
    stack: Stack, proxy: FaultProxy
) -> None:
    session = aioboto3.Session()
    async with session.client("sqs", endpoint_url=proxy.url, region_name=REGION) as sqs:
        producer = AsyncJobProducer(stack.jobs_queue_url, client=sqs, max_concurrency=4)
        with proxy.fault("fail_entries", operation="SendMessageBatch", entries=1, times=3):
            retried = await producer.send_many(_async_jobs(sign_ups(50)))
        with proxy.fault("fail_entries", operation="SendMessageBatch", sender_fault=True):
            reported = await producer.send_many(sign_ups(5, prefix="r"))
    assert (retried.sent_count, retried.failed) == (50, [])
    assert reported.sent_count == 4
    assert [f.job_id for f in reported.failed] == ["r-0"]
    ids = sorted(json.loads(m["Body"])["job_id"] for m in drain(stack, stack.jobs_queue_url))
    assert ids == sorted([f"user-{i}" for i in range(50)] + [f"r-{i}" for i in range(1, 5)])


async def _async_jobs(jobs: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for job in jobs:
        yield job


# ------------------------------------------------------------------- results


def test_results_of_one_batch_reach_a_queue_filtered_on_it(stack: Stack) -> None:
    sqs = aws_client("sqs", stack.endpoints.moto)
    sns = aws_client("sns", stack.endpoints.moto)
    producer = JobProducer(stack.jobs_queue_url, client=sqs)
    with temporary_results_queue(
        stack.results_topic_arn, batch="import-a", sqs_client=sqs, sns_client=sns
    ) as results:
        temporary_url = results.queue_url
        producer.send_many(sign_ups(3, batch="import-a", prefix="a"))
        producer.send_many(sign_ups(2, batch="import-b", prefix="b"))
        producer.send({"version": 1, "type": "sign_up", "job_id": "Zoë-1", "username": "Zoë",
                       "password": PASSWORD, "batch": "import-a"})  # fmt: skip
        # A job the producer would refuse, sent by hand: its rejection carries the batch too.
        bad = {"version": 1, "type": "sign_up", "job_id": "bad-1",
               "username": "no spaces allowed", "batch": "import-a"}  # fmt: skip
        enqueue(stack, json.dumps(bad))
        assert run_worker(stack).returncode == 0
        outcome = results.wait_for(["a-0", "a-1", "a-2", "Zoë-1", "bad-1"], timeout_s=30)
        others = results.wait_for(["b-0", "b-1"], timeout_s=2)
    # The filter policy on the batch attribute let in import-a's results only (moto enforces
    # filter policies on message attributes: b-0 reached the unfiltered queue, not this one).
    assert outcome.missing == set()
    assert others.missing == {"b-0", "b-1"}
    assert {r.status.value for r in outcome.results.values()} == {"succeeded", "rejected"}
    assert outcome.results["bad-1"].status.value == "rejected"
    assert all(r.batch == "import-a" for r in outcome.results.values())
    assert user_status(stack, "Zoë") == "UNCONFIRMED"
    everything = read_results(stack)
    assert {p.body["job_id"] for p in everything} >= {"b-0", "b-1", "a-0"}
    batches = {p.body["job_id"]: p.attributes.get("batch") for p in everything}
    assert batches["b-0"] == "import-b"
    assert batches["bad-1"] == "import-a"
    # The temporary queue and its subscription are gone.
    assert temporary_url not in sqs.list_queues().get("QueueUrls", [])
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=stack.results_topic_arn)
    assert len(subscriptions["Subscriptions"]) == 1


def test_the_temporary_queue_is_removed_when_the_block_is_interrupted(stack: Stack) -> None:
    sqs = aws_client("sqs", stack.endpoints.moto)
    sns = aws_client("sns", stack.endpoints.moto)
    urls: list[str] = []

    def interrupted() -> None:
        with temporary_results_queue(
            stack.results_topic_arn, batch="x", sqs_client=sqs, sns_client=sns
        ) as results:
            urls.append(results.queue_url)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    (url,) = urls
    assert url not in sqs.list_queues().get("QueueUrls", [])
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=stack.results_topic_arn)
    assert len(subscriptions["Subscriptions"]) == 1


def test_the_follower_reads_raw_and_enveloped_deliveries(stack: Stack) -> None:
    sqs = aws_client("sqs", stack.endpoints.moto)
    sns = aws_client("sns", stack.endpoints.moto)
    enveloped_url = sqs.create_queue(QueueName=f"enveloped-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=enveloped_url, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=stack.results_topic_arn, Protocol="sqs",
                  Endpoint=arn["Attributes"]["QueueArn"])  # fmt: skip
    JobProducer(stack.jobs_queue_url, client=sqs).send_many(sign_ups(2))
    assert run_worker(stack).returncode == 0
    raw_body = json.loads(drain(stack, stack.results_queue_url)[0]["Body"])
    assert "Type" not in raw_body
    peeked = sqs.receive_message(QueueUrl=enveloped_url, WaitTimeSeconds=1, VisibilityTimeout=0)
    assert json.loads(peeked["Messages"][0]["Body"])["Type"] == "Notification"
    follower = ResultFollower(enveloped_url, client=sqs)
    results = []
    for result in follower.follow(timeout_s=10, poll_s=1):
        results.append(result)
        if len(results) == 2:
            break
    assert sorted((r.job_id, r.status.value) for r in results) == [
        ("user-0", "succeeded"), ("user-1", "succeeded")
    ]  # fmt: skip
    # What was handed over is deleted; the queue is empty.
    assert stack.queue_depth(enveloped_url) == 0


# ------------------------------------------------------------------- configured by the environment


async def test_the_environment_local_env_exports_is_enough_for_every_client(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `cognito-worker local` (and ECS) export AWS_REGION, which the worker reads; the SDK reads
    # only AWS_DEFAULT_REGION, so a producer made from that environment alone had no region.
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoints.moto)
    with temporary_results_queue(stack.results_topic_arn) as follower:
        JobProducer(stack.jobs_queue_url).send(next(sign_ups(1, prefix="env-sync")))
        async with AsyncJobProducer(stack.jobs_queue_url) as producer:
            await producer.send(next(sign_ups(1, prefix="env-async")))
        # No worker runs here: the follower's queue answers, empty.
        assert list(follower.follow(timeout_s=0.2)) == []
    bodies = [json.loads(message["Body"]) for message in drain(stack, stack.jobs_queue_url)]
    assert sorted(body["job_id"] for body in bodies) == ["env-async-0", "env-sync-0"]


async def test_jobs_sent_on_the_bulk_lane_land_on_the_bulk_queue_and_come_back_as_bulk(
    stack: Stack,
) -> None:
    assert stack.bulk_jobs_queue_url is not None
    sqs = aws_client("sqs", stack.endpoints.moto)
    with JobProducer(
        stack.jobs_queue_url, bulk_queue_url=stack.bulk_jobs_queue_url, client=sqs
    ) as producer:
        producer.send(SignUpJob(version=1, type="sign_up", job_id="one-bulk",
                                username="bulk-ann", password=PASSWORD), lane="bulk")  # fmt: skip
        producer.send(SignUpJob(version=1, type="sign_up", job_id="one-live",
                                username="live-ann", password=PASSWORD))  # fmt: skip
    async with AsyncJobProducer(
        stack.jobs_queue_url,
        bulk_queue_url=stack.bulk_jobs_queue_url,
        endpoint_url=stack.endpoints.moto,
    ) as aio_producer:
        many = [
            SignUpJob(version=1, type="sign_up", job_id=f"many-{i}", username=f"bulk-{i}",
                      password=PASSWORD)
            for i in range(12)
        ]  # fmt: skip
        report = await aio_producer.send_many(many, lane="bulk")
    assert report.sent_count == 12
    assert stack.queue_depth(stack.bulk_jobs_queue_url) == 13
    assert stack.queue_depth(stack.jobs_queue_url) == 1
    run = run_worker(stack)
    assert run.returncode == 0
    lanes = {r.body["job_id"]: r.body["lane"] for r in read_results(stack)}
    bulk_ids = ["one-bulk", *(f"many-{i}" for i in range(12))]
    assert lanes == {"one-live": "interactive"} | dict.fromkeys(bulk_ids, "bulk")


def test_the_bulk_lane_without_its_queue_is_a_clear_error(stack: Stack) -> None:
    producer = JobProducer(stack.jobs_queue_url, client=aws_client("sqs", stack.endpoints.moto))
    with pytest.raises(ValueError, match="bulk_queue_url"):
        producer.send(SignUpJob(version=1, type="sign_up", username="x", password=PASSWORD),
                      lane="bulk")  # fmt: skip
    with pytest.raises(ValueError, match="'fast' is not a valid Lane"):
        producer.send(SignUpJob(version=1, type="sign_up", username="x", password=PASSWORD),
                      lane="fast")  # fmt: skip


def test_waiting_for_ones_own_jobs_on_a_shared_queue_returns_when_they_are_in(
    stack: Stack,
) -> None:
    # Every result reaches the local stack's one results queue: another producer's first.
    sqs = aws_client("sqs", stack.endpoints.moto)
    producer = JobProducer(stack.jobs_queue_url, client=sqs)
    producer.send_many(sign_ups(4, prefix="theirs"))
    mine = [producer.send(job) for job in sign_ups(2, prefix="mine")]
    # A job id over the limit: rejected with job_id null, matched by its SQS message id.
    over = {"version": 1, "type": "forgot_password", "job_id": "x" * 300, "username": "mine9"}
    (too_long,) = enqueue(stack, json.dumps(over))
    assert run_worker(stack).returncode == 0
    follower = ResultFollower(stack.results_queue_url, client=sqs)

    started = time.monotonic()
    outcome = follower.wait_for(mine, timeout_s=15, message_ids=[too_long])
    waited_s = time.monotonic() - started
    assert outcome.missing == set()
    assert set(outcome.results) == {"mine-0", "mine-1", too_long}
    assert outcome.results[too_long].job_id is None
    assert outcome.results[too_long].status.value == "rejected"
    assert waited_s < 5, waited_s  # not the 15 s of the timeout

    # The other producer's results were handed back, not taken: it finds all of them.
    started = time.monotonic()
    theirs = list(follower.follow(timeout_s=15, jobs=[f"theirs-{i}" for i in range(4)]))
    assert sorted(r.job_id or "" for r in theirs) == [f"theirs-{i}" for i in range(4)]
    assert time.monotonic() - started < 8  # back within HAND_BACK_S, then it stops at once
    assert read_results(stack) == []


class CountingReceives:
    """An SQS client that notes how many messages each receive brought."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.received: list[int] = []

    def receive_message(self, **request: Any) -> Any:
        answer = self._client.receive_message(**request)
        self.received.append(len(answer.get("Messages", [])))
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_results_received_but_not_taken_are_handed_back_when_the_reader_stops(
    stack: Stack,
) -> None:
    sqs = aws_client("sqs", stack.endpoints.moto)
    JobProducer(stack.jobs_queue_url, client=sqs).send_many(sign_ups(3, prefix="held"))
    assert run_worker(stack).returncode == 0
    counting = CountingReceives(sqs)
    follower = ResultFollower(stack.results_queue_url, client=counting)
    taken = []
    for result in follower.follow(timeout_s=10, poll_s=1):
        taken.append(result)
        break  # the reader stops at its first result (as a Ctrl-C does)
    assert counting.received[0] == 3  # one receive brought all three: two were held, not taken
    started = time.monotonic()
    rest = wait_for(lambda: read_results(stack), timeout_s=40)
    # Handed back on the way out: visible again in HAND_BACK_S, not the queue's 30 s visibility.
    assert time.monotonic() - started < 8
    assert sorted(r.body["job_id"] for r in rest) == sorted(
        {"held-0", "held-1", "held-2"} - {taken[0].job_id}
    )


async def test_the_async_follower_waits_for_its_jobs_by_job_or_message_id(stack: Stack) -> None:
    sqs_sync = aws_client("sqs", stack.endpoints.moto)
    JobProducer(stack.jobs_queue_url, client=sqs_sync).send_many(sign_ups(2, prefix="other"))
    sent = JobProducer(stack.jobs_queue_url, client=sqs_sync).send(next(sign_ups(1, prefix="own")))
    assert run_worker(stack).returncode == 0
    session = aioboto3.Session()
    async with session.client("sqs", endpoint_url=stack.endpoints.moto) as sqs:
        follower = AsyncResultFollower(stack.results_queue_url, client=sqs)
        started = time.monotonic()
        outcome = await follower.wait_for(timeout_s=15, message_ids=[sent.message_id])
        assert time.monotonic() - started < 5
        assert outcome.results[sent.message_id].job_id == sent.job_id
        followed = [r async for r in follower.follow(timeout_s=15, jobs=["other-0", "other-1"])]
    assert sorted(r.job_id or "" for r in followed) == ["other-0", "other-1"]
