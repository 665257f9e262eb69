"""Test servers run as child processes that announce themselves with one JSON line on stdout."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def announced_child(
    command: Sequence[str], what: str, *, cwd: Path, start_timeout_s: float = 30.0
) -> Iterator[tuple[dict[str, Any], int]]:
    """Run ``command`` for the duration of the block; yield its first stdout line (JSON) and pid.

    Raise if it says nothing within ``start_timeout_s``; stop it with SIGTERM (SIGKILL after
    10 s) on the way out.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=cwd)
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=start_timeout_s)
        line = process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"{what} did not start (see its output above)")
        yield json.loads(line), process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
