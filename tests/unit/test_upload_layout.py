"""The producer's layout, eligibility, batching and empty-folder tidy (no S3, no Airflow)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.upload.layout import (
    Candidate,
    MalformedPath,
    is_eligible,
    parse_data_path,
    remove_empty_folders,
    scan_base_dir,
    split_batches,
)

NOW = datetime(2026, 3, 1, 12, 30, 40, tzinfo=UTC)


def make(base: Path, rel: str, *, age_seconds: float = 600, body: bytes = b"data\n") -> Path:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    mtime = NOW.timestamp() - age_seconds
    os.utime(path, (mtime, mtime))
    return path


@pytest.mark.parametrize(
    ("rel", "location", "minute", "topic"),
    [
        ("berlin/2026/02/28/23/59-temperature.dat", "berlin", datetime(2026, 2, 28, 23, 59), "temperature"),
        ("paris/2024/02/29/00/00-humidity.dat", "paris", datetime(2024, 2, 29, 0, 0), "humidity"),  # leap day
        ("site 7/2026/12/31/05/07-wind.speed.dat", "site 7", datetime(2026, 12, 31, 5, 7), "wind.speed"),
        # the producer's own unpadded folders (issue 15): one or two digits for month, day, hour, minute
        ("kitchen/2020/12/29/6/54-topic.dat", "kitchen", datetime(2020, 12, 29, 6, 54), "topic"),
        ("kitchen/2020/1/2/3/4-topic.dat", "kitchen", datetime(2020, 1, 2, 3, 4), "topic"),
        ("kitchen/2020/01/2/03/4-topic.dat", "kitchen", datetime(2020, 1, 2, 3, 4), "topic"),
    ],
)
def test_parses_paths_in_the_layout(rel, location, minute, topic):
    data = parse_data_path(rel)
    assert (data.rel, data.location, data.topic) == (rel, location, topic)
    assert data.minute == minute.replace(tzinfo=UTC)
    assert data.minute_end == data.minute + timedelta(minutes=1)


@pytest.mark.parametrize(
    "rel",
    [
        "berlin/2026/13/01/00/05-temperature.dat",  # month 13
        "berlin/2026/02/30/00/05-temperature.dat",  # 30 February
        "berlin/2026/01/01/25/05-temperature.dat",  # hour 25
        "berlin/2026/01/01/24/05-temperature.dat",  # hour 24
        "berlin/2026/01/01/00/61-temperature.dat",  # minute 61
        "berlin/2026/01/01/00/60-temperature.dat",  # minute 60
        "berlin/2026/01/01/00/05-temperature.txt",  # not .dat
        "berlin/2026/01/01/00/05-temperature.DAT",
        "berlin/2026/01/01/00/05-.dat",  # no topic
        "kitchen/2020/13/29/6/54-topic.dat",  # month 13, unpadded hour: still checked
        "kitchen/2020/2/30/6/54-topic.dat",  # 30 February, unpadded
        "kitchen/2020/12/0/6/54-topic.dat",  # day 0
        "berlin/2026/001/01/00/05-temperature.dat",  # three-digit month
        "berlin/2026/01/01/000/05-temperature.dat",  # three-digit hour
        "berlin/2026/01/01/00/005-temperature.dat",  # three-digit minute
        "berlin/2026//01/00/05-temperature.dat",  # empty month
        "berlin/2026/01/01/00/caf\udce9-t.dat",  # not valid UTF-8 (a byte os.fsdecode kept as a surrogate)
        "berlin/26/01/01/00/05-temperature.dat",  # two-digit year
        "berlin/2026/01/01/05-temperature.dat",  # no hour folder
        "berlin/2026/01/01/00/extra/05-temperature.dat",  # too deep
        "2026/01/01/00/05-temperature.dat",  # no location
        ".hidden/2026/01/01/00/05-temperature.dat",
        "notes.txt",
    ],
)
def test_rejects_paths_outside_the_layout(rel):
    with pytest.raises(MalformedPath):
        parse_data_path(rel)


def test_a_path_is_malformed_exactly_past_the_room_its_key_has(tmp_path):
    """key_room counts UTF-8 bytes: a path of exactly that many bytes fits, one byte more is malformed."""
    fits = make(tmp_path, "berlin/2026/03/01/10/05-é.dat")  # 30 bytes, 29 characters
    rel = "berlin/2026/03/01/10/05-é.dat"
    assert len(rel.encode()) == 30
    assert [c.rel for c in scan_base_dir(tmp_path, NOW, 30, 100, key_room=30).eligible] == [rel]
    scan = scan_base_dir(tmp_path, NOW, 30, 100, key_room=29)
    assert scan.eligible == [] and scan.malformed == [(str(fits), "its S3 key would be 1 bytes over S3's limit "
                                                       "(UTF-8, the key prefix included): shorten the location, the "
                                                       "topic or the key prefix")]


def test_an_invalid_utf8_name_is_malformed_and_shown_escaped(tmp_path):
    good = make(tmp_path, "berlin/2026/03/01/10/05-t.dat")
    folder = os.fsencode(good.parent)
    bad = os.path.join(folder, b"06-caf\xe9.dat")
    with open(bad, "wb") as fh:
        fh.write(b"keep\n")
    os.utime(bad, (NOW.timestamp() - 600,) * 2)
    scan = scan_base_dir(tmp_path, NOW, 30, 100)
    assert [c.rel for c in scan.eligible] == ["berlin/2026/03/01/10/05-t.dat"]
    assert len(scan.malformed) == scan.malformed_total == 1
    path, reason = scan.malformed[0]
    assert path.endswith("/06-caf\\xe9.dat") and "not valid UTF-8" in reason
    path.encode("utf-8")  # printable and JSON-safe
    assert open(bad, "rb").read() == b"keep\n"


def test_the_malformed_list_is_capped_but_counted(tmp_path, monkeypatch):
    import include.upload.layout as layout

    monkeypatch.setattr(layout, "MALFORMED_CAP", 3)
    for i in range(7):
        make(tmp_path, f"junk/file-{i}.txt")
    scan = scan_base_dir(tmp_path, NOW, 30, 100)
    assert (scan.malformed_total, len(scan.malformed)) == (7, 3)


def test_eligible_needs_both_the_minute_and_the_mtime_settled():
    data = parse_data_path("berlin/2026/03/01/12/29-t.dat")  # minute ends 12:30:00, NOW is 12:30:40
    old = NOW.timestamp() - 3600
    assert is_eligible(data, old, NOW, 40)  # minute ended exactly 40 s ago: eligible
    assert not is_eligible(data, old, NOW, 41)
    assert not is_eligible(data, NOW.timestamp() - 10, NOW, 30)  # written 10 s ago
    assert is_eligible(data, NOW.timestamp() - 30, NOW, 30)
    current = parse_data_path("berlin/2026/03/01/12/30-t.dat")  # this minute is not over
    assert not is_eligible(current, old, NOW, 0)


def test_scan_classifies_every_file(tmp_path):
    ready = [make(tmp_path, f"berlin/2026/03/01/11/{m:02d}-t.dat") for m in (0, 5, 59)]
    ready.append(make(tmp_path, "paris/2026/02/28/23/59-h.dat"))
    make(tmp_path, "berlin/2026/03/01/12/30-t.dat")  # current minute
    make(tmp_path, "berlin/2026/03/01/12/10-t.dat", age_seconds=5)  # old minute, still being written
    bad = [make(tmp_path, "berlin/2026/13/01/00/05-t.dat"), make(tmp_path, "paris/readme.txt")]
    (tmp_path / "paris" / "link.dat").symlink_to(ready[0])

    scan = scan_base_dir(tmp_path, NOW, 30, max_files=100)

    assert sorted(c.rel for c in scan.eligible) == sorted(p.relative_to(tmp_path).as_posix() for p in ready)
    assert scan.eligible_total == 4 and scan.deferred == 0
    assert scan.not_ready == 2
    assert sorted(p for p, _ in scan.malformed) == sorted([*map(str, bad), str(tmp_path / "paris" / "link.dat")])
    assert all(reason for _, reason in scan.malformed)
    first = next(c for c in scan.eligible if c.rel.endswith("11/00-t.dat"))
    st = (tmp_path / first.rel).stat()
    assert (first.size, first.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_max_files_takes_the_oldest_data_first(tmp_path):
    for day in (3, 1, 2):
        for minute in (7, 3):
            make(tmp_path, f"loc/2026/01/{day:02d}/00/{minute:02d}-t.dat")
    scan = scan_base_dir(tmp_path, NOW, 30, max_files=3)
    assert [c.rel for c in scan.eligible] == [
        "loc/2026/01/01/00/03-t.dat", "loc/2026/01/01/00/07-t.dat", "loc/2026/01/02/00/03-t.dat",
    ]
    assert scan.eligible_total == 6 and scan.deferred == 3


def test_split_batches_caps_the_number_of_batches():
    items = [Candidate(NOW, f"f{i}", 1, 1) for i in range(10)]
    assert [len(b) for b in split_batches(items, 4, 100)] == [4, 4, 2]
    assert [len(b) for b in split_batches(items, 2, 3)] == [4, 4, 2]  # size grows to keep <= 3 batches
    assert split_batches([], 4, 10) == []
    assert [c for b in split_batches(items, 3, 100) for c in b] == items


def test_tidy_removes_only_empty_finished_date_folders(tmp_path):
    # now 12:30:40, settle 30 s
    for rel in ("berlin/2026/03/01/11", "berlin/2026/02/28/23", "berlin/2025/12/31/23", "paris/2026/03/01/12",
                "paris/2026/03/01/10", "paris/2026/13/01/00", "paris/notes"):
        (tmp_path / rel).mkdir(parents=True)
    make(tmp_path, "paris/2026/03/01/10/05-t.dat")  # not empty: stays
    (tmp_path / "empty-location").mkdir()

    removed = remove_empty_folders(tmp_path, NOW, 30)

    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_dir())
    assert left == sorted([
        "berlin", "berlin/2026", "berlin/2026/03", "berlin/2026/03/01",  # the current day, month, year
        "empty-location",  # a location is never removed
        "paris", "paris/2026", "paris/2026/03", "paris/2026/03/01",
        "paris/2026/03/01/12",  # the current hour
        "paris/2026/03/01/10",  # holds a file
        "paris/2026/13", "paris/2026/13/01", "paris/2026/13/01/00",  # not a real date: unknown, kept
        "paris/notes",
    ])
    assert set(removed) == {str(tmp_path / r) for r in (
        "berlin/2026/03/01/11", "berlin/2026/02/28/23", "berlin/2026/02/28", "berlin/2026/02",
        "berlin/2025/12/31/23", "berlin/2025/12/31", "berlin/2025/12", "berlin/2025",
    )}
    assert tmp_path.is_dir()


def test_tidy_waits_for_the_settle_time_after_the_hour(tmp_path):
    hour = tmp_path / "berlin/2026/03/01/11"  # ended at 12:00:00
    hour.mkdir(parents=True)
    remove_empty_folders(tmp_path, datetime(2026, 3, 1, 12, 0, 20, tzinfo=UTC), 30)
    assert hour.is_dir()
    remove_empty_folders(tmp_path, datetime(2026, 3, 1, 12, 0, 31, tzinfo=UTC), 30)
    assert not hour.exists() and (tmp_path / "berlin/2026/03/01").is_dir()


def _listing_then(monkeypatch: pytest.MonkeyPatch, folder: str, change: Callable[[], None]) -> None:
    """``change`` runs right after the scan lists ``folder`` (its last part), before it looks at the entries."""
    import include.upload.layout as layout

    real = os.scandir

    class Listed:
        def __init__(self, fd: int) -> None:
            with real(fd) as entries:
                self.items = list(entries)
            if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == folder:
                change()

        def __enter__(self) -> list[os.DirEntry[str]]:
            return self.items

        def __exit__(self, *_: object) -> None:
            return None

    monkeypatch.setattr(layout.os, "scandir", Listed)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names the listed folder through /proc")
def test_a_file_that_vanishes_between_the_listing_and_its_stat_is_no_failure(tmp_path, monkeypatch):
    """A producer that writes a temporary file and renames it to its name (an atomic write), or removes one,
    at the instant the scan lists the folder: the entry is gone when the scan stats it. That was a scan
    error, counted as a failed file: the run went red and notified for a file nobody lost."""
    done = make(tmp_path, "berlin/2026/03/01/11/05-t.dat")
    tmp = make(tmp_path, "berlin/2026/03/01/11/06-t.dat.tmp")
    _listing_then(monkeypatch, "11", lambda: os.rename(tmp, tmp.with_name("06-t.dat")))

    scan = scan_base_dir(tmp_path, NOW, 30, max_files=100)

    assert (scan.errors, scan.errors_total) == ([], 0)
    assert [c.rel for c in scan.eligible] == [done.relative_to(tmp_path).as_posix()]  # 06 waits for the next scan


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names the listed folder through /proc")
def test_a_folder_removed_between_its_parents_listing_and_its_walk_is_no_failure(tmp_path, monkeypatch):
    import shutil

    done = make(tmp_path, "berlin/2026/03/01/11/05-t.dat")
    gone = make(tmp_path, "berlin/2026/03/01/10/05-t.dat").parent  # the producer clears an hour it gave up on
    _listing_then(monkeypatch, "01", lambda: shutil.rmtree(gone))

    scan = scan_base_dir(tmp_path, NOW, 30, max_files=100)

    assert (scan.errors, scan.errors_total, scan.malformed_total) == ([], 0, 0)
    assert [c.rel for c in scan.eligible] == [done.relative_to(tmp_path).as_posix()]
