"""Health endpoints that tell the truth, and a start that fails in one line."""

import os
import socket
import subprocess
import sys

from tests.support.harness import finish, probe_http, start_worker, wait_for, worker_env
from worker.local.aws import Stack, free_port


def without_credentials(env: dict[str, str]) -> dict[str, str]:
    """The environment with every source of AWS credentials the SDK looks at removed."""
    stripped = {
        k: v
        for k, v in env.items()
        if k
        not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}
        and not k.startswith("AWS_CONTAINER_")
    }
    return {
        **stripped,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance metadata to wait for
    }


def test_without_credentials_readiness_fails_with_the_reason(stack: Stack) -> None:
    port = free_port()
    env = without_credentials(worker_env(stack, HEALTH_PORT=str(port), RECEIVE_WAIT_S="1"))
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status, body = wait_for(
            lambda: (
                (answer := probe_http(port, "/readyz"))[1].get("status") == "receive failing"
                and answer
            ),
            timeout_s=30,
        )
        assert status == 503
        assert body["reason"] == "NoCredentialsError"
        assert body["failed_receives"] >= 2
        # Liveness says so too, and stays 200 until it has lasted (see the unit test).
        live_status, live = probe_http(port, "/healthz")
        assert live_status == 200
        assert live["last_receive_error"] == "NoCredentialsError"
        assert live["receive_failing_s"] > 0
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert stack.client_secret not in stdout + str(body) + str(live)


def test_a_taken_health_port_is_one_line_naming_port_and_setting(stack: Stack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "worker", "run"],
            env=worker_env(stack, HEALTH_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"cognito-worker: bad setting HEALTH_PORT: port {port} on 127.0.0.1 is already in use"
    ]
    assert "Traceback" not in done.stdout


def test_health_listens_on_loopback_by_default(stack: Stack) -> None:
    port = free_port()
    worker = start_worker(stack, HEALTH_PORT=str(port))
    try:
        wait_for(lambda: probe_http(port, "/readyz")[0] == 200)
        # Another address of this host (the first interface's): nothing answers there.
        outside = socket.gethostbyname(socket.gethostname())
        if outside.startswith("127."):
            outside = _any_non_loopback_address()
        if outside:
            with socket.socket() as probe:
                probe.settimeout(2)
                assert probe.connect_ex((outside, port)) != 0
    finally:
        worker.terminate()
        run = finish(worker)
    (listening,) = run.events("health endpoints listening")
    assert listening["host"] == "127.0.0.1"


def _any_non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, a route is chosen
        except OSError:
            return None
        address: str = udp.getsockname()[0]
    return None if address.startswith("127.") else address
