"""Issue 15, storage report: date formats, regions, unknown CloudWatch counts, numeric sizes in report.json."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from include.core.dates import check_date_format, format_date
from include.storage_report import render as report_render
from include.storage_report.pricing import GB, load_prices
from include.storage_report.summarize import Totals, build_report, summarize_cloudwatch

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
PRICES = {"prices": {"us-east-1": {"STANDARD": 1.0, "GLACIER": 0.5}, "eu-west-1": {"STANDARD": 2.0}}}
WHEN = "2020-12-29T16:28:13Z"


@pytest.mark.parametrize("fmt, show_time, shown", [
    ("iso", True, "2020-12-29T16:28:13Z"),
    ("iso", False, "2020-12-29"),
    ("us", False, "12/29/2020"),
    ("eu", False, "29/12/2020"),
    ("us", True, "12/29/2020 16:28:13 UTC"),
    ("eu", True, "29/12/2020 16:28:13 UTC"),
    ("%d.%m.%Y", False, "29.12.2020"),
    ("%d.%m.%Y", True, "29.12.2020 16:28:13 UTC"),
    ("%Y%m%d %H%M", False, "20201229 1628"),  # a pattern with a time directive is used as it is
    ("%%Y=%Y", False, "%Y=2020"),
])
def test_date_formats(fmt, show_time, shown):
    assert format_date(WHEN, fmt, show_time) == shown


def test_dates_other_forms_and_unreadable_text():
    assert format_date("2020-12-29T16:28:13+02:00", "iso") == "2020-12-29T14:28:13Z"  # shown in UTC
    assert format_date("2026-11-21", "us", True, date_only=True) == "11/21/2026"
    assert format_date(None, "us") is None
    assert format_date("not a date", "eu") == "not a date"  # kept, never dropped


@pytest.mark.parametrize("bad, says", [
    ("", "empty"), ("   ", "empty"), (None, "empty"), (7, "empty"), ("dd/mm/yyyy", "no strftime directive"),
    ("%Q-%Y", "unknown directive"), ("%Y\n%m", "printable"), ("%Y" * 40, "at most 64"), ("%", "no strftime"),
    ("%Y-%", "no strftime directive"),
])
def test_bad_date_formats_are_refused_with_the_way_out(bad, says):
    with pytest.raises(ValueError, match=says) as err:
        check_date_format(bad)
    assert "iso, us, eu" in str(err.value)


def _bucket(name: str, region: str | None = "us-east-1", error: str | None = None) -> dict:
    return {"name": name, "creation_date": WHEN, "region": region, "error": error}


def _part(name: str, objects: list[tuple[int, str]]) -> dict:
    t = Totals()
    for size, cls in objects:
        t.add_object(size, "2021-06-01T10:00:00.000Z", cls)
    return {"bucket": name, "part": 0, "of": 1, "totals": t.to_dict(), "error": None}


@pytest.fixture
def report() -> dict:
    return build_report(
        [_bucket("a"), _bucket("b"), _bucket("c", "eu-west-1"), _bucket("d", "eu-west-1", "AccessDenied: x"),
         _bucket("e", None, "AccessDenied: y")],
        [_part("a", [(GB, "STANDARD"), (2 * GB, "GLACIER")]), _part("b", [(1536, "STANDARD")]),
         _part("c", [(3 * GB, "STANDARD")])],
        prices=load_prices(PRICES), size_unit="auto", source="listing", include_versions=False, generated_at=NOW,
        date_format="eu", show_time=False,
    )


def test_report_json_sizes_are_numbers_with_their_unit_and_times_stay_iso(report):
    a, b, *_ = report["buckets"]
    assert (a["total_size"], a["total_size_unit"]) == (3.0, "GiB")
    assert (b["total_size"], b["total_size_unit"]) == (1.5, "KiB")  # auto picks per bucket
    assert (report["totals"]["total_size"], report["totals"]["total_size_unit"]) == (6.0, "GiB")
    assert report["buckets"][3]["total_size"] is None and report["buckets"][3]["total_size_unit"] is None
    assert report["generated_at"] == "2026-11-22T04:00:00Z" and a["creation_date"] == WHEN
    assert a["last_modified"] == "2021-06-01T10:00:00Z"
    assert report["display"] == {"date_format": "eu", "show_time": False}
    json.dumps(report)  # plain JSON all the way down
    unit = build_report([_bucket("a")], [_part("a", [(1536, "STANDARD")])], prices=load_prices(), size_unit="KB",
                        source="listing", include_versions=False, generated_at=NOW)["buckets"][0]
    assert (unit["total_size"], unit["total_size_unit"]) == (1.54, "KB")


def test_regions_section(report):
    eu, us, unknown = report["regions"]  # by region name, unknown last
    assert us == {
        "region": "us-east-1", "bucket_count": 2, "error_count": 0, "object_count": 3,
        "total_bytes": 3 * GB + 1536, "total_size": 3.0, "total_size_unit": "GiB",
        "estimated_monthly_cost_usd": 2.00000143,  # 1,536 bytes at $1/GiB: $0.00000143
        "storage_classes": {"GLACIER": {"object_count": 1, "bytes": 2 * GB, "estimated_monthly_cost_usd": 1.0},
                            "STANDARD": {"object_count": 2, "bytes": GB + 1536, "estimated_monthly_cost_usd": 1.00000143}},
    }
    assert (eu["region"], eu["bucket_count"], eu["error_count"], eu["object_count"], eu["total_bytes"],
            eu["estimated_monthly_cost_usd"]) == ("eu-west-1", 2, 1, 1, 3 * GB, 6.0)
    assert (unknown["region"], unknown["bucket_count"], unknown["error_count"], unknown["object_count"]) == \
        (None, 1, 1, 0)
    assert sum(r["total_bytes"] for r in report["regions"]) == report["totals"]["total_bytes"]


def test_renderings_use_the_date_format_and_group_by_region(report):
    table = report_render.render_table(report)
    assert "29/12/2020" in table and "01/06/2021" in table and "2020-12-29" not in table
    assert "generated 22/11/2026" in table and "16:28" not in table
    assert "3.00 GiB" in table and "1.50 KiB" in table
    with_time = report_render.render_table(report, date_format="us", show_time=True)
    assert "12/29/2020 16:28:13 UTC" in with_time
    rows = list(csv.DictReader(io.StringIO(report_render.render_csv(report))))
    assert [(r["name"], r["creation_date"], r["last_modified"], r["total_size"]) for r in rows[:2]] == [
        ("a", "29/12/2020", "01/06/2021", "3.00 GiB"), ("b", "29/12/2020", "01/06/2021", "1.50 KiB")]
    by_region = report_render.render_table(report, group_by="region")
    lines = by_region.splitlines()
    assert lines[2].split()[:4] == ["region", "buckets", "unreadable", "objects"]
    assert any(line.split()[:4] == ["us-east-1", "2", "0", "3"] for line in lines)
    assert any(line.split()[:4] == ["unknown", "1", "1", "0"] for line in lines)
    region_rows = list(csv.DictReader(io.StringIO(report_render.render_csv(report, group_by="region"))))
    assert [(r["region"], r["bucket_count"], r["total_bytes"], r["GLACIER_bytes"]) for r in region_rows] == [
        ("eu-west-1", "2", str(3 * GB), ""), ("us-east-1", "2", str(3 * GB + 1536), str(2 * GB)),
        ("", "1", "0", "")]
    page = report_render.render_html(report)
    assert 'id="regions"' in page and "Bytes per region" in page and "29/12/2020" in page
    assert "<td>eu-west-1</td>" in page


def test_an_old_report_without_regions_or_display_still_renders(report):
    old = {k: v for k, v in report.items() if k not in ("regions", "display")}
    assert "2020-12-29T16:28:13Z" in report_render.render_table(old)  # iso with time: the old default
    assert "us-east-1" in report_render.render_table(old, group_by="region")


class _CloudWatch:
    """GLACIER 50 bytes, STANDARD 1000 bytes, 999 objects of every class together."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def list_metrics(self, **kw):
        return {"Metrics": [{"Dimensions": [{"Name": "BucketName", "Value": "b"}, {"Name": "StorageType", "Value": st}]}
                            for st in ("StandardStorage", "GlacierStorage")]}

    def get_metric_statistics(self, **kw):
        st = next(d["Value"] for d in kw["Dimensions"] if d["Name"] == "StorageType")
        self.asked.append((kw["MetricName"], st))
        value = {"StandardStorage": 1000, "GlacierStorage": 50, "AllStorageTypes": 999}[st]
        return {"Datapoints": [{"Timestamp": datetime(2026, 11, 21, tzinfo=UTC), "Average": float(value)}]}


