"""``python -m bench.imports [ROWS]``: how fast ``import`` sends, and how much memory it holds.

It writes a CSV of ROWS generated users (default 1,000,000), starts an SQS emulator, and runs
``python -m worker import FILE --type sign_up`` against it: validation, then sending. It prints
rows/s sent, the peak RSS and CPU time of the import process, and the machine's load. With
``--emulator fauxqs`` (the default) SQS is served by fauxqs, fast enough not to be the limit; with
``--emulator moto``, moto's SQS costs more per message the deeper its queue is, so past a few
hundred rows the rate is moto's, not the import's.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.fauxqs import running_fauxqs
from worker.local.aws import LOOPBACK, REGION, _wait_until_up, aws_client, free_port


def write_users(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as file:
        file.write("username,password,email,given_name,custom:plan\n")
        for i in range(rows):
            file.write(f"user{i:07d},Passw0rd!{i:07d},user{i:07d}@example.com,Name{i},gold\n")


@contextmanager
def running_moto() -> Iterator[str]:
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(endpoint)
        yield endpoint
    finally:
        moto.terminate()
        moto.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.imports")
    parser.add_argument("rows", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--emulator", choices=["fauxqs", "moto"], default="fauxqs")
    args = parser.parse_args()
    emulator = running_fauxqs() if args.emulator == "fauxqs" else running_moto()
    with emulator as endpoint:
        queue_url = aws_client("sqs", endpoint).create_queue(QueueName="import-bench")["QueueUrl"]
        with tempfile.TemporaryDirectory() as scratch:
            users = Path(scratch) / "users.csv"
            write_users(users, args.rows)
            environment = {
                **os.environ,
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_ENDPOINT_URL": endpoint,
                "JOBS_QUEUE_URL": queue_url,
            }
            load_before = os.getloadavg()
            started = time.monotonic()
            command = [sys.executable, "-m", "worker", "import", str(users), "--type", "sign_up"]
            command += ["--progress-interval-s", "30"]
            process = subprocess.Popen(
                command, env=environment, cwd=scratch, stdout=subprocess.PIPE, text=True
            )
            output = process.stdout.read() if process.stdout else ""
            _, status, usage = os.wait4(process.pid, 0)
            wall_s = time.monotonic() - started
            load_after = os.getloadavg()
    print(output)
    sending = re.findall(r"sending: (\d+)/\d+ rows.*?(\d+) rows/s, done in ([\d.]+) s", output)
    print(f"rows: {args.rows}; SQS served by {args.emulator}")
    print(f"exit code {os.waitstatus_to_exitcode(status)}; wall {wall_s:.1f} s")
    if sending:
        sent, rate, seconds = sending[-1]
        print(f"sent {sent} rows in {seconds} s: {rate} rows/s")
    print(f"peak RSS of the import process: {usage.ru_maxrss / 1024:.0f} MiB")
    print(f"CPU of the import process: {usage.ru_utime + usage.ru_stime:.1f} s")
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
