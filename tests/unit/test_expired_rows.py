"""include.retention.expired_rows: the expired TRIAL rows a plan records are the only rows its purge may
delete, and a missing or altered record purges nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.retention.expired_rows import EXPIRED_ROWS_DIR, ExpiredRowsWriter, RowsChanged, planned_rows
from include.retention.policy import JobRow, Policy

NOW = datetime(2019, 6, 3, tzinfo=UTC)
POLICY = Policy.at(NOW, "P3M", 7)
OLD = (NOW - timedelta(days=200)).replace(tzinfo=None)
ROWS = [JobRow("t1", OLD, "TRIAL", "a"), JobRow("o1", OLD, "OFFICIAL", "b"), JobRow("t2", OLD, " trial ", None),
        JobRow("r1", None, "TRIAL", "c"), JobRow("new", NOW.replace(tzinfo=None), "TRIAL", "d"),
        JobRow("odd", OLD, "tr\u0131al", "e"), JobRow("t3", OLD, "TRIAL", "f")]


def record(run_dir: Path, rows: list[JobRow] = ROWS, chunk_size: int = 2) -> dict:
    writer = ExpiredRowsWriter(run_dir, POLICY, chunk_size=chunk_size)
    assert list(writer.passing(rows)) == rows  # the plan sees every row, unchanged
    return writer.close()


def ids(run_dir: Path, recorded: dict) -> list[str]:
    return [row["jobId"] for part in planned_rows(run_dir, recorded) for row in part]


def test_only_expired_trials_are_recorded_in_chunks_with_their_digests(tmp_path: Path) -> None:
    recorded = record(tmp_path)
    assert recorded["count"] == 3 and list(recorded["chunks"]) == ["00000", "00001"]
    assert all(d.startswith("sha256:") for d in recorded["chunks"].values())
    assert ids(tmp_path, recorded) == ["t1", "t2", "t3"]  # not the dotless-i "trıal": an unknown type is kept
    first = json.loads((tmp_path / EXPIRED_ROWS_DIR / "00000.jsonl").read_text().splitlines()[0])
    assert first == {"jobId": "t1", "completedAt": OLD.isoformat() + "Z", "type": "TRIAL", "sourceData": "a"}


def test_a_new_plan_replaces_the_files_of_an_earlier_one(tmp_path: Path) -> None:
    record(tmp_path, chunk_size=1)
    recorded = record(tmp_path, rows=ROWS[:1])
    assert sorted(p.name for p in (tmp_path / EXPIRED_ROWS_DIR).iterdir()) == ["00000.jsonl"]
    assert ids(tmp_path, recorded) == ["t1"]


def test_no_expired_rows_is_an_empty_record(tmp_path: Path) -> None:
    recorded = record(tmp_path, rows=ROWS[1:2])
    assert recorded == {"count": 0, "chunks": {}} and ids(tmp_path, recorded) == []


@pytest.mark.parametrize("recorded", [None, {}, {"count": 1, "chunks": ["00000"]}, "x"])
def test_a_plan_without_the_record_purges_nothing(tmp_path: Path, recorded: object) -> None:
    with pytest.raises(RowsChanged, match="does not list the expired TRIAL rows"):
        planned_rows(tmp_path, recorded)  # type: ignore[arg-type]


def test_an_altered_added_to_or_missing_file_purges_nothing(tmp_path: Path) -> None:
    recorded = record(tmp_path)
    second = tmp_path / EXPIRED_ROWS_DIR / "00001.jsonl"
    original = second.read_bytes()
    second.write_bytes(original.replace(b'"t3"', b'"o1"'))  # another row swapped in
    with pytest.raises(RowsChanged, match="00001.jsonl changed after the plan was written"):
        planned_rows(tmp_path, recorded)
    second.unlink()
    with pytest.raises(RowsChanged, match="00001.jsonl is missing"):
        planned_rows(tmp_path, recorded)
    second.write_bytes(original)
    with pytest.raises(RowsChanged, match="recorded 4 expired TRIAL rows but its files hold 3"):
        planned_rows(tmp_path, {**recorded, "count": 4})
    assert ids(tmp_path, recorded) == ["t1", "t2", "t3"]


def test_a_file_changed_after_the_check_stops_the_purge_at_that_file(tmp_path: Path) -> None:
    recorded = record(tmp_path)
    parts = planned_rows(tmp_path, recorded)
    assert [row["jobId"] for row in next(parts)] == ["t1", "t2"]
    (tmp_path / EXPIRED_ROWS_DIR / "00001.jsonl").write_text('{"jobId":"o1"}\n')
    with pytest.raises(RowsChanged, match="changed while the rows were purged"):
        next(parts)
