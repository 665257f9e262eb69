"""The live application: its own sign-ups at a steady rate on the fleet's quota, no retries."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig

from bench.figures import LIVE_USER_PREFIX, PASSWORD
from worker.cognito.secret_hash import secret_hash
from worker.local.aws import (
    REGION,
    Stack,
)


class LiveApp:
    """The application's own sign-ups at a steady rate on the same quota, no retries."""

    def __init__(self, stack: Stack, cognito_url: str, rps: float) -> None:
        self.stack, self.url, self.rps = stack, cognito_url, rps
        self.calls = 0
        self.throttled = 0
        self.other_errors: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> LiveApp:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    async def _run(self) -> None:
        session = aioboto3.Session(
            region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
        )
        config = AioConfig(retries={"total_max_attempts": 1}, max_pool_connections=50)
        async with session.client("cognito-idp", endpoint_url=self.url, config=config) as idp:
            pending: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            n = 0
            while not self._stop.is_set():
                username = f"{LIVE_USER_PREFIX}{os.getpid()}-{n}"
                task = asyncio.create_task(self._sign_up(idp, username))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                await asyncio.sleep(max(0.0, started + n / self.rps - time.monotonic()))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _sign_up(self, idp: Any, username: str) -> None:
        self.calls += 1
        try:
            await idp.sign_up(
                ClientId=self.stack.client_id,
                Username=username,
                Password=PASSWORD,
                SecretHash=secret_hash(username, self.stack.client_id, self.stack.client_secret),
            )
        except idp.exceptions.TooManyRequestsException:
            self.throttled += 1
        except Exception as error:
            self.other_errors[type(error).__name__] += 1