def test_cloudwatch_count_is_unknown_with_a_storage_class_filter():
    cw = _CloudWatch()
    glacier = summarize_cloudwatch(cw, "b", NOW, storage_classes=["GLACIER"])
    assert glacier["totals"]["total_bytes"] == 50 and glacier["totals"]["object_count"] is None
    assert ("NumberOfObjects", "AllStorageTypes") not in cw.asked
    everything = summarize_cloudwatch(_CloudWatch(), "other", NOW)
    assert everything["totals"]["object_count"] == 999  # without a filter the count is right
    report = build_report([_bucket("b"), _bucket("other")], [glacier, {**everything, "bucket": "other"}],
                          prices=load_prices(), size_unit="B", source="cloudwatch", include_versions=False,
                          generated_at=NOW)
    b = report["buckets"][0]
    assert b["object_count"] is None and b["storage_classes"]["GLACIER"]["object_count"] is None
    assert report["totals"]["object_count"] is None  # a sum with an unknown part is unknown
    assert report["regions"][0]["object_count"] is None and "unknown" in report["note"]
    table = report_render.render_table(report)
    row = next(line for line in table.splitlines() if line.startswith("b "))
    assert row.split()[3] == "unknown" and "999" not in row
    assert "unknown objects" in table
    assert next(csv.DictReader(io.StringIO(report_render.render_csv(report))))["object_count"] == "unknown"
    assert "<strong>unknown</strong> objects" in report_render.render_html(report)


