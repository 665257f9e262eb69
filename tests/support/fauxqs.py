"""fauxqs, a fast SQS and SNS emulator (Node), for the tests and the benchmark.

moto's single process answers SQS receives in time that grows with queue depth; fauxqs does not.
The package is pinned in tests/support/fauxqs/package-lock.json and installed by the Makefile
(``npm ci``); serve.mjs runs it on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.local.aws import announced_child

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
    command = ["node", str(HERE / "serve.mjs")]
    with announced_child(command, "fauxqs", cwd=HERE, start_timeout_s=start_timeout_s) as started:
        announced, _pid = started
        yield str(announced["url"])
