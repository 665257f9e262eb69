"""Driving the real worker process against a provisioned stack, and reading what users would see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from worker.cognito.secret_hash import secret_hash
from worker.local.aws import Stack, aws_client


@dataclass
class WorkerRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line.get("event") == event]


def worker_env(stack: Stack, **overrides: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COGNITO_"))}
    settings = {"RECEIVE_WAIT_S": "1", "HEALTH_PORT": "0", "LOG_FORMAT": "json", **overrides}
    return {**inherited, **stack.worker_env(**settings)}


def run_worker(stack: Stack, timeout_s: float = 90, **overrides: str) -> WorkerRun:
    """Run `python -m worker run --exit-when-idle` until the queue is drained."""
    done = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--exit-when-idle"],
        env=worker_env(stack, **overrides),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return WorkerRun(done.returncode, done.stdout, done.stderr)


def job(job_type: str, **fields: Any) -> str:
    return json.dumps({"version": 1, "type": job_type, **fields})


def enqueue(stack: Stack, *bodies: str, queue_url: str | None = None) -> list[str]:
    """Send the bodies to the jobs queue (or ``queue_url``); return their SQS message ids."""
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    ids = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        answer = sqs.send_message_batch(
            QueueUrl=queue_url or stack.jobs_queue_url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)],
        )
        assert not answer.get("Failed"), answer
        by_id = {entry["Id"]: entry["MessageId"] for entry in answer["Successful"]}
        ids += [by_id[str(i)] for i in range(len(chunk))]
    return ids


@dataclass
class Published:
    body: dict[str, Any]
    attributes: dict[str, str]
    raw: str


def read_results(stack: Stack, queue_url: str | None = None) -> list[Published]:
    """Every result published so far, as the topic's subscribed queue received it (the stack's
    results queue, or ``queue_url``, another queue subscribed to the topic with raw delivery)."""
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    queue_url = queue_url or stack.results_queue_url
    results: list[Published] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        if not messages:
            return results
        for message in messages:
            attributes = {
                name: value["StringValue"]
                for name, value in message.get("MessageAttributes", {}).items()
            }
            results.append(Published(json.loads(message["Body"]), attributes, message["Body"]))
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def by_job_id(results: list[Published]) -> dict[str, dict[str, Any]]:
    return {r.body["job_id"]: r.body for r in results}


def queue_depth(stack: Stack, queue_url: str) -> int:
    """Messages on a queue, visible, in flight or delayed."""
    return stack.queue_depth(queue_url)


def user_status(stack: Stack, username: str) -> str | None:
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    try:
        user = idp.admin_get_user(UserPoolId=stack.user_pool_id, Username=username)
        return str(user["UserStatus"])
    except idp.exceptions.UserNotFoundException:
        return None


def signs_in(stack: Stack, username: str, password: str) -> bool:
    """Whether moto accepts this username and password: its own check of the password."""
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    try:
        idp.admin_initiate_auth(
            UserPoolId=stack.user_pool_id,
            ClientId=stack.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={
                "USERNAME": username,
                "PASSWORD": password,
                "SECRET_HASH": secret_hash(username, stack.client_id, stack.client_secret),
            },
        )
    except idp.exceptions.NotAuthorizedException:
        return False
    return True


def create_confirmed_user(stack: Stack, username: str, password: str = "Start-Passw0rd!") -> None:
    stack.create_confirmed_user(username, password)


def create_unconfirmed_user(stack: Stack, username: str) -> None:
    stack.create_unconfirmed_user(username, "Start-Passw0rd!")


def through(proxy_url: str, **overrides: str) -> dict[str, str]:
    """Worker settings that send every AWS call through the fault proxy at ``proxy_url``."""
    return {
        "AWS_ENDPOINT_URL": proxy_url,
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": proxy_url,
        "AWS_ENDPOINT_URL_SQS": proxy_url,
        "AWS_ENDPOINT_URL_SNS": proxy_url,
        "AWS_ENDPOINT_URL_DYNAMODB": proxy_url,
        **overrides,
    }


def probe_http(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """GET a health endpoint of a worker: (status, JSON body); (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def start_worker(stack: Stack, *args: str, **overrides: str) -> subprocess.Popen[str]:
    """Start `python -m worker run ARGS` in the background (stop it with :func:`finish`).

    Its output goes to temporary files, not pipes: nobody reads a pipe while the worker runs,
    and a full pipe would block the worker's event loop on its next log line.
    """
    stdout = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by finish()
    stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by finish()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "run", *args],
        env=worker_env(stack, **overrides),
        stdout=stdout,
        stderr=stderr,
        text=True,
    )
    _outputs[process.pid] = (stdout, stderr)
    return process


_outputs: dict[int, tuple[Any, Any]] = {}


def finish(process: subprocess.Popen[str], timeout_s: float = 60) -> WorkerRun:
    """Wait for a started worker to end by itself; kill it if it does not in time."""
    stdout_file, stderr_file = _outputs.pop(process.pid)
    try:
        process.wait(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        timed_out = True
    outputs = []
    for file in (stdout_file, stderr_file):
        file.seek(0)
        outputs.append(file.read())
        file.close()
    if timed_out:
        raise AssertionError(f"the worker did not stop in {timeout_s} s:\n{outputs[0][-5000:]}")
    return WorkerRun(process.returncode, outputs[0], outputs[1])


def wait_for(condition: Any, timeout_s: float = 30, interval_s: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


class ResultCollector:
    """Accumulates results read from the topic's queue across several reads."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.results: list[Published] = []

    def poll(self) -> list[Published]:
        self.results += read_results(self.stack)
        return self.results

    def job_ids(self) -> set[str]:
        return {r.body["job_id"] for r in self.results}


class Traffic:
    """A producer and a results reader running beside the worker, as in production.

    moto's SQS answers in time proportional to a queue's depth, so holding 500 jobs (or 500
    results) in a queue at once would measure moto. The producer keeps at most ``keep_queued``
    jobs waiting, and the reader drains the results queue as they come.
    """

    def __init__(self, stack: Stack, bodies: list[str], keep_queued: int = 60) -> None:
        self.stack = stack
        self.pending = list(bodies)
        self.keep_queued = keep_queued
        self.results: list[Published] = []
        self.message_ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.results += read_results(self.stack)
        if self._error is not None:
            raise self._error

    def wait_for_results(self, count: int, timeout_s: float = 120) -> None:
        wait_for(lambda: len(self.results) >= count or self._error, timeout_s=timeout_s)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # Every call costs the emulator's CPU, shared with the worker: ask sparingly.
                if self.pending:
                    room = self.keep_queued - queue_depth(self.stack, self.stack.jobs_queue_url)
                    if room >= 10:
                        take = min(room - room % 10, 100)
                        chunk, self.pending = self.pending[:take], self.pending[take:]
                        self.message_ids += enqueue(self.stack, *chunk)
                self.results += read_results(self.stack)
                time.sleep(0.1)
        except BaseException as error:  # surfaced in the test thread
            self._error = error