def test_ui_page_uses_the_reports_date_format_regions_and_unknown_counts(tmp_path, report):
    from include.ui import html as ui_html
    from include.ui import views as ui_views

    folder = tmp_path / "s3_storage_report" / "run-1"
    folder.mkdir(parents=True)
    report["buckets"][0] = {**report["buckets"][0], "object_count": None}  # as CloudWatch with a class filter
    report["totals"]["object_count"] = None
    (folder / "report.json").write_text(json.dumps(report))
    view = ui_views.storage_view(tmp_path)
    latest = view["latest"]
    assert (latest["date_format"], latest["show_time"]) == ("eu", False)
    assert [r["region"] for r in latest["regions"]] == ["eu-west-1", "us-east-1", None]
    assert latest["buckets"][1]["total_size"] == "1.50 KiB" and latest["totals"]["object_count"] is None
    page = ui_html.render_storage(view)
    assert 'id="regions"' in page and 'id="chart-regions"' in page and 'data-region="eu-west-1"' in page
    assert ">29/12/2020<" in page and ">01/06/2021<" in page and "2020-12-29T16:28:13Z<" not in page
    assert 'data-unknown="1">unknown<' in page and 'data-card="object_count" data-value="unknown"' in page
    row = page[page.index('data-bucket="d"'):].split("</tr>")[0]  # unreadable: no number, no "unknown"
    assert "unknown" not in row and "AccessDenied" in row
