"""The batcher: ten to a request, a short linger, and each entry's own outcome to its caller."""

import asyncio
import gc
from collections.abc import Sequence

import pytest

from worker.pipeline.batching import BatchEntryError, Batcher


class RecordingSender:
    def __init__(self, fail: set[int] | None = None, broken: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail or set()
        self.broken = broken

    async def __call__(self, entries: Sequence[int]) -> list[BaseException | None]:
        self.batches.append(list(entries))
        await asyncio.sleep(0)
        if self.broken:
            raise ConnectionError("service unreachable")
        return [
            BatchEntryError("InternalError", f"entry {e}", sender_fault=False)
            if e in self.fail
            else None
            for e in entries
        ]


async def test_twenty_five_entries_take_three_requests() -> None:
    sender = RecordingSender()
    batcher = Batcher[int](sender, linger_s=0.01)
    await asyncio.gather(*(batcher.submit(i) for i in range(25)))
    assert [len(b) for b in sender.batches] == [10, 10, 5]
    assert sorted(e for b in sender.batches for e in b) == list(range(25))


async def test_a_lone_entry_goes_after_the_linger() -> None:
    sender = RecordingSender()
    batcher = Batcher[int](sender, linger_s=0.05)
    started = asyncio.get_running_loop().time()
    await batcher.submit(7)
    assert sender.batches == [[7]]
    assert asyncio.get_running_loop().time() - started >= 0.04


async def test_an_entry_sent_at_once_takes_the_pending_ones_along_without_lingering() -> None:
    sender = RecordingSender()
    batcher = Batcher[int](sender, linger_s=60)
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    assert sender.batches == []  # lingering for companions
    await asyncio.wait_for(batcher.submit(3, at_once=True), timeout=1)
    await asyncio.gather(*waiting)
    assert sender.batches == [[1, 2, 3]]


async def test_a_failed_entry_fails_only_its_own_caller() -> None:
    sender = RecordingSender(fail={3})
    batcher = Batcher[int](sender)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)
    assert [type(o).__name__ for o in outcomes] == [
        "NoneType", "NoneType", "NoneType", "BatchEntryError", "NoneType", "NoneType",
    ]  # fmt: skip


async def test_a_failed_request_fails_every_caller() -> None:
    batcher = Batcher[int](RecordingSender(broken=True))
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)


async def test_close_sends_what_is_pending() -> None:
    sender = RecordingSender()
    batcher = Batcher[int](sender, linger_s=60)
    waiting = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    await batcher.close()
    await waiting
    assert sender.batches == [[1]]


async def test_a_cancelled_caller_does_not_cancel_its_entry() -> None:
    sender = RecordingSender()
    batcher = Batcher[int](sender, linger_s=0.01)
    waiting = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await batcher.close()
    assert sender.batches == [[1]]


async def _failing_after_release(release: asyncio.Event) -> tuple[Batcher[int], asyncio.Event]:
    sent = asyncio.Event()

    async def send(entries: Sequence[int]) -> list[BaseException | None]:
        sent.set()
        await release.wait()
        return [BatchEntryError("ReceiptHandleIsInvalid", "gone", sender_fault=True)] * len(entries)

    return Batcher[int](send, linger_s=0), sent


async def test_an_entry_failing_after_its_caller_left_reports_nothing_to_the_loop() -> None:
    # A heartbeat cancelled as its job finishes, while its visibility change is on its way: the
    # change then fails (the message is already deleted). Nobody is left to read that error.
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    release = asyncio.Event()
    batcher, sent = await _failing_after_release(release)
    caller = asyncio.ensure_future(batcher.submit(1))
    await sent.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    await batcher.close()
    del caller
    gc.collect()
    await asyncio.sleep(0)
    assert [c.get("message") for c in reported] == []


async def test_a_live_caller_still_gets_the_entry_error() -> None:
    release = asyncio.Event()
    batcher, _ = await _failing_after_release(release)
    caller = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(BatchEntryError, match="ReceiptHandleIsInvalid"):
        await caller
