"""Every app client is probed at start, and the breaker's probe checks the user pool too: what an
on-call engineer sees in /readyz, in the logs and on the queue when the configuration is wrong."""

import functools
import signal
import socket
import time
from typing import Any

from tests.support.harness import (
    enqueue,
    finish,
    job,
    probe_http,
    queue_depth,
    read_results,
    run_worker,
    start_worker,
    wait_for,
)
from worker.local.aws import Stack, aws_client, free_port

PASSWORD = "Valid-Passw0rd!"
SECRET_HINT = "NotAuthorizedException (check the client secret configured for this app client)"


def readiness_once(port: int, status: int) -> Any:
    """A poll for /readyz answering ``status`` once started: its body, or None (not yet)."""

    def poll() -> dict[str, Any] | None:
        code, body = probe_http(port, "/readyz")
        return body if code == status and body.get("status") != "starting" else None

    return poll


def is_starting(port: int) -> bool:
    return probe_http(port, "/readyz")[1].get("status") == "starting"


def never_received(stack: Stack) -> bool:
    """Whether the one job on the queue was never received before (this look is its first)."""
    answer = aws_client("sqs", stack.endpoints.queues_and_topics).receive_message(
        QueueUrl=stack.jobs_queue_url,
        AttributeNames=["ApproximateReceiveCount"],
        VisibilityTimeout=0,
        WaitTimeSeconds=1,
    )
    (message,) = answer["Messages"]
    return message["Attributes"]["ApproximateReceiveCount"] == "1"


def test_a_wrong_secret_is_not_ready_from_the_start_and_takes_no_job(stack: Stack) -> None:
    wrong = "wrong-" + stack.client_secret[6:]
    port = free_port()
    worker = start_worker(stack, COGNITO_CLIENT_SECRET=wrong, HEALTH_PORT=str(port))
    try:
        # No job has arrived: the probe at start found it.
        body = wait_for(readiness_once(port, 503), timeout_s=30)
        assert body == {"status": "configuration error", "clients": {stack.client_id: SECRET_HINT}}
        assert probe_http(port, "/healthz")[0] == 200  # alive: a restart would not help
        enqueue(stack, job("sign_up", job_id="s1", username="sara", password=PASSWORD))
        wait_for(lambda: queue_depth(stack, stack.jobs_queue_url) == 1)
        assert wait_for(readiness_once(port, 503), timeout_s=5)["status"] == ("configuration error")
    finally:
        worker.send_signal(signal.SIGTERM)
        run = finish(worker)
    assert run.returncode == 0
    (tripped,) = run.events("configuration error: this client takes no work until a probe passes")
    assert tripped["error_code"] == "NotAuthorizedException"
    assert run.events("job handed back to the queue") == []
    assert read_results(stack) == []
    assert queue_depth(stack, stack.jobs_queue_url) == 1  # untouched, for the fixed worker
    assert never_received(stack)
    assert wrong not in run.stdout + run.stderr
    assert stack.client_secret not in run.stdout + run.stderr


def test_burst_mode_with_a_wrong_secret_exits_3_before_taking_a_job(stack: Stack) -> None:
    enqueue(
        stack,
        *[job("sign_up", job_id=f"b{i}", username=f"bea{i}", password=PASSWORD) for i in range(3)],
    )
    run = run_worker(stack, COGNITO_CLIENT_SECRET="wrong-" + stack.client_secret[6:])
    assert run.returncode == 3, run.stdout[-3000:]
    (gave_up,) = run.events(
        "burst mode gives up: every app client's configuration is broken; nothing was received"
    )
    assert gave_up["level"] == "error"
    assert gave_up["clients"] == {stack.client_id: SECRET_HINT}
    assert run.events("job handed back to the queue") == []
    assert read_results(stack) == []  # no job failed for the deployment's fault
    assert queue_depth(stack, stack.jobs_queue_url) == 3


def test_with_a_wrong_pool_the_breaker_never_reopens_work(stack: Stack) -> None:
    """The client and its secret are sound: ConfirmSignUp, which names no pool, passes. A
    sign-up (which names no pool either) would go through, so any probe that passed would show
    as its result."""
    port = free_port()
    worker = start_worker(
        stack,
        COGNITO_USER_POOL_ID="us-east-1_nope",
        HEALTH_PORT=str(port),
        BREAKER_COOLDOWN_S="0.2",
        BREAKER_MAX_COOLDOWN_S="0.5",
    )
    try:
        body = wait_for(readiness_once(port, 503), timeout_s=30)
        assert body["clients"] == {
            stack.client_id: "ResourceNotFoundException (check the user pool id configured for "
            "this app client)"
        }
        enqueue(stack, job("sign_up", job_id="p1", username="pia", password=PASSWORD))
        wait_for(lambda: queue_depth(stack, stack.jobs_queue_url) == 1)
        # Several probes in a row (0.2 s, 0.4 s, then every 0.5 s), each finding the pool wrong.
        time.sleep(4)
        assert wait_for(readiness_once(port, 503), timeout_s=5)["status"] == ("configuration error")
    finally:
        worker.send_signal(signal.SIGTERM)
        run = finish(worker)
    assert run.returncode == 0
    failed = run.events("configuration probe failed")
    assert len(failed) >= 3, run.stdout[-3000:]
    assert {event["error_code"] for event in failed} == {"ResourceNotFoundException"}
    assert "us-east-1_nope" in failed[0]["error_message"]
    assert run.events("configuration probe passed: taking work again") == []
    assert read_results(stack) == []
    assert never_received(stack)


def test_a_cognito_out_of_reach_at_start_does_not_stop_the_worker(stack: Stack) -> None:
    """The probe at start cannot tell: the worker starts and takes work, as it would without a
    probe (a job meeting a configuration error would still open the breaker), and readiness
    names the client as unverified."""
    port = free_port()
    nowhere = f"http://127.0.0.1:{free_port()}"
    worker = start_worker(
        stack, HEALTH_PORT=str(port), AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=nowhere
    )
    try:
        body = wait_for(readiness_once(port, 200), timeout_s=30)
        assert body["status"] == "ready"
        assert body["unverified_clients"] == {stack.client_id: "EndpointConnectionError"}
        assert probe_http(port, "/healthz")[0] == 200
    finally:
        worker.send_signal(signal.SIGTERM)
        run = finish(worker)
    assert run.returncode == 0
    (inconclusive,) = run.events("configuration not verified at start: taking work")
    assert inconclusive["client_id"] == stack.client_id


def test_a_cognito_that_never_answers_delays_the_start_by_the_time_limit_only(
    stack: Stack,
) -> None:
    """A Cognito endpoint that takes connections and never answers: the probe at start is cut
    off after 5 s (the read timeout alone would take 10), and a stop while it waits is heard."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections wait in the backlog, never accepted, never answered
        nowhere = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for stop_while_probing in (False, True):
            port = free_port()
            worker = start_worker(
                stack, HEALTH_PORT=str(port), AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=nowhere
            )
            try:
                wait_for(functools.partial(is_starting, port))
                if stop_while_probing:
                    stopped_at = time.monotonic()
                    worker.send_signal(signal.SIGTERM)
                    run = finish(worker, timeout_s=30)
                    assert time.monotonic() - stopped_at < 4, run.stdout[-2000:]
                    assert run.returncode == 0
                    continue
                started_at = time.monotonic()
                body = wait_for(readiness_once(port, 200), timeout_s=30)
                assert time.monotonic() - started_at < 8
                assert body["unverified_clients"] == {stack.client_id: "TimeoutError"}
            finally:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    finish(worker)
