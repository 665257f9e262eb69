"""Stop signals (SIGTERM, SIGINT), heard from the first moment of ``run`` to the exit.

ECS stops a task with SIGTERM, then SIGKILL after the stop timeout; a terminal user presses
Ctrl-C. Either may come while the worker is still starting, so the handlers go in before anything
slow happens (importing the SDK, creating clients), and a signal received then is remembered and
acted on as soon as there is something to stop.

Acting on a signal never depends on logging: the stop is carried out first, the log line is
written after, and a failure to write it changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Records stop signals and hands the first to whoever can stop; the second exits at once."""

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []
        self._on_stop: Callable[[str], None] | None = None

    def install_early(self) -> None:
        """Catch the signals before the event loop exists (they are only recorded until then)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._early)

    def hold_from_now_on(self) -> None:
        """Block the signals for the rest of the exit.

        Closing the event loop, and then the interpreter's own shutdown, put the default handlers
        back, and the default for SIGTERM is to die by it: a signal in the last few hundred
        milliseconds would turn a finished worker's exit code into -15. Blocked, it stays pending
        and is dropped when the process exits with its own code.
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hear the signals through the event loop from now on."""
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._receive, signum)

    def on_stop(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` on the first signal; at once if one came already."""
        self._on_stop = callback
        if self.received:
            callback(self.reason)

    @property
    def reason(self) -> str:
        """Why the process is stopping, e.g. ``SIGTERM received``."""
        return f"{self.received[0].name} received" if self.received else ""

    def _early(self, signum: int, _frame: FrameType | None) -> None:
        # A Python-level handler: keep it to recording, the loop acts on it once it runs.
        if self.received:
            os._exit(128 + signum)
        self.received.append(signal.Signals(signum))

    def _receive(self, signum: int) -> None:
        self.received.append(signal.Signals(signum))
        if len(self.received) > 1:
            # A second signal means "now": no drain, no flush. SQS redelivers what was in flight.
            _log_quietly("second signal: exiting at once", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        if self._on_stop is not None:
            self._on_stop(self.reason)


def _log_quietly(event: str, **fields: str) -> None:
    from worker.telemetry.logs import get_logger

    with contextlib.suppress(Exception):
        get_logger("signals").warning(event, **fields)
