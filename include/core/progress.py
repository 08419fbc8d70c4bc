"""Progress lines for long steps: every few seconds, how much is done, the rate and (with a known total)
an estimate of the time left. One helper, used by every step that can run longer than ~10 s (listings,
deletes, upload batches), so an operator watching a task log always sees the same kind of line::

    [progress] listing s3://logs/ (retention plan): 48,000 objects, 2,310 objects/s, 20.8 s
    [progress] uploading batch 00003: 1,200 of 5,000 files (24%), 310 files/s, 1.2 GiB of 4.8 GiB, 3.9 s, ETA 12 s

Hand-written because it is a few lines: tqdm and friends draw a bar on a terminal (carriage returns,
one stream), while a task log wants whole log records at a steady pace, from several threads.
The interval is ``S3OPS_PROGRESS_SECONDS`` (default 5 s); tests set it short to see several lines.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable

from include.core.units import format_size

DEFAULT_SECONDS = 5.0
ENV_SECONDS = "S3OPS_PROGRESS_SECONDS"
MARK = "[progress]"  # every progress line starts with it: easy to grep in a task log

_log = logging.getLogger(__name__)


def interval_seconds() -> float:
    """The progress interval: ``S3OPS_PROGRESS_SECONDS`` when it is a number ≥ 0, else 5 s."""
    raw = os.environ.get(ENV_SECONDS, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_SECONDS
    return value if math.isfinite(value) and value >= 0 else DEFAULT_SECONDS


def duration(seconds: float) -> str:
    """``4.2`` → ``"4.2 s"``, ``75`` → ``"1 min 15 s"``, ``7260`` → ``"2 h 01 min"``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class Progress:
    """Counts work as it happens and logs a line at most every ``every`` seconds (and once at the end).

    ``add(n, nbytes)`` records ``n`` more units done (thread-safe). With ``total`` (units) the line
    shows the share done and an ETA; with ``total_bytes`` also bytes of total. ``detail()`` may append
    step-specific counters (e.g. pages, objects kept). ``finish()`` logs the closing line once.
    """

    def __init__(self, what: str, *, unit: str = "objects", total: int | None = None,
                 total_bytes: int | None = None, every: float | None = None,
                 log: logging.Logger | None = None, detail: Callable[[], str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.unit, self.total, self.total_bytes = what, unit, total, total_bytes
        self.every = interval_seconds() if every is None else every
        self.log, self.detail, self.clock = log or _log, detail, clock
        self.done = 0
        self.bytes = 0
        self.lines = 0
        self._lock = threading.Lock()
        self._finished = False
        self.started = self._last = clock()

    def add(self, n: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self.done += n
            self.bytes += nbytes
            now = self.clock()
            if now - self._last < self.every:
                return
            self._last = now
            self._emit(now, final=False)

    def finish(self, state: str = "done") -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._emit(self.clock(), final=True, state=state)

    def line(self, now: float | None = None, *, final: bool = False, state: str = "done") -> str:
        """The text of a progress line at ``now`` (tests and the log use the same words)."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 0.0)
        parts = [f"{self.done:,} of {self.total:,} {self.unit}" if self.total is not None
                 else f"{self.done:,} {self.unit}"]
        if self.total:
            parts[0] += f" ({min(100.0, 100.0 * self.done / self.total):.0f}%)"
        rate = self.done / elapsed if elapsed > 0 else None
        if rate is not None:
            parts.append(f"{rate:,.0f} {self.unit}/s")
        if self.bytes or self.total_bytes:
            parts.append(format_size(self.bytes) + (f" of {format_size(self.total_bytes)}"
                                                    if self.total_bytes is not None else ""))
        if self.detail is not None:
            extra = self.detail()
            if extra:
                parts.append(extra)
        parts.append(duration(elapsed))
        if final:
            parts.append(state)
        elif self.total is not None and rate:
            parts.append(f"ETA {duration(max(self.total - self.done, 0) / rate)}")
        return f"{MARK} {self.what}: " + ", ".join(parts)

    def _emit(self, now: float, *, final: bool, state: str = "done") -> None:
        self.lines += 1
        self.log.info("%s", self.line(now, final=final, state=state))
