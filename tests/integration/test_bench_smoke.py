"""The benchmark harness at a tiny size, so it cannot rot: it runs against the session's S3 server,
produces the table and the JSON, and the numbers are sane (s3ops lists in ceil(N/1000) requests and
deletes in ceil(N/1000) DeleteObjects)."""

from __future__ import annotations

import json
import math

from bench import run as bench

N_LIST = bench.SIZES["s1"][2]
N_DELETE = bench.SIZES["s5"][2]


def test_bench_smoke_produces_the_table_with_sane_numbers(s3_server, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--smoke", "--reps", "1", "--scenarios", "1,5", "--tools", "s3ops,s5cmd", "--no-bootstrap",
                       "--endpoint-url", s3_server.endpoint_url, "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert f"Scenario 1: summarize one bucket of {N_LIST:,} objects" in table
    assert "| s3ops (storage report listing) |" in table

    result = json.loads(out.read_text())
    listing, delete = result["scenarios"]
    mine = listing["rows"][0]
    assert mine["tool"].startswith("s3ops") and mine["runs"] == 1
    assert 0 < mine["wall_median"] < 120 and 0 < mine["cpu_median"] < 60
    assert 10 < mine["rss_mb_median"] < 1000  # a Python process, not the bench's own (big) one
    assert mine["by_operation"] == {"ListObjectsV2": math.ceil(N_LIST / 1000)}
    bars = {b["bar"]: b for b in listing["bars"]}
    assert bars[f"ListObjectsV2 requests ÷ ceil(N/1000) = {math.ceil(N_LIST / 1000)}"]["met"]

    deleter = delete["rows"][0]
    assert deleter["by_operation"] == {"DeleteObjects": math.ceil(N_DELETE / 1000)}
    # s5cmd is measured too when its venv exists (make bench installs it); the bench never fakes a peer
    for row in listing["rows"][1:]:
        assert row["runs"] == 1 or row["note"] == "not installed"


def test_bench_ui_pages_scenario_builds_the_history_and_times_each_page(s3_server, tmp_path, capsys):
    out = tmp_path / "bench8.json"
    code = bench.main(["--smoke", "--reps", "1", "--scenarios", "8", "--no-bootstrap",
                       "--endpoint-url", s3_server.endpoint_url, "--json", str(out)])
    assert code == 0
    (ui,) = json.loads(out.read_text())["scenarios"]
    built = int(ui["extra"]["history"].split(" runs")[0].replace(",", ""))
    assert ui["status"] == "ok" and bench.UI_HISTORY["smoke"] <= built < bench.UI_HISTORY["smoke"] + 10
    bars = {b["bar"].split(",")[0]: b for b in ui["bars"]}
    assert set(bars) == {"storage page", "plans page", "uploads page"}
    assert all(0 < b["value"] < 5000 for b in bars.values())  # sane numbers; the bar itself is for the full size


def test_inventory_bench_smoke_counts_and_sorts(tmp_path):
    """bench.inventory at 3,000 rows: both formats, the report query and the sorted plan stream, whose
    child checks the key order itself and exits non-zero on a key out of order."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bench.inventory", "--objects", "3000", "--reps", "1", "--plan",
                          "--folder", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {line.split("  ")[0].strip(): line.split() for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"Parquet", "Parquet sorted", "CSV", "CSV sorted"}
    for cells in rows.values():
        assert cells[-5] == "3,000" and 0 < float(cells[-1]) < 2000  # rows, peak RSS MB


def test_latency_scenario_lists_the_split_bucket_in_parallel_and_turns_latency_off(s3_server, tmp_path):
    """Scenario 10 at 3,000 objects: the sharded report counts every object, the plan's requests are
    reported beside the listing's, and the server is back to no latency and moto's listing after it."""
    out = tmp_path / "bench10.json"
    code = bench.main(["--smoke", "--reps", "1", "--scenarios", "10", "--tools", "s3ops", "--no-bootstrap",
                       "--endpoint-url", s3_server.endpoint_url, "--json", str(out)])
    assert code == 0
    (scenario,) = json.loads(out.read_text())["scenarios"]
    (mine,) = scenario["rows"]
    n = bench.SIZES["s10"][2]
    assert mine["runs"] == 1 and mine["wall_median"] > 0.03 * math.ceil(n / 1000)  # the latency was on
    parts = int(scenario["extra"]["plan"].split(" key ranges")[0])
    assert parts > 1  # the bucket was split, as the DAG splits a big one
    lists = mine["by_operation"]["ListObjectsV2"]
    assert lists >= parts  # every key range listed on its own
    assert {b["bar"].split(" ")[0] for b in scenario["bars"]} == {"wall", "ListObjectsV2"}
    ranges_bar = next(b for b in scenario["bars"] if b["bar"].startswith("ListObjectsV2"))
    assert 1.0 <= ranges_bar["value"] <= (math.ceil(n / 1000) + parts) / math.ceil(n / 1000)  # a partial page per range at most
    assert s3_server.control("GET", "latency") == {"seconds": 0}
    assert s3_server.control("GET", "listing-index") == {"enabled": False, "pages": 0}


def test_listing_scenario_counts_requests_at_the_floor_and_extrapolates(s3_server, tmp_path):
    """Scenario 11 at 3,000 objects: the sequential listing asks exactly ceil(N/1000) pages, the report
    runs with the latency on, the extrapolations are printed, and the server is reset after it."""
    out = tmp_path / "bench11.json"
    code = bench.main(["--smoke", "--reps", "1", "--scenarios", "11", "--tools", "s3ops", "--no-bootstrap",
                       "--endpoint-url", s3_server.endpoint_url, "--json", str(out)])
    assert code == 0
    (scenario,) = json.loads(out.read_text())["scenarios"]
    rows = {row["tool"]: row for row in scenario["rows"]}
    n = bench.SIZES["s11"][2]
    sequential = rows["s3ops listing (sequential)"]
    assert sequential["by_operation"] == {"ListObjectsV2": math.ceil(n / 1000)}
    report = next(row for name, row in rows.items() if name.startswith("s3ops report at 30 ms"))
    assert report["wall_median"] > 0.03 * math.ceil(n / 1000)  # the latency was on for it
    assert "10^9 objects ~1,000,000 requests" in scenario["extra"]["s3ops listing (sequential)"]
    assert s3_server.control("GET", "latency") == {"seconds": 0}
    assert s3_server.control("GET", "listing-index") == {"enabled": False, "pages": 0}
