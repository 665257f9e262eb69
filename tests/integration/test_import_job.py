"""`cognito-worker import` through Cognito's user import job, against the local front over HTTP.

moto has no import jobs: the local front (worker/local/import_jobs.py) implements them from AWS's
guide, so these tests show the import drives the documented protocol end to end (header from
GetCSVHeader, the presigned upload and its header, start, describe, the job's log in moto's
CloudWatch Logs) and that the users land in the state the guide gives. What they cannot show:
Cognito's own pace (the front's is moto's), its reading of anything the guide leaves open (the
"Line Number" of the first user, failure texts other than the guide's, a job failed for "too many"
failed rows), and a real S3 signature: the front checks the headers the presigned URL names, not
a SigV4 signature. The row rules the import applies before sending are unit-tested in
tests/unit/test_import_job_csv.py.
"""

from __future__ import annotations

import csv
import http.client
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.harness import user_status, wait_for, worker_env
from worker.local.aws import Stack, aws_client

ROWS = 10_000


def run_import(
    stack: Stack, tmp_path: Path, *args: str, pool_id: str, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "import", *args, "--progress-interval-s", "2"],
        env=worker_env(stack, COGNITO_USER_POOL_ID=pool_id),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def report_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def migration_pool(stack: Stack) -> str:
    """A pool like a production one: email auto-verified, given_name required, a custom
    attribute. The job's own checks (a required attribute) are the pool's to make."""
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    pool = idp.create_user_pool(
        PoolName=f"migration-{stack.user_pool_id[-6:]}",
        AutoVerifiedAttributes=["email"],
        Schema=[
            {"Name": "given_name", "AttributeDataType": "String", "Required": True},
            {"Name": "plan", "AttributeDataType": "String", "Mutable": True},
        ],
    )["UserPool"]
    return str(pool["Id"])


def users_file(tmp_path: Path) -> dict[str, set[int]]:
    """10,000 rows without passwords; 1 % bad: 50 the import refuses itself (no verified
    address), 25 the pool's rules refuse (no given_name, which the pool requires: read with
    DescribeUserPool before sending), 25 only the job refuses (a birthdate not in the job's
    mm/dd/yyyy). Lines are 2.. (1 is the header)."""
    bad: dict[str, set[int]] = {"unverified": set(), "no_given_name": set(), "birthdate": set()}
    with (tmp_path / "users.csv").open("w", encoding="utf-8") as file:
        file.write("username,password,email,email_verified,given_name,custom:plan,address,")
        file.write("birthdate\n")
        for i in range(ROWS):
            line = i + 2
            verified, given, born = "true", f"Name {i}", ""
            if i % 200 == 17:
                verified = "false"
                bad["unverified"].add(line)
            elif i % 400 == 153:
                given = ""
                bad["no_given_name"].add(line)
            elif i % 400 == 353:
                born = "1990-01-31"
                bad["birthdate"].add(line)
            # An address with a comma: written as the guide says, with a backslash before it.
            file.write(f"user{i:05d},,user{i:05d}@example.com,{verified},{given},gold,")
            file.write(f'"1 Main St, Springfield",{born}\n')
    return bad


def pool_users(stack: Stack, pool_id: str) -> dict[str, dict[str, Any]]:
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    users: dict[str, dict[str, Any]] = {}
    for page in idp.get_paginator("list_users").paginate(UserPoolId=pool_id):
        for user in page["Users"]:
            attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
            users[user["Username"]] = {"status": user["UserStatus"], **attributes}
    return users


def import_jobs(stack: Stack, pool_id: str) -> list[dict[str, Any]]:
    idp = aws_client("cognito-idp", stack.endpoints.cognito)
    return list(idp.list_user_import_jobs(UserPoolId=pool_id, MaxResults=60)["UserImportJobs"])


