"""Batching of SQS and SNS calls: many callers each await one entry, one request carries ten.

Each caller awaits its own entry's outcome, so a ``Failed`` entry in a batch answer reaches exactly
the job it belongs to, while the request count falls up to tenfold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from worker.telemetry.logs import get_logger

log = get_logger("batching")

MAX_BATCH = 10  # the most entries SQS's and SNS's batch calls take

Entry = TypeVar("Entry")

# One call sends a batch; it answers, per entry in order, None for success or the entry's error.
SendBatch = Callable[[Sequence[Entry]], Awaitable[Sequence[BaseException | None]]]


class BatchEntryError(Exception):
    """Raised to a caller whose entry the service listed under ``Failed``."""

    def __init__(self, code: str, message: str, *, sender_fault: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.sender_fault = sender_fault


def failed_entries(count: int, answer: Any) -> list[BaseException | None]:
    """Per entry of a batch call's answer: None, or a :class:`BatchEntryError` for ``Failed``.

    Entry ids must be the entries' positions ("0", "1", ...).
    """
    outcomes: list[BaseException | None] = [None] * count
    for failed in answer.get("Failed", []):
        outcomes[int(failed["Id"])] = BatchEntryError(
            failed.get("Code", "Failed"),
            failed.get("Message", ""),
            sender_fault=bool(failed.get("SenderFault")),
        )
    return outcomes


def _outcome_nobody_awaits(future: asyncio.Future[None]) -> None:
    """Retrieve the outcome of an entry whose caller was cancelled (a heartbeat that ended)."""
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        # Not an error for anyone to act on: the caller that cared has finished another way.
        log.debug("batch entry failed after its caller left", error=str(error))


class Batcher(Generic[Entry]):
    """Collects entries into batches of up to ``max_size``, sent when full or after ``linger_s``.

    Lingering costs each entry up to ``linger_s``, worth it only when companions may come: an
    entry that finds nothing pending, no batch on its way, and ``linger_while()`` false (the
    worker has no other job in flight) leaves at once, and so does an entry submitted
    ``at_once``, taking whatever is pending with it.
    """

    def __init__(
        self,
        send: SendBatch[Entry],
        *,
        max_size: int = MAX_BATCH,
        linger_s: float = 0.02,
        linger_while: Callable[[], bool] = lambda: True,
        on_batch: Callable[[int], None] = lambda _size: None,
    ) -> None:
        self._send = send
        self._linger_while = linger_while
        self._on_batch = on_batch
        self._max_size = max_size
        self._linger_s = linger_s
        self._pending: list[tuple[Entry, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def submit(self, entry: Entry, *, at_once: bool = False) -> None:
        """Send ``entry`` in the next batch (``at_once``: now, with what is pending); return
        once the service accepted it, else raise."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        alone = len(self._pending) == 1 and not self._in_flight and not self._linger_while()
        if len(self._pending) >= self._max_size or alone or at_once:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._flush)
        # Shielded: a cancelled caller must not cancel an entry that is already on its way.
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller is gone and nobody will read the entry's outcome. The shield stops
            # watching the entry once its caller is cancelled, so an error that arrives later
            # would be reported by the loop as "exception was never retrieved": retrieve it here.
            future.add_done_callback(_outcome_nobody_awaits)
            raise

    async def close(self) -> None:
        """Send what is pending and wait for every batch on its way."""
        while self._pending:
            self._flush()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
            task = asyncio.create_task(self._send_batch(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _send_batch(self, batch: list[tuple[Entry, asyncio.Future[None]]]) -> None:
        self._on_batch(len(batch))
        try:
            outcomes = await self._send([entry for entry, _ in batch])
        except Exception as error:  # the whole request failed: every entry learns why
            outcomes = [error] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)
