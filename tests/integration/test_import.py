"""`cognito-worker import FILE` against the local AWS over HTTP, with the real worker where results
are needed: what an operator sees on the terminal, in the report, on the queue and in the pool."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.harness import (
    finish,
    run_worker,
    start_worker,
    user_status,
    wait_for,
    worker_env,
)
from worker.cognito.secret_hash import secret_hash
from worker.local.aws import Stack, aws_client, create_idempotency_table

PASSWORD_OK = "Imp0rt-Secret-one!"
PASSWORDS = ["Imp0rt-Secret-ann!", "Imp0rt-Secret-bob!", "Imp0rt-Secret-zoe!", "bad pass word"]


def run_import(
    stack: Stack, tmp_path: Path, *args: str, timeout_s: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "import", *args, "--progress-interval-s", "0.2"],
        env=worker_env(stack, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def report_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def queued_bodies(stack: Stack) -> list[dict[str, object]]:
    """Every job on the bulk jobs queue (an import's lane), each read once (kept invisible
    while reading)."""
    sqs = aws_client("sqs", stack.endpoints.moto)
    bodies: list[dict[str, object]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=stack.bulk_jobs_queue_url or stack.jobs_queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=600,
        )
        messages = answer.get("Messages", [])
        if not messages:
            return bodies
        bodies += [json.loads(m["Body"]) for m in messages]


def users_csv(tmp_path: Path) -> Path:
    path = tmp_path / "users.csv"
    lines = [
        "username,password,email,given_name",
        f"ann,{PASSWORDS[0]},ann@example.com,Ann",
        f"bob,{PASSWORDS[1]},bob@example.com,Bob",
        f"zoë,{PASSWORDS[2]},zoe@example.com,Zoë",
        f"dan smith,{PASSWORDS[3]},dan@example.com,Dan",
    ]
    # A BOM, as spreadsheet programs write it.
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode())
    return path


def test_invalid_rows_are_listed_by_line_and_rule_and_nothing_is_sent(
    stack: Stack, tmp_path: Path
) -> None:
    users_csv(tmp_path)
    done = run_import(stack, tmp_path, "users.csv", "--type", "sign_up", "--report", "r.csv")
    assert done.returncode == 1
    assert "line 5: sign_up.username: String should match pattern" in done.stdout
    assert "sign_up.password: String should match pattern" in done.stdout
    assert "nothing was sent" in done.stdout
    assert stack.queue_depth(stack.jobs_queue_url) == 0
    assert stack.bulk_jobs_queue_url is not None
    assert stack.queue_depth(stack.bulk_jobs_queue_url) == 0
    everything = done.stdout + done.stderr + (tmp_path / "r.csv").read_text(encoding="utf-8")
    for secret in [*PASSWORDS, "dan smith"]:
        assert secret not in everything
    rows = report_rows(tmp_path / "r.csv")
    assert [(r["line"], r["status"]) for r in rows] == [
        ("2", "not_sent"),
        ("3", "not_sent"),
        ("4", "not_sent"),
        ("5", "invalid"),
    ]


def test_wait_follows_results_and_reports_existing_users_as_such(
    stack: Stack, tmp_path: Path
) -> None:
    stack.create_confirmed_user("bob", "Start-Passw0rd!")
    users_csv(tmp_path)
    worker = start_worker(stack)
    try:
        done = run_import(
            stack,
            tmp_path,
            "users.csv",
            "--type",
            "sign_up",
            "--import-id",
            "wave-1",
            "--skip-invalid",
            "--wait",
            "--wait-timeout-s",
            "60",
            "--report",
            "r.csv",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        finish(worker)
    assert done.returncode == 1, done.stdout + done.stderr  # one row was invalid
    rows = {r["line"]: r for r in report_rows(tmp_path / "r.csv")}
    assert {line: (r["username"], r["status"], r["error_code"]) for line, r in rows.items()} == {
        "2": ("ann", "succeeded", ""),
        "3": ("bob", "already_exists", "UsernameExistsException"),
        "4": ("zoë", "succeeded", ""),
        "5": ("", "invalid", "InvalidJob"),
    }
    assert rows["2"]["job_id"] == "wave-1:sign_up:2"
    assert "results: 3/3 rows" in done.stdout
    assert "UsernameExistsException" in done.stdout  # the summary by error code
    assert user_status(stack, "ann") == "UNCONFIRMED"
    assert user_status(stack, "zoë") == "UNCONFIRMED"
    everything = done.stdout + done.stderr + (tmp_path / "r.csv").read_text(encoding="utf-8")
    assert not any(secret in everything for secret in PASSWORDS)
    # The temporary results queue is gone, and with it its subscription.
    sqs = aws_client("sqs", stack.endpoints.moto)
    queues = sqs.list_queues(QueueNamePrefix="cognito-worker-results-wave-1").get("QueueUrls", [])
    assert queues == []
    sns = aws_client("sns", stack.endpoints.moto)
    topic = sns.list_subscriptions_by_topic(TopicArn=stack.results_topic_arn)["Subscriptions"]
    assert len(topic) == 1  # the stack's own results queue only


def test_a_rerun_after_the_idempotency_window_reports_existing_users(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "users.jsonl"
    lines = [
        json.dumps({"username": "ann", "password": PASSWORDS[0], "email": "ann@example.com"}),
        json.dumps({"username": "zoë", "password": PASSWORDS[2]}, ensure_ascii=False),
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    arguments = ["users.jsonl", "--type", "sign_up", "--wait", "--wait-timeout-s", "60"]
    for run in ("first", "after the window"):
        # A worker with the in-memory store: a new process remembers no job id, as a store
        # would after its IDEMPOTENCY_TTL_S.
        worker = start_worker(stack)
        try:
            done = run_import(stack, tmp_path, *arguments, "--report", f"{run}.csv")
        finally:
            worker.send_signal(signal.SIGTERM)
            finish(worker)
        assert done.returncode == 0, done.stdout + done.stderr
    first = report_rows(tmp_path / "first.csv")
    again = report_rows(tmp_path / "after the window.csv")
    assert [r["status"] for r in first] == ["succeeded", "succeeded"]
    assert [(r["username"], r["status"]) for r in again] == [
        ("ann", "already_exists"),
        ("zoë", "already_exists"),
    ]
    assert [r["job_id"] for r in first] == [r["job_id"] for r in again]


def test_an_interrupted_import_resumes_without_sending_a_row_twice_or_skipping_one(
    stack: Stack, tmp_path: Path
) -> None:
    rows = 400
    path = tmp_path / "many.csv"
    with path.open("w", encoding="utf-8") as file:
        file.write("username,password,email\n")
        for i in range(rows):
            file.write(f"user{i:05d},Passw0rd!{i:05d},user{i:05d}@example.com\n")
    arguments = ["many.csv", "--type", "sign_up", "--import-id", "big", "--checkpoint", "c.json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "import", *arguments, "--report", "first.csv"],
        env=worker_env(stack),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def some_sent() -> bool:
        try:
            ranges = json.loads((tmp_path / "c.json").read_text())["sent_lines"]
        except (OSError, ValueError):
            return False
        return sum(last - first + 1 for first, last in ranges) >= 40

    wait_for(some_sent, timeout_s=60, interval_s=0.02)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130, stdout
    assert "--resume" in stdout
    first = report_rows(tmp_path / "first.csv")
    sent_first = sum(r["status"] == "sent" for r in first)
    assert 40 <= sent_first < rows  # stopped in the middle
    assert {r["status"] for r in first} == {"sent", "not_sent"}

    done = run_import(stack, tmp_path, *arguments, "--resume", "--report", "second.csv")
    # No worker ran and the store is the memory one: what became of the rows sent first cannot
    # be known, and the exit code says so.
    assert done.returncode == 3, done.stdout + done.stderr
    second = report_rows(tmp_path / "second.csv")
    assert sum(r["status"] == "unknown" for r in second) == sent_first
    assert sum(r["status"] == "sent" for r in second) == rows - sent_first

    job_ids = [str(body["job_id"]) for body in queued_bodies(stack)]
    assert len(job_ids) == rows  # nothing sent twice
    assert set(job_ids) == {f"big:sign_up:{line}" for line in range(2, rows + 2)}  # none skipped


def test_a_killed_import_resumed_reports_what_became_of_every_row_sent_before(
    stack: Stack, tmp_path: Path
) -> None:
    """Killed while sending; resumed before any worker ran: the rows sent before have no
    outcome yet (unknown, exit 3). Resumed again after the worker did them: each row's real
    outcome, read from the idempotency table, and exit 0."""
    table = create_idempotency_table(stack.endpoints)
    store = {"IDEMPOTENCY_STORE": "dynamodb", "IDEMPOTENCY_TABLE": table}
    rows = 300
    stack.create_confirmed_user("user00000", "Start-Passw0rd!")  # line 2: already there
    path = tmp_path / "many.csv"
    with path.open("w", encoding="utf-8") as file:
        file.write("username,password,email\n")
        for i in range(rows):
            file.write(f"user{i:05d},Passw0rd!{i:05d},user{i:05d}@example.com\n")
    arguments = ["many.csv", "--type", "sign_up", "--import-id", "kill", "--checkpoint", "c.json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "import", *arguments, "--report", "first.csv"],
        env=worker_env(stack, **store),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def sent_lines() -> set[int]:
        try:
            ranges = json.loads((tmp_path / "c.json").read_text())["sent_lines"]
        except (OSError, ValueError):
            return set()
        return {line for first, last in ranges for line in range(first, last + 1)}

    wait_for(lambda: len(sent_lines()) >= 30, timeout_s=60, interval_s=0.02)
    process.kill()
    process.wait(timeout=30)
    sent_first = sent_lines()
    assert 30 <= len(sent_first) < rows
    assert not (tmp_path / "first.csv").exists()  # killed: no report, the checkpoint only

    resumed = run_import(stack, tmp_path, *arguments, "--resume", "--report", "second.csv",
                         **store)  # fmt: skip
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    second = {int(r["line"]): r for r in report_rows(tmp_path / "second.csv")}
    assert {line for line, r in second.items() if r["status"] == "unknown"} == sent_first
    assert {r["status"] for line, r in second.items() if line not in sent_first} == {"sent"}
    assert "no record in the idempotency table" in second[min(sent_first)]["message"]
    assert "have no known outcome (status unknown)" in resumed.stdout

    assert run_worker(stack, timeout_s=240, **store).returncode == 0
    again = run_import(stack, tmp_path, *arguments, "--resume", "--report", "third.csv",
                       **store)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    third = {int(r["line"]): r["status"] for r in report_rows(tmp_path / "third.csv")}
    assert third == dict.fromkeys(range(3, rows + 2), "succeeded") | {2: "already_exists"}
    assert user_status(stack, "user00299") == "UNCONFIRMED"


def test_a_resume_against_a_worker_with_the_memory_store_says_outcomes_are_unknown(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "two.csv"
    path.write_text(f"username,password,email\nann,{PASSWORD_OK},ann@example.com\n")
    arguments = ["two.csv", "--type", "sign_up", "--checkpoint", "c.json"]
    assert run_import(stack, tmp_path, *arguments).returncode == 0
    done = run_import(stack, tmp_path, *arguments, "--resume", "--report", "r.csv")
    assert done.returncode == 3, done.stdout + done.stderr
    (row,) = report_rows(tmp_path / "r.csv")
    assert row["status"] == "unknown"
    assert "IDEMPOTENCY_STORE is memory" in row["message"]


def test_a_bad_email_a_conflicting_username_and_a_repeat_are_caught_before_sending(
    stack: Stack, tmp_path: Path
) -> None:
    """The operator's 20-row file: each fault is reported by line and rule; with --skip-invalid
    only the good rows reach the queue, the repeated one once."""
    rows = [f"user{i:02d},{PASSWORD_OK},user{i:02d}@example.com" for i in range(20)]
    rows[2] = f"user02,{PASSWORD_OK},not-an-email"  # line 4
    rows[6] = f"USER05,{PASSWORD_OK},other@example.com"  # line 8: user05 (line 7), other email
    rows[9] = f"user09,{PASSWORD_OK}"  # line 11: a column short
    rows[12] = rows[11]  # line 14 repeats line 13
    (tmp_path / "ops.csv").write_text("username,password,email\n" + "\n".join(rows) + "\n")
    arguments = ["ops.csv", "--type", "sign_up", "--import-id", "ops"]
    checked = run_import(stack, tmp_path, *arguments, "--validate-only")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    for expected in (
        "line 4: email: not an email address",
        "line 7: username (compared without case) also on line(s) 8 with different data",
        "line 8: username (compared without case) also on line(s) 7 with different data",
        "line 11: has 2 fields; the header has 3",
        "line 14: duplicate: repeats line 13 exactly: not sent again",
    ):
        assert expected in checked.stdout, checked.stdout
    assert "report: ops.sign_up.validation.csv" in checked.stdout
    done = run_import(stack, tmp_path, *arguments, "--skip-invalid")
    assert done.returncode == 1, done.stdout + done.stderr
    report = {int(r["line"]): r["status"] for r in report_rows(tmp_path / "ops.sign_up.report.csv")}
    assert {line for line, status in report.items() if status == "invalid"} == {4, 7, 8, 11}
    assert report[14] == "duplicate"
    assert (tmp_path / "ops.sign_up.validation.csv").exists()  # not overwritten by the run
    sent = sorted(int(str(body["job_id"]).rsplit(":", 1)[1]) for body in queued_bodies(stack))
    assert sent == [line for line in range(2, 22) if line not in {4, 7, 8, 11, 14}]


def test_a_large_file_is_validated_in_bounded_memory(tmp_path: Path) -> None:
    def peak_rss_mib(rows: int) -> float:
        path = tmp_path / f"u{rows}.csv"
        with path.open("w", encoding="utf-8") as file:
            file.write("username,password,email,given_name\n")
            for i in range(rows):
                file.write(f"user{i:07d},Passw0rd!{i:07d},user{i:07d}@example.com,Name {i}\n")
        command = [sys.executable, "-m", "worker", "import", path.name, "--type", "sign_up"]
        process = subprocess.Popen(
            [*command, "--validate-only", "--progress-interval-s", "60"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        report = tmp_path / next(p for p in os.listdir(tmp_path) if p.startswith(f"u{rows}-"))
        assert report.read_text().count("\n") == rows + 1
        return usage.ru_maxrss / 1024

    small = peak_rss_mib(2_000)
    large = peak_rss_mib(100_000)
    # 50 times the rows: a list of them would be ~60 MB more; streaming stays within noise.
    assert large < small + 25, (small, large)


def test_import_user_leaves_users_ready_to_sign_in(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "migration.jsonl"
    lines = [
        {"username": "ann", "password": PASSWORDS[0], "email": "ann@example.com"},
        {"username": "zoë", "password": PASSWORDS[2], "email": "zoe@example.com"},
    ]
    path.write_text(
        "\n".join(json.dumps({**line, "email_verified": True}) for line in lines) + "\n",
        encoding="utf-8",
    )
    worker = start_worker(stack)
    try:
        done = run_import(
            stack, tmp_path, path.name, "--type", "import_user", "--wait", "--report", "r.csv"
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        finish(worker)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["status"] for r in report_rows(tmp_path / "r.csv")] == ["succeeded", "succeeded"]
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    for username in ("ann", "zoë"):
        user = idp.admin_get_user(UserPoolId=stack.user_pool_id, Username=username)
        assert user["UserStatus"] == "CONFIRMED"
        attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
        assert attributes["email_verified"] == "true"
    # The password is the one in the file, set as permanent: the user can sign in with it.
    # (moto's USER_PASSWORD_AUTH checks the password; the hash is not what this test is about.)
    answer = idp.admin_initiate_auth(
        UserPoolId=stack.user_pool_id,
        ClientId=stack.client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={
            "USERNAME": "ann",
            "PASSWORD": PASSWORDS[0],
            "SECRET_HASH": secret_hash("ann", stack.client_id, stack.client_secret),
        },
    )
    assert "AccessToken" in answer["AuthenticationResult"]


def test_the_report_neither_runs_formulas_nor_shows_users_to_others(
    stack: Stack, tmp_path: Path
) -> None:
    """Usernames are the file's, and a spreadsheet runs a cell that starts with = + - or @ as a
    formula: the report writes such a cell with a leading apostrophe. The report and the
    checkpoint hold users' names and emails: both are created readable by their owner alone."""
    names = ['=HYPERLINK("http://x.example")', "+447700900123", "-minus", "@at", "plain"]
    path = tmp_path / "tricky.csv"
    lines = [f'"{n.replace(chr(34), chr(34) * 2)}",{PASSWORDS[0]},u{i}@example.com\n'
            for i, n in enumerate(names)]  # fmt: skip
    path.write_text("username,password,email\n" + "".join(lines), encoding="utf-8")
    worker = start_worker(stack)
    try:
        done = run_import(stack, tmp_path, path.name, "--type", "sign_up", "--wait",
                          "--report", "r.csv")  # fmt: skip
    finally:
        worker.send_signal(signal.SIGTERM)
        finish(worker)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = report_rows(tmp_path / "r.csv")
    assert [r["username"] for r in rows] == [*("'" + n for n in names[:4]), "plain"]
    assert {r["status"] for r in rows} == {"succeeded"}
    assert user_status(stack, names[0]) == "UNCONFIRMED"  # the user is created as named
    written = [tmp_path / "r.csv", *tmp_path.glob("*checkpoint*")]
    assert len(written) >= 2, sorted(p.name for p in tmp_path.iterdir())
    for file in written:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name


def test_an_import_goes_to_the_bulk_lane_and_says_so_unless_told_otherwise(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "two.csv"
    path.write_text(f"username,password,email\nann,{PASSWORDS[0]},ann@example.com\n")
    done = run_import(stack, tmp_path, "two.csv", "--type", "sign_up")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lane: bulk (BULK_JOBS_QUEUE_URL)" in done.stdout
    assert [body["username"] for body in queued_bodies(stack)] == ["ann"]
    assert stack.queue_depth(stack.jobs_queue_url) == 0
    path.write_text(f"username,password,email\nbob,{PASSWORDS[1]},bob@example.com\n")
    done = run_import(stack, tmp_path, "two.csv", "--type", "sign_up", "--lane", "interactive")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lane: interactive (JOBS_QUEUE_URL), as asked" in done.stdout
    assert stack.queue_depth(stack.jobs_queue_url) == 1
