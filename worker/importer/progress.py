"""Progress of an import's phases (validating, sending, results): bars on a terminal, one plain
line per interval otherwise (a CI log, a file, or a pseudo-terminal 0 columns wide, where a bar
would print nothing, get no carriage returns).

The rate and the ETA are the recent ones: rows over the last :data:`RATE_WINDOW_S` seconds, not
since the phase began (a phase that starts slowly, waiting for the first results, would otherwise
promise hours for a run of minutes). Until the window holds :data:`MIN_RATE_SPAN_S` seconds of
progress, the ETA says ``estimating``.
"""

from __future__ import annotations

import os
import time
from collections import deque
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
Clock = Callable[[], float]

RATE_WINDOW_S = 5.0
MIN_RATE_SPAN_S = 2.0
MIN_BAR_COLUMNS = 20


class RecentRate:
    """Rows a second over the last ``window_s`` seconds, and the ETA it gives."""

    def __init__(
        self,
        clock: Clock,
        window_s: float = RATE_WINDOW_S,
        min_span_s: float = MIN_RATE_SPAN_S,
    ) -> None:
        self._clock = clock
        self._window_s = window_s
        self._min_span_s = min_span_s
        start = clock()
        # A sample every window/50 at most (a phase may advance 100,000 times a second), and
        # the latest count apart.
        self._samples: deque[tuple[float, int]] = deque([(start, 0)])
        self._latest = 0

    def note(self, done: int) -> None:
        """``done`` rows are done by now."""
        now = self._clock()
        self._latest = done
        if now - self._samples[-1][0] >= self._window_s / 50:
            self._samples.append((now, done))
        # Keep one sample at or before the window's start, so the window is always full.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window_s:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Rows a second recently; None until the samples span ``min_span_s``."""
        now = self._clock()
        first_time, first_done = self._samples[0]
        last_done = self._latest
        # The oldest sample may be older than the window (no progress came in between): the
        # window's start is then the span, so a slow start is forgotten after window_s.
        span = min(now - first_time, self._window_s)
        if span < self._min_span_s or (last_done == first_done and span < self._window_s):
            return None
        return (last_done - first_done) / span

    def eta_text(self, remaining: int) -> str:
        """``ETA 37 s`` (or minutes, hours), or ``ETA estimating``."""
        rate = self.rate()
        if not rate:
            return "ETA estimating"
        return f"ETA {_duration(remaining / rate)}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _columns(output: TextIO) -> int:
    try:
        return os.get_terminal_size(output.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def progress_factory(
    output: TextIO, interval_s: float, clock: Clock = time.monotonic
) -> ProgressFactory:
    """Bars when ``output`` is a terminal wide enough for one, else a line every
    ``interval_s`` seconds."""
    if output.isatty() and _columns(output) >= MIN_BAR_COLUMNS:
        return lambda phase, total: BarProgress(phase, total, output, clock)
    return lambda phase, total: LineProgress(phase, total, output, interval_s, clock)


def _counts_text(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted((counts or {}).items()))


class BarProgress:
    """A tqdm bar with the count; the recent rate, the ETA and the counts as its postfix
    (tqdm's own ETA is from an average since the start)."""

    def __init__(
        self, phase: str, total: int | None, output: TextIO, clock: Clock = time.monotonic
    ) -> None:
        self._total = total
        self._done = 0
        self._counts: Mapping[str, int] | None = None
        self._rate = RecentRate(clock)
        self._bar = tqdm(
            total=total,
            desc=phase,
            unit=" rows",
            file=output,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
            if total is not None
            else "{desc}: {n_fmt} rows [{elapsed}{postfix}]",
        )

    def advance(self, rows: int, counts: Mapping[str, int] | None = None) -> None:
        self._done += rows
        self._rate.note(self._done)
        if counts is not None:
            self._counts = dict(counts)
        rate = self._rate.rate()
        parts = ["estimating" if rate is None else f"{rate:.0f} rows/s"]
        if self._total is not None:
            parts.append(self._rate.eta_text(max(self._total - self._done, 0)))
        counts_text = _counts_text(self._counts)
        if counts_text:
            parts.append(counts_text)
        self._bar.set_postfix_str(", ".join(parts), refresh=False)
        self._bar.update(rows)

    def close(self) -> None:
        self._bar.close()


class LineProgress:
    """One plain line per interval, and one at the end:

    ``sending: 12000/100000 rows (12%), 2400 rows/s, ETA 37 s``
    """

    def __init__(
        self,
        phase: str,
        total: int | None,
        output: TextIO,
        interval_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._phase = phase
        self._total = total
        self._output = output
        self._interval_s = interval_s
        self._clock = clock
        self._done = 0
        self._counts: Mapping[str, int] | None = None
        self._started = clock()
        self._last_line = self._started
        self._rate = RecentRate(clock)

    def advance(self, rows: int, counts: Mapping[str, int] | None = None) -> None:
        """``rows`` more rows done (0: none, but a line is still due every interval)."""
        self._done += rows
        self._rate.note(self._done)
        if counts is not None:
            self._counts = dict(counts)
        now = self._clock()
        if now - self._last_line >= self._interval_s:
            self._last_line = now
            self._print(now)

    def close(self) -> None:
        self._print(self._clock(), final=True)

    def _print(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._started, 1e-6)
        parts = [f"{self._phase}: {self._done}"]
        if self._total is not None:
            percent = 100 * self._done / self._total if self._total else 100
            parts[0] += f"/{self._total} rows ({percent:.0f}%)"
        else:
            parts[0] += " rows"
        if final:
            parts.append(f"{self._done / elapsed:.0f} rows/s")
            parts.append(f"done in {elapsed:.1f} s")
        else:
            rate = self._rate.rate()
            parts.append("rate estimating" if rate is None else f"{rate:.0f} rows/s")
            if self._total is not None:
                parts.append(self._rate.eta_text(max(self._total - self._done, 0)))
        counts = _counts_text(self._counts)
        if counts:
            parts.append(counts)
        print(", ".join(parts), file=self._output, flush=True)