@pytest.mark.timeout(900)
def test_ten_thousand_rows_with_one_percent_bad_and_a_rerun_that_starts_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    pool_id = migration_pool(stack)
    bad = users_file(tmp_path)
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    existing = [f"user{i:05d}" for i in range(0, 2000, 100)]  # 20 users already there
    for name in existing:
        idp.admin_create_user(
            UserPoolId=pool_id,
            Username=name,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "given_name", "Value": "Earlier"}],
        )
    arguments = ["users.csv", "--type", "import_user", "--import-id", "wave", "--skip-invalid"]
    arguments += ["--job-rows", "4000", "--yes"]

    started = time.monotonic()
    checked = run_import(stack, tmp_path, *arguments, "--validate-only", pool_id=pool_id)
    validation_s = time.monotonic() - started
    assert "through Cognito's user import job, in 3 job(s)" in checked.stdout, checked.stdout
    assert import_jobs(stack, pool_id) == []  # the plan sends nothing
    assert validation_s < 60, validation_s  # "in seconds", with room for a loaded machine
    print(f"validation and plan of {ROWS} rows: {validation_s:.1f} s")

    started = time.monotonic()
    done = run_import(stack, tmp_path, *arguments, "--report", "first.csv", pool_id=pool_id)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr  # bad rows: exit code 1
    print(f"import job path, local front over moto: {ROWS / elapsed:.0f} rows/s")
    first = report_rows(tmp_path / "first.csv")
    by_line = {int(r["line"]): r for r in first}
    assert len(first) == ROWS
    for line in bad["unverified"]:
        assert by_line[line]["status"] == "invalid"
        assert "email_verified or phone_number_verified must be true" in by_line[line]["message"]
    for line in bad["no_given_name"]:
        assert by_line[line]["status"] == "invalid", by_line[line]
        assert by_line[line]["message"] == "given_name: the pool requires it"
    for line in bad["birthdate"]:
        assert by_line[line]["status"] == "failed", by_line[line]
        assert by_line[line]["error_code"] == "ImportJobRowFailed"
        assert "birthdate" in by_line[line]["message"]  # the reason from the job's log
    statuses = Counter(r["status"] for r in first)
    assert statuses == {"succeeded": 9880, "already_exists": 20, "invalid": 75, "failed": 25}
    assert {by_line[int(name[4:]) + 2]["status"] for name in existing} == {"already_exists"}

    users = pool_users(stack, pool_id)
    imported = {r["username"] for r in first if r["status"] == "succeeded"}
    assert {users[name]["status"] for name in imported} == {"RESET_REQUIRED"}
    assert len(users) == 9880 + 20  # no bad row made a user
    sample = users["user00001"]
    assert sample["email_verified"] == "true"
    assert sample["custom:plan"] == "gold"
    assert sample["address"] == "1 Main St, Springfield"  # the escaped comma came through
    jobs = import_jobs(stack, pool_id)
    assert sorted(j["JobName"] for j in jobs) == [f"wave.part-{n}" for n in (1, 2, 3)]
    assert {j["Status"] for j in jobs} == {"Succeeded"}

    # Again, and again without the checkpoint (another machine): nothing is started twice.
    again = run_import(stack, tmp_path, *arguments, "--report", "second.csv", pool_id=pool_id)
    assert "was started by an earlier run" in again.stdout, again.stdout[-3000:]
    for checkpoint in tmp_path.glob("*import-job.checkpoint.json"):
        checkpoint.unlink()
    lost = run_import(stack, tmp_path, *arguments, "--report", "third.csv", pool_id=pool_id)
    assert lost.stdout.count("was started by an earlier run") == 3, lost.stdout[-3000:]
    assert len(import_jobs(stack, pool_id)) == 3
    for name in ("second.csv", "third.csv"):
        assert report_rows(tmp_path / name) == first


@pytest.mark.timeout(300)
def test_ctrl_c_leaves_the_job_running_and_says_how_to_follow_and_stop_it(
    stack: Stack, tmp_path: Path
) -> None:
    with (tmp_path / "users.csv").open("w", encoding="utf-8") as file:
        file.write("username,email,email_verified\n")
        for i in range(3000):
            file.write(f"ctrl{i:05d},ctrl{i:05d}@example.com,true\n")
    arguments = ["users.csv", "--type", "import_user", "--import-id", "cc", "--yes"]
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "import", *arguments, "--report", "first.csv"],
        env=worker_env(stack),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if " started" in line and "job import-" in line:
            break
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=60)
    stdout = "".join(seen) + rest
    assert process.returncode == 130, stdout + errors
    (job,) = import_jobs(stack, stack.user_pool_id)
    pool = stack.user_pool_id
    assert (
        f"aws cognito-idp describe-user-import-job --user-pool-id {pool} --job-id {job['JobId']}"
        in stdout
    )
    assert f"aws cognito-idp stop-user-import-job --user-pool-id {pool}" in stdout
    assert {r["status"] for r in report_rows(tmp_path / "first.csv")} <= {"sent", "succeeded"}

    def finished() -> bool:
        (state,) = import_jobs(stack, pool)
        return bool(state["Status"] == "Succeeded")

    wait_for(finished, timeout_s=240, interval_s=1)  # Cognito goes on without the command
    done = run_import(stack, tmp_path, *arguments, "--report", "second.csv", pool_id=pool)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert len(import_jobs(stack, pool)) == 1
    assert {r["status"] for r in report_rows(tmp_path / "second.csv")} == {"succeeded"}


