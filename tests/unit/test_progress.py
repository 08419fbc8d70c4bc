"""include.core.progress: the one progress helper every long step logs through."""

from __future__ import annotations

import logging
import threading

import pytest

from include.core import progress as progress_mod
from include.core.progress import Progress, duration, interval_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("[progress]")]


def test_a_line_every_interval_with_rate_share_bytes_and_eta(caplog):
    clock = Clock()
    p = Progress("deleting chunk 00001", unit="keys", total=10_000, total_bytes=10 * 1024**2, every=5.0,
                 clock=clock)
    with caplog.at_level(logging.INFO, logger="include.core.progress"):
        for at in (1.0, 4.0, 5.0, 7.0, 10.5):  # 1,000 keys (1 MiB) done at each time: lines at 5.0 and 10.5
            clock.now = 100.0 + at
            p.add(1000, 1024**2)
        clock.now = 112.0
        p.finish()
        p.finish()  # a second finish logs nothing
    lines = _lines(caplog)
    assert lines == [
        "[progress] deleting chunk 00001: 3,000 of 10,000 keys (30%), 600 keys/s, 3.00 MiB of 10.00 MiB, 5.0 s, "
        "ETA 11.7 s",
        "[progress] deleting chunk 00001: 5,000 of 10,000 keys (50%), 476 keys/s, 5.00 MiB of 10.00 MiB, 10.5 s, "
        "ETA 10.5 s",
        "[progress] deleting chunk 00001: 5,000 of 10,000 keys (50%), 417 keys/s, 5.00 MiB of 10.00 MiB, 12.0 s, done",
    ]
    assert p.lines == 3


def test_unknown_total_has_no_eta_and_detail_is_appended(caplog):
    clock = Clock()
    pages = [0]
    p = Progress("listing s3://b/", every=0.0, clock=clock, detail=lambda: f"{pages[0]} pages")
    with caplog.at_level(logging.INFO, logger="include.core.progress"):
        for _ in range(3):
            clock.now += 2
            pages[0] += 1
            p.add(1000)
    lines = _lines(caplog)
    assert len(lines) == 3
    assert lines[-1] == "[progress] listing s3://b/: 3,000 objects, 500 objects/s, 3 pages, 6.0 s"
    assert "ETA" not in "".join(lines) and "%" not in "".join(lines)


def test_empty_work_finishes_with_one_line_and_no_division_by_zero(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="include.core.progress"):
        Progress("uploading batch 00000", unit="files", total=0, total_bytes=0, clock=clock).finish()
    assert _lines(caplog) == ["[progress] uploading batch 00000: 0 of 0 files, 0.0 s, done"]


def test_counts_from_many_threads_add_up(caplog):
    p = Progress("uploading", unit="files", total=8000, every=0.0)
    with caplog.at_level(logging.INFO, logger="include.core.progress"):
        threads = [threading.Thread(target=lambda: [p.add(1, 10) for _ in range(1000)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p.finish()
    assert (p.done, p.bytes) == (8000, 80_000)
    assert _lines(caplog)[-1].startswith("[progress] uploading: 8,000 of 8,000 files (100%)")


@pytest.mark.parametrize(("raw", "expected"), [
    ("", 5.0), ("0.25", 0.25), ("0", 0.0), ("-1", 5.0), ("nan", 5.0), ("inf", 5.0), ("soon", 5.0), ("1e400", 5.0),
])
def test_interval_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv(progress_mod.ENV_SECONDS, raw)
    assert interval_seconds() == expected


def test_the_environment_sets_the_default_interval(monkeypatch):
    monkeypatch.setenv(progress_mod.ENV_SECONDS, "60")
    assert Progress("x").every == 60.0
    assert Progress("x", every=1.0).every == 1.0


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0.0 s"), (4.24, "4.2 s"), (59.9, "59.9 s"), (75, "1 min 15 s"), (3599.6, "1 h 00 min"),
    (7260, "2 h 01 min"), (float("nan"), "?"), (-1, "?"), (float("inf"), "?"),
])
def test_duration(seconds, text):
    assert duration(seconds) == text
