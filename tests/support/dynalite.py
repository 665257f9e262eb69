"""dynalite, a DynamoDB emulator (Node), for the tests and the benchmark.

moto's DynamoDB does not make a conditional write atomic: two claims of one job id, sent at the
same moment, can both pass the condition and both own the job. dynalite takes a lock per item
around the read, the condition and the write, as DynamoDB does. The package is pinned in
tests/support/dynalite/package-lock.json and installed by the Makefile (``npm ci``); serve.mjs
runs it in memory on 127.0.0.1 only, on a free port.

dynalite has no UpdateTimeToLive, and its DescribeTimeToLive always answers DISABLED: nothing of
the worker rests on TTL deletion (an expired record is a fresh key to both stores), and what
reads the TTL setting (``cognito-worker check``) is tested against moto's DynamoDB.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.local.aws import announced_child

HERE = Path(__file__).parent / "dynalite"
INSTALL_HINT = "run `make dynalite` (npm ci in tests/support/dynalite; needs Node 20 or later)"


def installed() -> bool:
    """Whether node and the pinned dynalite package are there."""
    return shutil.which("node") is not None and (HERE / "node_modules" / "dynalite").is_dir()


@contextmanager
def running_dynalite(start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve DynamoDB from dynalite for the duration of the block; yield its endpoint URL."""
    if not installed():
        raise RuntimeError(f"dynalite is not installed: {INSTALL_HINT}")
    command = ["node", str(HERE / "serve.mjs")]
    with announced_child(command, "dynalite", cwd=HERE, start_timeout_s=start_timeout_s) as started:
        announced, _pid = started
        yield str(announced["url"])
