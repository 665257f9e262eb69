"""The real worker over fuzzed malformed bodies: each gets one `rejected` result and one DLQ copy.

The bodies come from the strategies of tests/unit/test_fuzz_jobs.py (arbitrary text, JSON values,
valid jobs with fields dropped, swapped or added, huge strings, deep nesting), kept when
decode_job rejects them and SQS can carry them. Every example provisions its own stack.
"""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.harness import (
    ResultCollector,
    create_confirmed_user,
    enqueue,
    finish,
    job,
    queue_depth,
    read_results,
    run_worker,
    start_worker,
)
from tests.unit.test_fuzz_jobs import (
    SQS_FORBIDDEN,
    bodies_with_a_huge_string,
    json_bodies,
    json_ish_chars,
    json_values,
    mutated_jobs,
    spliced_jobs,
    sqs_chars,
)
from worker.contract.fields import dead_letter_body
from worker.contract.jobs import MalformedJob, decode_job
from worker.local.aws import Endpoints, Stack, aws_client, provision

MAX_BODY_BYTES = 200_000
_FORBIDDEN = re.compile(f"[{re.escape(SQS_FORBIDDEN)}]")


def rejection(body: str) -> MalformedJob | None:
    """What decode_job says of a body SQS can carry; None to leave the body out."""
    if not body or len(body.encode("utf-8")) >= MAX_BODY_BYTES or _FORBIDDEN.search(body):
        return None
    try:
        decode_job(body)
    except MalformedJob as malformed:
        if malformed.job_id is not None and not _utf8(malformed.job_id):
            # A lone surrogate in job_id: a known bug, pinned by
            # test_a_poison_body_holds_back_no_other_result below.
            return None
        return malformed
    except ValueError:
        # Integers of more than 4300 digits: a known bug, pinned by the unit test
        # test_huge_integers_are_malformed and below.
        return None
    return None  # a valid job


deep_bodies = st.builds(
    lambda opener, depth: opener * depth,
    st.sampled_from(["[", '{"a": ']),
    st.integers(1, 30_000),
)
malformed_bodies = st.one_of(
    st.text(sqs_chars, min_size=1),
    st.text(json_ish_chars, min_size=1),
    spliced_jobs(),
    json_bodies(json_values),
    json_bodies(mutated_jobs()),
    json_bodies(mutated_jobs()),
    bodies_with_a_huge_string(),
    deep_bodies,
).filter(lambda body: rejection(body) is not None)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def same_reason(published: str, decoded: str) -> bool:
    """Whether a published reason is the decoder's. How deep json.loads gets before a
    RecursionError depends on the process's stack, so a JSON error may read differently."""
    json_error = "body is not JSON: "
    if decoded.startswith(json_error):
        return published.startswith(json_error)
    return published == decoded


def drain(queue_url: str, endpoint: str) -> list[dict[str, Any]]:
    """Every message on a queue, received (with its attributes) and deleted."""
    sqs = aws_client("sqs", endpoint)
    messages: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        )
        received = answer.get("Messages", [])
        if not received:
            return messages
        messages += received
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)
            ],
        )


@settings(
    # Hypothesis tries the simplest list first (25 bodies "0": duplicates), then random ones.
    max_examples=4,
    deadline=None,
    database=None,
    # One example runs the worker (seconds): a failure is reported as found, not shrunk.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(bodies=st.lists(malformed_bodies, min_size=25, max_size=25))
def test_every_fuzzed_malformed_body_is_rejected_once_and_dead_lettered_once(
    endpoints: Endpoints, bodies: list[str]
) -> None:
    stack = provision(endpoints, f"fuzz-{uuid.uuid4().hex[:8]}")
    expected: dict[str, MalformedJob] = {}
    bodies_by_id: dict[str, str] = {}
    # One body a request: ten bodies of up to 200 KB would pass SQS's batch size limit.
    for body in bodies:
        (message_id,) = enqueue(stack, body)
        malformed = rejection(body)
        assert malformed is not None
        expected[message_id] = malformed
        bodies_by_id[message_id] = body

    run = run_worker(stack, timeout_s=60)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = [r.body for r in read_results(stack)]
    per_message = Counter(result["sqs_message_id"] for result in results)
    assert per_message == Counter(expected.keys()), "exactly one result per message"
    for result in results:
        malformed = expected[result["sqs_message_id"]]
        assert result["status"] == "rejected"
        assert result["error"]["code"] == "InvalidJob"
        assert isinstance(result["error"]["message"], str)
        assert result["error"]["message"]
        # The published reason and job id are the decoder's.
        assert same_reason(result["error"]["message"], malformed.reason)
        assert result["job_id"] == malformed.job_id
    dead = drain(stack.dead_letter_queue_url, endpoints.moto)
    # Each body once, without a plaintext password or code (tests/unit/test_fields.py checks
    # what the copy keeps).
    copies = [dead_letter_body(body) for body in bodies]
    assert Counter(m["Body"] for m in dead) == Counter(copies), "every body on the DLQ once"
    for message in dead:
        attributes = message["MessageAttributes"]
        original = attributes["original_message_id"]["StringValue"]
        assert message["Body"] == dead_letter_body(bodies_by_id[original])
        reason = attributes["rejection_reason"]["StringValue"]
        assert same_reason(reason, expected[original].reason[:1000])
    assert queue_depth(stack, stack.jobs_queue_url) == 0


def test_a_poison_body_holds_back_no_other_result(stack: Stack) -> None:
    create_confirmed_user(stack, "erin")
    innocent = [
        "not json",
        "[1, 2]",
        job("delete_everything", job_id="m-1", username="erin"),
        job("forgot_password", job_id="ok-1", username="erin"),
    ]
    poison = [
        json.dumps({"version": 1, "type": "forgot_password", "job_id": "j-\ud800"}),
        "1" * 4301,
    ]
    message_ids = enqueue(stack, *innocent, *poison)
    collector = ResultCollector(stack)
    worker = start_worker(stack, "--exit-when-idle", VISIBILITY_TIMEOUT_S="12", JOB_TIMEOUT_S="2")
    try:
        # Fixed, all six are answered in a second or two; broken, none is before the visibility
        # timeout ends, and nothing more can be learned by waiting.
        deadline = time.monotonic() + 8
        while len(collector.poll()) < len(message_ids) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        run = finish(worker, timeout_s=30)
    assert run.returncode == 0, run.stderr[-3000:]
    per_message = Counter(r.body["sqs_message_id"] for r in collector.results)
    assert [per_message[i] for i in message_ids[: len(innocent)]] == [1] * len(innocent)
    assert [per_message[i] for i in message_ids[len(innocent) :]] == [1] * len(poison)
    statuses = {r.body["sqs_message_id"]: r.body["status"] for r in collector.results}
    assert statuses[message_ids[3]] == "succeeded"
    assert {statuses[i] for i in message_ids if i != message_ids[3]} == {"rejected"}
    dead = drain(stack.dead_letter_queue_url, stack.endpoints.moto)
    # Bodies that are not a job's JSON object are copied as their size only (nothing of them is
    # known not to be secret); the job of an unknown type keeps its fields (none is secret).
    assert Counter(m["Body"] for m in dead) == Counter(map(dead_letter_body, innocent[:3] + poison))
    assert json.loads(dead_letter_body("not json")) == {
        "unreadable_body": {"bytes": 8, "kept": False}
    }
