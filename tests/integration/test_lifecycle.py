"""Start, health, and stop the way ECS does it: the real process, probed over HTTP, then SIGTERM."""

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.support.harness import (
    by_job_id,
    enqueue,
    job,
    probe_http,
    queue_depth,
    read_results,
    wait_for,
    worker_env,
)
from worker.local.aws import Stack, free_port


def test_health_then_sigterm_drains_and_exits_0(stack: Stack) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        env=worker_env(stack, HEALTH_PORT=str(port), RECEIVE_WAIT_S="20"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: probe_http(port, "/readyz")[0] == 200)
        status, body = probe_http(port, "/healthz")
        assert status == 200
        assert body["status"] == "ok"
        assert body["jobs_in_flight"] == 0
        enqueue(stack, job("confirm_sign_up", job_id="h1", username="ghost", confirmation_code="1"))
        results = wait_for(lambda: read_results(stack))
        assert by_job_id(results)["h1"]["status"] == "failed"

        def metrics() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                page: str = answer.read().decode()
            # Counted once the message is deleted, a moment after the result is published.
            job_line = 'cognito_worker_jobs_total{status="failed",type="confirm_sign_up"} 1.0'
            return page if job_line in page else None

        page = wait_for(metrics, timeout_s=10)
        assert 'cognito_worker_cognito_calls_total{operation="ConfirmSignUp"' in page
        # SIGTERM while the loop sits in a 20 s long poll: it must not wait the poll out.
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert took < 10
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines if "_aws" not in line]  # EMF lines share stdout
    assert events[-2:] == ["stopping", "worker stopped"]
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    assert stack.client_secret not in stdout + stderr + json.dumps(body)
