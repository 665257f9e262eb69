"""fauxqs, a fast SQS and SNS emulator (Node), for the tests and the benchmark.

moto's single process answers SQS receives in time that grows with queue depth; fauxqs does not.
The package is pinned in tests/support/fauxqs/package-lock.json and installed by the Makefile
(``npm ci``); serve.mjs runs it on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import json
import selectors
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).parent / "fauxqs"
INSTALL_HINT = "run `make fauxqs` (npm ci in tests/support/fauxqs; needs Node 20 or later)"


def installed() -> bool:
    """Whether node and the pinned fauxqs package are there."""
    return shutil.which("node") is not None and (HERE / "node_modules" / "fauxqs").is_dir()


@contextmanager
def running_fauxqs(start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve SQS and SNS from fauxqs for the duration of the block; yield its endpoint URL."""
    if not installed():
        raise RuntimeError(f"fauxqs is not installed: {INSTALL_HINT}")
    process = subprocess.Popen(
        ["node", str(HERE / "serve.mjs")], stdout=subprocess.PIPE, text=True, cwd=HERE
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=start_timeout_s)
        line = process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError("fauxqs did not start (see its output above)")
        yield str(json.loads(line)["url"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
