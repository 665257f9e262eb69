"""The heartbeat of one job: its message stays invisible, and its claim leased, while it runs.

It starts as soon as the job is taken up (before its fields are decrypted: a slow KMS must not
let the message reappear to another consumer) and holds the claim from the moment there is one.
It stops before anything that ends the delivery (a hand-back, a release or completion of the
claim, the delete): a beat after those would undo them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from worker.pipeline.consumer import ReceivedMessage
from worker.telemetry.logs import get_logger

log = get_logger("heartbeat")


class _Queue(Protocol):
    async def hand_back(self, message: ReceivedMessage, delay_s: int = 0) -> None: ...


class _Store(Protocol):
    async def extend(self, key: str, token: str, lease_s: float) -> None: ...


class Heartbeat:
    """Renews the message's visibility, and the claim's lease once :meth:`hold` names it, every
    third of the shorter of the two, until :meth:`stop`."""

    def __init__(
        self,
        queue: _Queue,
        store: _Store,
        message: ReceivedMessage,
        *,
        visibility_s: int,
        lease_s: float,
    ) -> None:
        self._queue = queue
        self._store = store
        self._message = message
        self._visibility_s = visibility_s
        self._lease_s = lease_s
        self._claim: tuple[str, str] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin beating (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._beat())

    def hold(self, key: str, token: str) -> None:
        """Keep this claim leased too, from the next beat on."""
        self._claim = (key, token)

    async def stop(self) -> None:
        """Stop beating, and wait until no beat is on its way. Safe to call more than once."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> Heartbeat:
        self.start()
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await asyncio.shield(self.stop())

    async def _beat(self) -> None:
        interval = min(self._visibility_s, self._lease_s) / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._queue.hand_back(self._message, self._visibility_s)
                if self._claim is not None:
                    await self._store.extend(*self._claim, self._lease_s)
            except Exception as error:  # a missed beat is survivable; the next may pass
                log.warning("heartbeat failed", error=str(error))
