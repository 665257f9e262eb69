"""moto server with one cost removed, to measure ``import`` rather than the emulator.

moto's SendMessage builds every queue attribute for each message it takes, including the message
counts, which walk the whole queue: sending N messages costs O(N^2), and past a few thousand
messages moto, not the sender, sets the pace. Here ``Queue.attributes`` computes only the key asked
for; every answer stays what moto computes.

Run: ``python -m bench.fast_moto -H 127.0.0.1 -p PORT`` (moto.server's own arguments).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

from moto.core.utils import camelcase_to_underscores
from moto.server import main
from moto.sqs import models

_all_attributes = models.Queue.attributes.fget


class _AttributesOnDemand(Mapping[str, Any]):
    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def _direct(self, key: str) -> bool:
        queue = self._queue
        return key in queue.BASE_ATTRIBUTES or (queue.fifo_queue and key in queue.FIFO_ATTRIBUTES)

    def __getitem__(self, key: str) -> Any:
        if self._direct(key):
            return getattr(self._queue, camelcase_to_underscores(key))
        return _all_attributes(self._queue)[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_all_attributes(self._queue))

    def __len__(self) -> int:
        return len(_all_attributes(self._queue))


models.Queue.attributes = property(_AttributesOnDemand)  # type: ignore[assignment,method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
