"""Progress of an import's phases (validating, sending, results): bars on a terminal, one plain
line per interval otherwise (a CI log or a file gets no carriage returns)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol, TextIO

from tqdm import tqdm


class PhaseProgress(Protocol):
    """The progress of one phase; ``counts`` are shown beside the bar (e.g. results by status)."""

    def advance(self, rows: int, counts: Mapping[str, int] | None = None) -> None:
        """``rows`` more rows are done."""
        ...

    def close(self) -> None:
        """End the phase (a last line is printed)."""
        ...


ProgressFactory = Callable[[str, int | None], PhaseProgress]


def progress_factory(output: TextIO, interval_s: float) -> ProgressFactory:
    """Bars when ``output`` is a terminal, else a line every ``interval_s`` seconds."""
    if output.isatty():
        return lambda phase, total: BarProgress(phase, total, output)
    return lambda phase, total: LineProgress(phase, total, output, interval_s)


def _counts_text(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted((counts or {}).items()))


class BarProgress:
    """A tqdm bar: count, rate and ETA; the counts as its postfix."""

    def __init__(self, phase: str, total: int | None, output: TextIO) -> None:
        self._bar = tqdm(
            total=total, desc=phase, unit=" rows", file=output, dynamic_ncols=True, smoothing=0.1
        )

    def advance(self, rows: int, counts: Mapping[str, int] | None = None) -> None:
        if counts is not None:
            self._bar.set_postfix_str(_counts_text(counts), refresh=False)
        self._bar.update(rows)

    def close(self) -> None:
        self._bar.close()


class LineProgress:
    """One plain line per interval, and one at the end:

    ``sending: 12000/100000 rows (12%), 2400 rows/s, ETA 37 s``
    """

    def __init__(self, phase: str, total: int | None, output: TextIO, interval_s: float) -> None:
        self._phase = phase
        self._total = total
        self._output = output
        self._interval_s = interval_s
        self._done = 0
        self._counts: Mapping[str, int] | None = None
        self._started = time.monotonic()
        self._last_line = self._started

    def advance(self, rows: int, counts: Mapping[str, int] | None = None) -> None:
        self._done += rows
        if counts is not None:
            self._counts = dict(counts)
        now = time.monotonic()
        if now - self._last_line >= self._interval_s:
            self._last_line = now
            self._print(now)

    def close(self) -> None:
        self._print(time.monotonic(), final=True)

    def _print(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        parts = [f"{self._phase}: {self._done}"]
        if self._total is not None:
            percent = 100 * self._done / self._total if self._total else 100
            parts[0] += f"/{self._total} rows ({percent:.0f}%)"
        else:
            parts[0] += " rows"
        parts.append(f"{rate:.0f} rows/s")
        if final:
            parts.append(f"done in {elapsed:.1f} s")
        elif self._total is not None and rate > 0:
            parts.append(f"ETA {max(self._total - self._done, 0) / rate:.0f} s")
        counts = _counts_text(self._counts)
        if counts:
            parts.append(counts)
        print(", ".join(parts), file=self._output, flush=True)
