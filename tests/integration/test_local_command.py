"""`cognito-worker local`: one command gives a developer a provisioned local AWS and the
environment to use it, for a producer and for the worker."""

import os
import random
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.harness import wait_for
from worker.local.aws import Stack, _hash, aws_client, write_private
from worker.producer import JobProducer, ResultFollower


def _exports(text: str) -> dict[str, str]:
    variables = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            (variables[name],) = shlex.split(value)
    return variables


def test_local_provisions_prints_the_environment_and_serves_until_ctrl_c(tmp_path: Path) -> None:
    port = unused_pair_below_the_ephemeral_range()
    env_file = tmp_path / "local.env"
    output = tmp_path / "local.out"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COGNITO_"))}
    with output.open("w") as out:
        local = subprocess.Popen(
            [sys.executable, "-m", "worker", "local", "--port", str(port),
             "--env-file", str(env_file)],
            stdout=out, stderr=subprocess.STDOUT, env=base,
        )  # fmt: skip
    try:
        wait_for(
            lambda: "Serving until Ctrl-C" in output.read_text() or local.poll() is not None,
            timeout_s=120,
        )
        assert local.poll() is None, output.read_text()
        printed = output.read_text()
        assert f"http://127.0.0.1:{port}" in printed
        assert f"http://127.0.0.1:{port + 1}" in printed
        variables = _exports(env_file.read_text())
        assert _exports(printed) == variables
        # The file holds the client secret: its owner's alone.
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert variables["AWS_DEFAULT_REGION"] == variables["AWS_REGION"]
        # Plain boto3 after `source local.env` (it reads AWS_DEFAULT_REGION, not AWS_REGION).
        plain = subprocess.run(
            ["bash", "-c", f"source {shlex.quote(str(env_file))} && {sys.executable} -c "
             "'import boto3, os; print(boto3.client(\"sqs\").get_queue_attributes("
             "QueueUrl=os.environ[\"JOBS_QUEUE_URL\"])[\"ResponseMetadata\"][\"HTTPStatusCode\"])'"],
            env=base, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert (plain.returncode, plain.stdout.strip()) == (0, "200"), plain.stderr[-2000:]
        for name in (
            "JOBS_QUEUE_URL",
            "RESULTS_QUEUE_URL",
            "COGNITO_CLIENT_SECRET",
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
            "COGNITO_USER_POOL_ID",
        ):
            assert variables[name], name  # fmt: skip

        # A producer with nothing but the printed environment, then the worker with it too.
        env = {**base, **variables}
        # What the stack built is what the docs recommend: `check` finds nothing to warn of.
        checked = subprocess.run(
            [sys.executable, "-m", "worker", "check"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.splitlines()[-1].endswith(" 0 warnings, 0 failed"), checked.stdout
        assert "ok   jobs queue visibility: 60 s" in checked.stdout
        os.environ.update({k: v for k, v in variables.items() if k.startswith("AWS_")})
        try:
            producer = JobProducer(env["JOBS_QUEUE_URL"], region_name=env["AWS_REGION"])
            sent = producer.send({"version": 1, "type": "sign_up", "username": "Zoë",
                                  "password": "Corr3ct-Horse!"})  # fmt: skip
            worker = subprocess.run(
                [sys.executable, "-m", "worker", "run", "--exit-when-idle"],
                env={**env, "HEALTH_PORT": "0", "RECEIVE_WAIT_S": "1"},
                capture_output=True, text=True, timeout=90, check=False,
            )  # fmt: skip
            assert worker.returncode == 0, worker.stderr[-2000:]
            follower = ResultFollower(env["RESULTS_QUEUE_URL"], region_name=env["AWS_REGION"])
            outcome = follower.wait_for([sent.job_id], timeout_s=20)
        finally:
            for name in variables:
                if name.startswith("AWS_"):
                    os.environ.pop(name, None)
        assert outcome.results[sent.job_id].status.value == "succeeded"
    finally:
        local.send_signal(signal.SIGINT)
        code = local.wait(timeout=20)
    assert code == 0
    # Both ports are free again: nothing is left running.
    assert wait_for(lambda: _nothing_listens(port) and _nothing_listens(port + 1), timeout_s=10)


def unused_pair_below_the_ephemeral_range() -> int:
    """A port whose next one is free too, below Linux's ephemeral range (32768 and up), so no
    outgoing connection of this machine takes either while the command starts."""
    for port in random.sample(range(20000, 32000, 2), 200):
        if _bindable(port) and _bindable(port + 1):
            return port
    raise AssertionError("no free pair of ports between 20000 and 32000")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _nothing_listens(port: int) -> bool:
    """Whether nothing listens on the port. SO_REUSEADDR, as servers bind: the connections moto
    closed itself (it answers `Connection: close`) linger in TIME-WAIT for a minute on its port,
    and they hold no socket of anyone's."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_local_help_explains_and_a_busy_port_is_refused() -> None:
    helped = subprocess.run([sys.executable, "-m", "worker", "local", "--help"],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert helped.returncode == 0
    assert "--port" in helped.stdout
    assert "provision" in helped.stdout
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = subprocess.run(
            [sys.executable, "-m", "worker", "local", "--port", str(port)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert refused.returncode == 1
    assert f"port {port} is in use" in refused.stderr


def test_local_env_is_ignored_by_git_and_written_for_its_owner_alone(tmp_path: Path) -> None:
    repository = Path(__file__).resolve().parents[2]
    ignored = subprocess.run(["git", "check-ignore", "-q", "local.env"], cwd=repository,
                             timeout=30, check=False)  # fmt: skip
    assert ignored.returncode == 0, "local.env holds the client secret: .gitignore must name it"
    # A file that was readable by others before is narrowed, not just written over.
    env_file = tmp_path / "local.env"
    env_file.write_text("old")
    env_file.chmod(0o644)
    write_private(env_file, "export COGNITO_CLIENT_SECRET=s3cret\n")
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert env_file.read_text() == "export COGNITO_CLIENT_SECRET=s3cret\n"


def test_locally_any_confirmation_code_is_accepted(stack: Stack) -> None:
    # docs/producers.md says so, and that real Cognito answers CodeMismatchException: if moto
    # starts checking codes, this fails and the docs change with it.
    stack.create_unconfirmed_user("codeless", "Corr3ct-Horse!")
    idp = aws_client("cognito-idp", stack.endpoints.cognito)
    idp.confirm_sign_up(
        ClientId=stack.client_id,
        Username="codeless",
        ConfirmationCode="000000",  # no code was ever sent
        SecretHash=_hash("codeless", stack.client_id, stack.client_secret),
    )
    user = aws_client("cognito-idp", stack.endpoints.moto).admin_get_user(
        UserPoolId=stack.user_pool_id, Username="codeless"
    )
    assert user["UserStatus"] == "CONFIRMED"
