"""`cognito-worker send` and `cognito-worker results` over the wire: one job from flags, a file or
stdin onto the lane asked for, and the results off the results queue as JSON lines, filtered."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.harness import (
    finish,
    read_results,
    run_worker,
    start_worker,
    user_status,
    wait_for,
    worker_env,
)
from worker.local.aws import Stack

PASSWORD = "Corr3ct-Horse!"


def cli_env(stack: Stack) -> dict[str, str]:
    return {**worker_env(stack), "RESULTS_QUEUE_URL": stack.results_queue_url}


def cli(
    stack: Stack, *args: str, stdin: str = "", timeout_s: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], input=stdin, env=cli_env(stack),
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_send_from_flags_then_results_by_job_id_and_no_secret_printed(stack: Stack) -> None:
    sent = cli(stack, "send", "--type", "sign_up", "--username", "-ann", "--job-id", "cli-1",
               "--email", "ann@example.com", "--attribute", "given_name=Ann",
               "--batch", "cli-batch", "--secrets-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    (printed,) = lines(sent.stdout)
    assert (printed["job_id"], printed["lane"]) == ("cli-1", "interactive")
    # Another job's result on the same queue, to be left alone by the filter.
    other = cli(stack, "send", "--type", "forgot_password", "--username", "nobody",
                "--job-id", "cli-other")  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert run_worker(stack).returncode == 0

    found = cli(stack, "results", "--job-id", "cli-1")
    assert found.returncode == 0, found.stderr
    (result,) = lines(found.stdout)
    assert (result["job_id"], result["status"], result["batch"]) == ("cli-1", "succeeded",
                                                                     "cli-batch")  # fmt: skip
    assert result["sqs_message_id"] == printed["message_id"]
    assert user_status(stack, "-ann") == "UNCONFIRMED"
    for output in (sent.stdout, sent.stderr, found.stdout, found.stderr):
        assert PASSWORD not in output
    # The other job's result was handed back, not taken.
    assert [p.body["job_id"] for p in wait_for(lambda: read_results(stack))] == ["cli-other"]


def test_send_from_stdin_to_the_bulk_lane_and_wait_for_the_result(stack: Stack) -> None:
    job = {"version": 1, "type": "sign_up", "job_id": "cli-file", "username": "bea",
           "password": PASSWORD, "user_attributes": {"email": "bea@example.com"}}  # fmt: skip
    sent = cli(stack, "send", "--file", "-", "--lane", "bulk", stdin=json.dumps(job))
    assert sent.returncode == 0, sent.stderr
    assert stack.queue_depth(stack.bulk_jobs_queue_url or "") == 1
    assert stack.queue_depth(stack.jobs_queue_url) == 0
    worker = start_worker(stack)
    try:
        # Sent to the interactive lane and waited for: the result is printed after the ids.
        second = json.dumps({**job, "job_id": "cli-wait", "username": "cleo"})
        waited = cli(stack, "send", "--file", "-", "--wait", "60", stdin=second)
        bulk = cli(stack, "results", "--job-id", "cli-file", "--timeout", "60")
    finally:
        worker.send_signal(signal.SIGTERM)
        finish(worker)
    assert waited.returncode == 0, waited.stderr
    ids, answered = lines(waited.stdout)
    assert (answered["job_id"], answered["status"], answered["lane"]) == (
        "cli-wait",
        "succeeded",
        "interactive",
    )
    assert answered["sqs_message_id"] == ids["message_id"]
    (result,) = lines(bulk.stdout)
    assert (result["status"], result["lane"]) == ("succeeded", "bulk")
    assert PASSWORD not in sent.stdout + sent.stderr + waited.stdout + waited.stderr + bulk.stdout


def test_results_filtered_by_lane(stack: Stack) -> None:
    for job_id, lane in (("l-1", "bulk"), ("l-2", "interactive"), ("l-3", "bulk")):
        done = cli(stack, "send", "--type", "forgot_password", "--username", f"u-{job_id}",
                   "--job-id", job_id, "--lane", lane)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert run_worker(stack).returncode == 0
    bulk = cli(stack, "results", "--lane", "bulk")
    # (Handed back for 2 s: a read at once would find the queue empty and stop.)
    interactive = cli(stack, "results", "--lane", "interactive", "--follow", "--timeout", "8")
    assert bulk.returncode == 0, bulk.stderr
    assert sorted((r["job_id"], r["lane"]) for r in lines(bulk.stdout)) == [
        ("l-1", "bulk"), ("l-3", "bulk")
    ]  # fmt: skip
    # The bulk read handed the live job's result back: it is there for the next reader.
    assert [(r["job_id"], r["lane"]) for r in lines(interactive.stdout)] == [("l-2", "interactive")]


def test_a_job_the_worker_would_reject_is_not_sent_and_its_reason_names_no_value(
    stack: Stack,
) -> None:
    refused = cli(stack, "send", "--type", "sign_up", "--username", "ann smith",
                  "--email", "a@example.com", "--secrets-stdin", stdin="p4ss word\n")  # fmt: skip
    assert refused.returncode == 1
    assert "character 4 (U+0020 SPACE)" in refused.stderr
    assert "p4ss word" not in refused.stdout + refused.stderr
    assert stack.queue_depth(stack.jobs_queue_url) == 0
    # No password flag exists, and without a terminal nothing prompts: it asks for stdin.
    no_prompt = cli(stack, "send", "--type", "sign_up", "--username", "ann",
                    "--email", "a@example.com")  # fmt: skip
    assert no_prompt.returncode == 2
    assert "--secrets-stdin" in no_prompt.stderr
    helped = cli(stack, "send", "--help")
    assert "never taken from a flag" in helped.stdout.replace("\n", " ").replace("  ", " ")


def test_results_follow_filters_by_batch_and_stops_cleanly_on_ctrl_c(
    stack: Stack, tmp_path: Path
) -> None:
    for job_id, batch in (("f-1", "mine"), ("f-2", "theirs"), ("f-3", "mine")):
        done = cli(stack, "send", "--type", "forgot_password", "--username", f"u-{job_id}",
                   "--job-id", job_id, "--batch", batch)  # fmt: skip
        assert done.returncode == 0, done.stderr
    output = tmp_path / "results.jsonl"
    with output.open("w") as out:
        follow = subprocess.Popen(
            [sys.executable, "-m", "worker", "results", "--follow", "--batch", "mine"],
            env=cli_env(stack), stdout=out, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    try:
        assert run_worker(stack).returncode == 0
        wait_for(lambda: len(output.read_text().splitlines()) == 2, timeout_s=30)
        time.sleep(0.5)  # a following read: nothing else of batch "mine" comes
        follow.send_signal(signal.SIGINT)
        code = follow.wait(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert code == 130
    assert follow.stderr is not None
    assert "Traceback" not in follow.stderr.read()
    assert sorted(r["job_id"] for r in lines(output.read_text())) == ["f-1", "f-3"]
    # The other batch's result was not consumed: it is back on the queue, handed back on the way
    # out, or (if the Ctrl-C cut off the very receive that was bringing it) once the results
    # queue's visibility timeout (30 s) ends.
    again = wait_for(lambda: read_results(stack), timeout_s=45)
    assert [p.body["job_id"] for p in again] == ["f-2"]
