"""Progress of a counted job (samples generated, files rendered) on stderr.

On a terminal, a tqdm bar (done / total, rate and ETA); elsewhere (a log file, CI) a line
at about every 10% of the work, at most one per ``min_interval`` seconds, and one at the end:
``      generate 8/16 samples  21 s, ETA 21 s``.  tqdm is
Lightning's own progress-bar library, so this adds no dependency.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def tqdm_bar(stream: Any, **kwargs: Any) -> Any:
    """A tqdm bar on ``stream`` that follows the terminal's width, or 100 columns where the
    terminal reports none (a pseudo-terminal without a size: tqdm would draw an empty line)."""
    from tqdm import tqdm

    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    if size.columns > 0 and size.lines > 0:
        return tqdm(file=stream, dynamic_ncols=True, **kwargs)
    return tqdm(file=stream, ncols=100, nrows=40, **kwargs)  # tqdm hides bars below row "0"


class Counter:
    """``update(done)`` after each unit of work; ``close()`` at the end (or use ``with``)."""

    def __init__(
        self, label: str, total: int, unit: str = "sample", stream: Any = None, bar: bool | None = None,
        min_interval: float = 5.0,
    ):
        self.label, self.total, self.unit = label, int(total), unit
        self.min_interval = float(min_interval)
        self._last: float | None = None
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.done = 0
        self._next = 0
        self._bar = None
        if bar if bar is not None else is_terminal(self.stream):
            self._bar = tqdm_bar(self.stream, total=self.total, desc=f"      {label}", unit=unit, leave=True)

    def __enter__(self) -> "Counter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __call__(self, done: int, total: int | None = None) -> None:
        """The ``progress(done, total)`` callback form (``core.generation.generate``)."""
        if total is not None:
            self.total = int(total)
        self.update(done)

    def update(self, done: int) -> None:
        done = int(done)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.update(done - self.done)
            self.done = done
            return
        self.done = done
        now = time.perf_counter()
        if done < self.total:
            if done < self._next or (self._last is not None and now - self._last < self.min_interval):
                return
        step = max(1, -(-self.total // 10))
        self._next = (done // step + 1) * step
        self._last = now
        elapsed = now - self.t0
        eta = f", ETA {elapsed / done * (self.total - done):.0f} s" if 0 < done < self.total else ""
        print(
            f"      {self.label} {done}/{self.total} {self.unit}s  {elapsed:.0f} s{eta}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def step_line(label: str, stream: Any = None) -> Any:
    """A ``step_progress(samples_done, n, step, max_tokens)`` callback for
    :func:`musicfw.engine.generation.generate`: one line per call (generate calls it at most
    every few seconds within a long batch)."""
    t0 = time.perf_counter()

    def line(done: int, n: int, step: int, max_tokens: int) -> None:
        print(
            f"      {label}: samples {done}/{n} done, this batch at token {step:,}/{max_tokens:,}  "
            f"{time.perf_counter() - t0:.0f} s",
            file=stream if stream is not None else sys.stderr, flush=True,
        )

    return line
