"""A stop always works: with stdout's reader gone, and during start-up."""

import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support.harness import probe_http, wait_for, worker_env
from worker.local.aws import Stack, free_port


class _Reader:
    """Reads and discards a pipe's output in a thread, until told to go away (like `head`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines = 0
        self._gone = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._gone.is_set():
            readable, _, _ = select.select([self.fd], [], [], 0.05)
            if readable:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return
                self.lines += chunk.count(b"\n")

    def go_away(self) -> None:
        self._gone.set()
        self._thread.join()
        os.close(self.fd)


def _read_line(fd: int, timeout_s: float = 30) -> bytes:
    """Read one line from a raw pipe end, without buffering past it."""
    line = b""
    deadline = time.monotonic() + timeout_s
    while not line.endswith(b"\n"):
        assert time.monotonic() < deadline, f"no line within {timeout_s} s: {line!r}"
        chunk = os.read(fd, 1)
        assert chunk, f"the pipe closed early: {line!r}"
        line += chunk
    return line


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("reader", ["pipe", "fifo"])
def test_a_signal_stops_the_worker_when_stdout_has_no_reader(
    stack: Stack, signum: signal.Signals, reader: str, tmp_path: object
) -> None:
    """`cognito-worker run | head -1`: once head exits, a stop must still stop the worker."""
    port = free_port()
    if reader == "pipe":
        read_end, write_end = os.pipe()
    else:
        fifo = os.path.join(str(tmp_path), "out.fifo")
        os.mkfifo(fifo)
        # Open both ends without blocking: the reader first, then the worker's writer.
        read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        write_end = os.open(fifo, os.O_WRONLY)
        os.set_blocking(read_end, True)
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        env=worker_env(stack, HEALTH_PORT=str(port), RECEIVE_WAIT_S="1"),
        stdout=write_end,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        reader_process = _Reader(read_end)
        wait_for(lambda: probe_http(port, "/readyz")[0] == 200)
        assert reader_process.lines > 0
        reader_process.go_away()  # `head` has what it wanted and exits: stdout is now broken
        stopped_at = time.monotonic()
        process.send_signal(signum)
        returncode = process.wait(timeout=20)
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert returncode == 0
    assert took < 10


def test_sigterm_during_start_up_exits_0_quickly(stack: Stack) -> None:
    """A task stopped while it starts (a rollback, a scale-in) must not wait for SIGKILL."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        env=worker_env(stack, RECEIVE_WAIT_S="1"),
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    try:
        first = _read_line(read_end)
        assert b'"starting"' in first, first
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=20)
        took = time.monotonic() - stopped_at
        rest = b""
        while chunk := os.read(read_end, 65536):
            rest += chunk
    finally:
        os.close(read_end)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert returncode == 0, process.stderr.read() if process.stderr else ""
    assert took < 10
    assert b"Traceback" not in rest
    # The signal came while the clients were being created (the window after "starting").
    assert b'"stopped during start-up"' in rest, rest[-2000:]


def test_a_sigterm_as_a_burst_run_ends_keeps_its_exit_code(stack: Stack) -> None:
    """A caller stopping a burst run that is just ending must not turn its exit 0 into a kill."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--exit-when-idle"],
        env=worker_env(stack, RECEIVE_WAIT_S="1"),
        stdout=write_end,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        while b'"worker stopped"' not in _read_line(read_end):
            pass
        process.send_signal(signal.SIGTERM)  # the loop is closing or closed by now
        returncode = process.wait(timeout=20)
    finally:
        os.close(read_end)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert returncode == 0