def test_a_plan_with_an_import_job_is_not_sent_unconfirmed(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(
        "username,password,email,email_verified\n"
        "kim,,kim@example.com,true\n"
        "lee,Imp0rt-Secret-lee!,lee@example.com,true\n",
        encoding="utf-8",
    )
    done = run_import(
        stack, tmp_path, "users.csv", "--type", "import_user", pool_id=stack.user_pool_id
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "1 row(s) as import_user jobs through the worker (a password in the file)" in done.stdout
    assert "1 row(s) through Cognito's user import job" in done.stdout
    assert "they end RESET_REQUIRED" in done.stdout
    assert "MAU: none from the import [1][2]" in done.stdout
    assert "--yes" in done.stdout
    assert import_jobs(stack, stack.user_pool_id) == []
    assert stack.queue_depth(stack.jobs_queue_url) == 0
    assert stack.bulk_jobs_queue_url is not None
    assert stack.queue_depth(stack.bulk_jobs_queue_url) == 0
    assert "Imp0rt-Secret-lee!" not in done.stdout + done.stderr


def test_the_upload_takes_the_documented_header_and_no_unsigned_other(stack: Stack) -> None:
    """The front's presigned URL, driven as curl -T would (the guide's command), and as a client
    that adds a Content-Type of its own, which S3 refuses for a URL that does not sign it."""
    idp = aws_client("cognito-idp", stack.endpoints.cognito)
    job = idp.create_user_import_job(
        JobName="headers",
        UserPoolId=stack.user_pool_id,
        CloudWatchLogsRoleArn=stack.import_logs_role_arn,
    )["UserImportJob"]
    header = ",".join(idp.get_csv_header(UserPoolId=stack.user_pool_id)["CSVHeader"])

    def put(headers: dict[str, str]) -> int:
        url = urlsplit(job["PreSignedUrl"])
        connection = http.client.HTTPConnection(url.netloc, timeout=10)
        try:
            connection.request("PUT", f"{url.path}?{url.query}", header + "\n", headers)
            return connection.getresponse().status
        finally:
            connection.close()

    sse = {"x-amz-server-side-encryption": "aws:kms"}
    assert put({}) == 403  # no encryption header
    assert put({**sse, "Content-Type": "text/csv"}) == 403
    with pytest.raises(idp.exceptions.PreconditionNotMetException):
        idp.start_user_import_job(UserPoolId=stack.user_pool_id, JobId=job["JobId"])
    assert put(sse) == 200
    started = idp.start_user_import_job(UserPoolId=stack.user_pool_id, JobId=job["JobId"])
    assert started["UserImportJob"]["Status"] == "Pending"


def test_rows_that_all_go_through_an_import_job_need_no_queue(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "users.jsonl").write_text(
        '{"username": "nia", "email": "nia@example.com", "email_verified": true}\n'
        '{"username": "oli", "email": "oli@example.com", "email_verified": true}\n',
        encoding="utf-8",
    )
    env = {
        k: v
        for k, v in worker_env(stack).items()
        if k not in ("JOBS_QUEUE_URL", "BULK_JOBS_QUEUE_URL")
    }
    done = subprocess.run(
        [sys.executable, "-m", "worker", "import", "users.jsonl", "--type", "import_user", "--yes"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert user_status(stack, "nia") == "RESET_REQUIRED"
    assert user_status(stack, "oli") == "RESET_REQUIRED"
    (tmp_path / "more.jsonl").write_text('{"username": "pat", "password": "Imp0rt-Pat!"}\n')
    refused = subprocess.run(
        [sys.executable, "-m", "worker", "import", "more.jsonl", "--type", "import_user", "--yes"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "JOBS_QUEUE_URL is required: 1 row(s) go through the worker" in refused.stderr
