"""`cognito-worker dlq` over the wire: a DLQ the worker filled with a mix of reasons, grouped,
listed, redriven in part (a redrive cut off between its sends and its deletes resumed without a
second copy), and purged in part.

The DLQ is filled by the worker itself: malformed bodies, an unknown type and an unknown client
are rejected and copied there; ResendConfirmationCode sent straight to moto (which lacks it)
answers HTTP 500, a real transient failure, and with RETRY_MAX_DELIVERIES=1 the worker gives up
at once and copies the job there too. Grouping and the selective redrive run on both SQS
emulators; the cut-off redrive runs on moto, behind the fault proxy that refuses its deletes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.harness import (
    by_job_id,
    create_unconfirmed_user,
    enqueue,
    job,
    queue_depth,
    read_results,
    run_worker,
    worker_env,
)
from worker.local.aws import Stack, aws_client

from .conftest import BOTH_EMULATORS

PASSWORD = "Corr3ct-Horse-Battery!"
TRANSIENT = "transient errors in every allowed delivery"


def dlq(stack: Stack, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m worker dlq ARGS` with the worker's environment, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "worker", "dlq", *args],
        env={**worker_env(stack), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def fill_the_dlq(stack: Stack) -> dict[str, str]:
    """Let the worker dead-letter a mix of reasons; return the message ids by name."""
    for name in ("dana1", "dana2", "dana3"):
        create_unconfirmed_user(stack, name)
    names = ["broken", "unknown-type", "bad-client", "r1", "r2", "r3"]
    ids = enqueue(
        stack,
        '{"version": 1, "type": "sign_up", "password": "' + PASSWORD + '"',
        job("delete_user", job_id="unknown-type", username="erin"),
        job("sign_up", job_id="bad-client", client_id="nosuchclient", username="carol@example.com",
            password=PASSWORD),
        *(job("resend_confirmation_code", job_id=f"r{n}", username=f"dana{n}", batch="b1")
          for n in (1, 2, 3)),
    )  # fmt: skip
    run = run_worker(
        stack,
        AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=stack.endpoints.moto,
        RETRY_MAX_ATTEMPTS="1",
        RETRY_MAX_DELIVERIES="1",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert queue_depth(stack, stack.dead_letter_queue_url) == 6
    read_results(stack)  # the rejections and failures, not looked at here
    return dict(zip(names, ids, strict=True))


@BOTH_EMULATORS
def test_summary_groups_the_mix_and_show_lists_a_group_with_nothing_secret(
    stack: Stack, tmp_path: Path
) -> None:
    fill_the_dlq(stack)

    summary = dlq(stack, tmp_path, "summary", "--json")

    assert summary.returncode == 0, summary.stderr
    (document,) = json_lines(summary.stdout)
    assert document["read"] == 6
    reasons = {row["value"]: row["count"] for row in document["groups"]["reason"]}
    assert reasons == {
        "body is not JSON: Expecting ',' delimiter": 1,
        "type: missing or unknown; expected one of sign_up, confirm_sign_up, "
        "resend_confirmation_code, forgot_password, confirm_forgot_password, import_user, "
        "invite_user": 1,
        "client_id: 'nosuchclient' is not a configured app client": 1,
        f"500: {TRANSIENT}": 3,  # moto answers HTTP 500 without an error code
    }
    types = {row["value"]: row["count"] for row in document["groups"]["type"]}
    assert types == {"resend_confirmation_code": 3, "sign_up": 1, "-": 2}
    batches = {row["value"]: row["count"] for row in document["groups"]["batch"]}
    assert batches == {"b1": 3, "-": 3}
    assert {row["value"] for row in document["groups"]["client"]} == {"nosuchclient", "-"}
    assert all(row["oldest"] <= row["newest"] for row in document["groups"]["reason"])
    # Read, then handed back: the DLQ holds every message, visible at once.
    assert queue_depth(stack, stack.dead_letter_queue_url) == 6
    assert len(aws_client("sqs", stack.endpoints.queues_and_topics).receive_message(
        QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0,
    ).get("Messages", [])) >= 1  # fmt: skip

    table = dlq(stack, tmp_path, "summary")
    shown = dlq(stack, tmp_path, "show", "--reason", "transient")

    assert table.returncode == 0
    assert "by reason:" in table.stdout
    assert "     3  " in table.stdout
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if line.startswith("r")]
    assert sorted(line.split()[0] for line in lines) == ["r1", "r2", "r3"]
    assert all("user=d***" in line for line in lines)
    carol = json_lines(dlq(stack, tmp_path, "show", "--job-id", "bad-client", "--json").stdout)
    assert [line["username"] for line in carol] == ["c***@e***"]
    everything = table.stdout + shown.stdout + json.dumps(carol) + summary.stdout
    for secret in (PASSWORD, "dana1", "carol", stack.client_secret):
        assert secret not in everything


@BOTH_EMULATORS
def test_redrive_moves_only_the_chosen_checks_them_first_and_a_dry_run_moves_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    fill_the_dlq(stack)

    dry = dlq(stack, tmp_path, "redrive", "--reason", "transient", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("-> would send") == 3
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    assert queue_depth(stack, stack.dead_letter_queue_url) == 6

    # One transient failure and the job of an unknown client: that one's copy kept no
    # plaintext password, so it is not a job any more, and it stays, saying why.
    chosen = dlq(stack, tmp_path, "redrive", "--job-id", "r1", "--job-id", "bad-client")

    assert chosen.returncode == 3, chosen.stderr
    assert "r1  resend_confirmation_code" in chosen.stdout
    assert "-> sent" in chosen.stdout
    assert "bad-client  sign_up  client=nosuchclient  user=c***@e***" in chosen.stdout
    why = "sign_up.password: Field required (the DLQ copy keeps no plaintext password: the "
    assert f"still invalid: {why}producer must send this job again)" in chosen.stdout
    assert "1 sent" in chosen.stdout
    assert queue_depth(stack, stack.dead_letter_queue_url) == 5
    assert queue_depth(stack, stack.jobs_queue_url) == 1
    # The copy is the job as it was, and runs: through the Cognito front it succeeds now.
    run = run_worker(stack)
    assert run.returncode == 0
    results = by_job_id(read_results(stack))
    assert set(results) == {"r1"}
    assert results["r1"]["status"] == "succeeded"
    left = json_lines(dlq(stack, tmp_path, "show", "--json").stdout)
    kept = ["-", "bad-client", "r2", "r3", "unknown-type"]
    assert sorted(line["job_id"] for line in left) == kept


def test_a_redrive_cut_off_before_its_deletes_resumes_without_a_second_copy(
    stack: Stack, tmp_path: Path, proxy: FaultProxy
) -> None:
    """SQS refuses every DeleteMessageBatch: the copies are sent, the DLQ keeps the messages,
    the run fails. The same command again sends nothing and deletes them."""
    fill_the_dlq(stack)
    with proxy.fault("http_500", service="sqs", operation="DeleteMessageBatch"):
        cut_off = dlq(stack, tmp_path, "redrive", "--batch", "b1",
                      AWS_ENDPOINT_URL_SQS=proxy.url)  # fmt: skip
    assert cut_off.returncode == 1, cut_off.stdout + cut_off.stderr
    assert "run the same command again" in cut_off.stderr
    assert queue_depth(stack, stack.jobs_queue_url) == 3
    assert queue_depth(stack, stack.dead_letter_queue_url) == 6

    resumed = dlq(stack, tmp_path, "redrive", "--batch", "b1")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "0 sent, 3 sent by an earlier run (deleted now)" in resumed.stdout
    assert queue_depth(stack, stack.jobs_queue_url) == 3
    assert queue_depth(stack, stack.dead_letter_queue_url) == 3
    journal = tmp_path / f"dlq-redrive-{stack.dead_letter_queue_url.rsplit('/', 1)[-1]}.journal"
    assert oct(journal.stat().st_mode & 0o777) == "0o600"
    # Each job runs once: three results, one per job.
    run = run_worker(stack)
    assert run.returncode == 0
    results = read_results(stack)
    assert sorted(r.body["job_id"] for r in results) == ["r1", "r2", "r3"]
    assert {r.body["status"] for r in results} == {"succeeded"}


def test_purge_deletes_the_chosen_only_once_confirmed(stack: Stack, tmp_path: Path) -> None:
    fill_the_dlq(stack)

    unconfirmed = dlq(stack, tmp_path, "purge", "--reason", "type: missing or unknown")
    everything = dlq(stack, tmp_path, "purge")

    assert unconfirmed.returncode == 4
    assert "give --yes" in unconfirmed.stderr
    assert everything.returncode == 2
    assert queue_depth(stack, stack.dead_letter_queue_url) == 6

    confirmed = dlq(stack, tmp_path, "purge", "--reason", "type: missing or unknown", "--yes")

    assert confirmed.returncode == 0, confirmed.stderr
    assert "6 read, 1 chosen, 1 deleted" in confirmed.stdout
    assert queue_depth(stack, stack.dead_letter_queue_url) == 5
    left = json_lines(dlq(stack, tmp_path, "show", "--json").stdout)
    assert "unknown-type" not in {line["job_id"] for line in left}


def test_without_a_queue_the_command_names_the_variable(stack: Stack, tmp_path: Path) -> None:
    done = dlq(stack, tmp_path, "summary", DEAD_LETTER_QUEUE_URL="")
    assert done.returncode == 2
    assert "DEAD_LETTER_QUEUE_URL" in done.stderr


@pytest.fixture(autouse=True)
def _no_inherited_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
