"""The "S3 Ops" pages in a real headless Chromium (Debian's, driven by Playwright): log in through
Airflow's login form, open each page, compare the numbers shown with the artifacts, save screenshots.

Runs after the other e2e tests (see conftest) so the pages show their runs; it makes sure itself that
there is a storage report, an upload run and a plan waiting for approval. Screenshots go to
``.s3ops/e2e-screenshots/``; with ``S3OPS_UPDATE_SCREENSHOTS=1`` also to ``docs/screenshots/``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scripts import tools

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser_page(airflow: Any, standalone: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = tools.chromium()
    if chromium is None:
        pytest.fail(f"no Chromium found: {tools.install_hint('chromium')} (or set S3OPS_CHROMIUM to a Chromium binary)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        # nothing outside this machine may be fetched by the pages
        outside: list[str] = []
        context.route(lambda url: not url.startswith(standalone.base_url) and not url.startswith("data:"),
                      lambda route: (outside.append(route.request.url), route.abort()))
        page = context.new_page()
        page.goto(f"{standalone.base_url}/s3ops/storage")
        page.wait_for_selector("input[name=username]", timeout=60_000)  # redirected to Airflow's login form
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", standalone.password)
        page.click("button[type=submit]")
        page.wait_for_url("**/s3ops/storage", timeout=60_000)
        page.outside_requests = outside
        yield page
        browser.close()


def _shot(page: Any, screenshots: Path, name: str) -> None:
    path = screenshots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("S3OPS_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SCREENSHOTS / path.name)


def _latest_report(e2e_artifacts: Path) -> tuple[str, dict[str, Any]]:
    reports = [(json.loads(p.read_text()), p.parent.name) for p in (e2e_artifacts / "s3_storage_report").glob("*/report.json")]
    report, run_id = max(reports, key=lambda r: (r[0]["generated_at"], r[1]))
    return run_id, report


def _ensure_runs(airflow: Any, s3: Any, s3_server: Any, demo_world: Any, e2e_artifacts: Path, tmp_path: Path) -> None:
    """At least one storage report and one upload summary."""
    if not list((e2e_artifacts / "s3_storage_report").glob("*/report.json")):
        run_id = airflow.trigger("s3_storage_report", {"include_versions": True})
        assert airflow.wait_run("s3_storage_report", run_id, timeout=300) == "success"
    if not list((e2e_artifacts / "s3_upload").glob("*/summary.json")):
        from include.seed import upload_files

        upload_files(tmp_path / "producer", datetime.now(UTC))
        run_id = airflow.trigger("s3_upload", {"base_dir": str(tmp_path / "producer"),
                                               "bucket": demo_world.upload_bucket})
        try:
            assert airflow.wait_run("s3_upload", run_id, timeout=240) == "success"
        finally:
            airflow.set_paused("s3_upload", True)


def test_storage_page_shows_the_latest_report(browser_page, airflow, s3, s3_server, demo_world, e2e_artifacts,
                                              screenshots, tmp_path):
    _ensure_runs(airflow, s3, s3_server, demo_world, e2e_artifacts, tmp_path)
    run_id, report = _latest_report(e2e_artifacts)
    page = browser_page
    page.goto(page.url.split("/s3ops/")[0] + "/s3ops/storage")
    assert page.inner_text("#report-run") == run_id
    assert page.get_attribute("[data-card=total_bytes]", "data-value") == str(report["totals"]["total_bytes"])
    assert page.get_attribute("[data-card=object_count]", "data-value") == str(report["totals"]["object_count"])
    for bucket in report["buckets"]:
        row = page.locator(f'#buckets tr[data-bucket="{bucket["name"]}"]')
        cells = row.locator("td")
        assert cells.nth(3).get_attribute("data-value") == str(bucket["object_count"])
        assert cells.nth(4).get_attribute("data-value") == str(bucket["total_bytes"])
        assert f'{bucket["object_count"]:,}' in cells.nth(3).inner_text()
        bar = page.locator(f'#chart-buckets g[data-label="{bucket["name"]}"]')
        assert bar.get_attribute("data-value") == str(bucket["total_bytes"])
    classes: dict[str, int] = {}
    for bucket in report["buckets"]:
        for name, c in (bucket.get("storage_classes") or {}).items():
            classes[name] = classes.get(name, 0) + c["bytes"]
    shown = {g.get_attribute("data-label"): int(g.get_attribute("data-value"))
             for g in page.locator("#chart-classes g.bar").all()}
    assert shown == classes
    # the table sorts by a column when its header is clicked (descending on the second click)
    page.click("#buckets th:nth-child(5)")
    page.click("#buckets th:nth-child(5)")
    values = [int(v) for v in page.locator("#buckets tbody tr td:nth-child(5)").evaluate_all(
        "cells => cells.map(c => c.dataset.value)")]
    assert values == sorted(values, reverse=True)
    _shot(page, screenshots, "storage")
    assert page.outside_requests == []


def _run_left_waiting(airflow: Any, s3_server: Any, bucket: str, base: Path) -> str:
    """An upload run that failed nothing but left something waiting: a file dated in 2099, and the incomplete
    uploads it could not list (S3 refuses ListMultipartUploads once). Its id."""
    (base / "x" / "2099" / "01" / "01" / "00").mkdir(parents=True)
    (base / "x" / "2099" / "01" / "01" / "00" / "00-t.dat").write_bytes(b"later\n")
    s3_server.control("POST", "faults", {"mode": "denied", "operation": "ListMultipartUploads", "bucket": bucket,
                                         "count": 1})
    try:
        run_id = airflow.trigger("s3_upload", {"base_dir": str(base), "bucket": bucket})
        try:
            assert airflow.wait_run("s3_upload", run_id, timeout=240) == "success"
        finally:
            airflow.set_paused("s3_upload", True)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    return run_id


def test_uploads_page_matches_the_summaries(browser_page, airflow, s3, s3_server, demo_world, e2e_artifacts,
                                            screenshots, tmp_path):
    _ensure_runs(airflow, s3, s3_server, demo_world, e2e_artifacts, tmp_path)
    waiting = _run_left_waiting(airflow, s3_server, demo_world.upload_bucket, tmp_path / "waiting")
    summaries = {p.parent.name: json.loads(p.read_text()) for p in (e2e_artifacts / "s3_upload").glob("*/summary.json")}
    # a run that found nothing leaves no folder, only its line in the run index: it counts too
    from include.core import artifacts

    for period in artifacts.index_periods(e2e_artifacts, "s3_upload") or []:
        for entry in artifacts.read_period(e2e_artifacts, "s3_upload", period):
            summaries.setdefault(entry["run_id"], entry["doc"])
    page = browser_page
    page.goto(page.url.split("/s3ops/")[0] + "/s3ops/uploads")
    assert page.inner_text("#run-count") == str(len(summaries))
    for key in ("uploaded", "bytes", "malformed", "conflicts", "failed", "future_dated", "abort_failed"):
        assert page.get_attribute(f"[data-card={key}]", "data-value") == str(sum(s[key] for s in summaries.values()))
    for run_id, s in summaries.items():
        cells = page.locator(f'#uploads tr[data-run="{run_id}"] td')
        assert cells.nth(3).get_attribute("data-value") == str(s["uploaded"])
        assert cells.nth(6).get_attribute("data-value") == str(s["malformed"])
        assert cells.nth(9).get_attribute("data-value") == str(s["future_dated"])
        assert cells.nth(10).get_attribute("data-value") == str(s["abort_failed"])
    assert (summaries[waiting]["future_dated"], summaries[waiting]["abort_failed"]) == (1, 1)
    row = page.locator(f'#uploads tr[data-run="{waiting}"]')
    row.locator("details.future-dated summary").click()
    row.locator("details.abort-failed summary").click()
    assert "00-t.dat" in row.locator("details.future-dated").inner_text()
    assert "ahead of the clock" in row.locator("details.future-dated").inner_text()
    advice = row.locator("details.abort-failed").inner_text()
    assert "(listing the uploads)" in advice and "s3:ListBucketMultipartUploads" in advice, advice
    _shot(page, screenshots, "uploads")


def test_plans_page_shows_a_waiting_plan_with_its_approval_link(browser_page, airflow, s3, s3_server, e2e_artifacts,
                                                                screenshots, unique):
    from include.seed import deploy_objects

    bucket = unique("ui")
    s3.create_bucket(Bucket=bucket)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": deploy_objects("deploys/", datetime.now(UTC))})
    run_id = airflow.trigger("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 5,
                                                   "approval": "required"})
    airflow.wait_task("s3_deploy_cleanup", run_id, "approve", {"deferred"}, timeout=240)
    plan = json.loads((e2e_artifacts / "s3_deploy_cleanup" / run_id / "plan.json").read_text())
    try:
        page = browser_page
        page.goto(page.url.split("/s3ops/")[0] + "/s3ops/plans")
        section = page.locator(f'section.plan[data-run="{run_id}"]')
        assert section.get_attribute("data-status") == "awaiting approval"
        assert section.locator(".delete-count").get_attribute("data-value") == str(plan["delete_count"])
        assert section.locator(".delete-bytes").get_attribute("data-value") == str(plan["delete_bytes"])
        for key in plan["samples"][:3]:
            assert key in section.text_content()
        link = section.locator("a.approve-link")
        assert link.get_attribute("href") == f"/dags/s3_deploy_cleanup/runs/{run_id}/required_actions"
        for audit_path in list(e2e_artifacts.glob("s3_*/*/audit.json"))[:5]:  # runs of the other e2e tests
            shown = page.locator(f'section.plan[data-run="{audit_path.parent.name}"] .deleted-count')
            assert shown.get_attribute("data-value") == str(json.loads(audit_path.read_text())["deleted_count"])
        _shot(page, screenshots, "plans")
        # the same plan on the run's own page in Airflow, in the "S3 Ops" tab
        frame = _run_tab(page, "s3_deploy_cleanup", run_id)
        tab = frame.locator(f'section.plan[data-run="{run_id}"]')
        assert tab.locator(".delete-count").get_attribute("data-value") == str(plan["delete_count"])
        assert frame.locator("[data-approval]").get_attribute("data-approval") == "deferred"
        assert frame.locator('dd[data-limit="approval"]').inner_text() == "required (param)"  # settings.json
        assert frame.locator(".headline").inner_text() == plan["headline"]
        for key in plan["samples"][:3]:
            assert key in tab.text_content()
        _shot(page, screenshots, "run_plan")
        _dark_and_light(page, screenshots, "run_plan")
        page.goto(page.url.split("/dags/")[0] + "/s3ops/plans")
        link = page.locator(f'section.plan[data-run="{run_id}"] a.approve-link')
        # the link opens Airflow's own Required Actions page for this run
        link.click()
        page.wait_for_url(f"**/dags/s3_deploy_cleanup/runs/{run_id}/required_actions", timeout=60_000)
        page.wait_for_timeout(3000)
        _shot(page, screenshots, "required_actions")
    finally:
        assert airflow.answer("s3_deploy_cleanup", run_id, "Reject") == "success"


def _base(page: Any) -> str:
    for marker in ("/s3ops/", "/dags/", "/plugin/"):
        if marker in page.url:
            return page.url.split(marker)[0]
    return page.url.rstrip("/")


def _run_tab(page: Any, dag_id: str, run_id: str) -> Any:
    """Open the run's page in Airflow at its "S3 Ops" tab; returns the tab's frame."""
    page.goto(f"{_base(page)}/dags/{dag_id}/runs/{run_id}/plugin/s3ops_run")
    frame = page.frame_locator("iframe")
    frame.locator("#run-id").wait_for(timeout=60_000)
    assert frame.locator("#run-id").inner_text() == run_id
    assert page.get_by_text("S3 Ops").first.is_visible()  # the tab itself
    return frame


def _colours(page: Any, url: str) -> tuple[str, str]:
    """(background, text) colour of the S3 Ops page in the iframe of ``url``, once it has rendered."""
    page.goto(url)
    frame = page.frame_locator("iframe")
    frame.locator("header b").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    return tuple(frame.locator("body").evaluate(  # type: ignore[return-value]
        "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]"))


def _is_dark(rgb: str) -> bool:
    r, g, b = (int(x) for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3])
    return (r + g + b) / 3 < 100


def _dark_and_light(page: Any, screenshots: Path, name: str) -> None:
    """The tab follows Airflow's theme: the browser's dark preference, and a user's explicit choice."""
    url = page.url
    try:
        page.emulate_media(color_scheme="dark")
        bg, fg = _colours(page, url)
        assert _is_dark(bg) and not _is_dark(fg), (bg, fg)
        _shot(page, screenshots, f"{name}_dark")
        # light system, but Airflow set to dark by the user (its theme lives in localStorage "theme")
        page.emulate_media(color_scheme="light")
        page.evaluate("localStorage.setItem('theme', 'dark')")
        bg, _ = _colours(page, url)
        airflow_dark = page.evaluate("document.documentElement.classList.contains('dark')")
        assert airflow_dark and _is_dark(bg), (airflow_dark, bg)
    finally:
        page.evaluate("localStorage.removeItem('theme')")
        page.emulate_media(color_scheme="light")
    bg, fg = _colours(page, url)
    assert not _is_dark(bg) and _is_dark(fg), (bg, fg)


def test_run_tabs_show_the_report_and_the_upload_batches(browser_page, airflow, s3, s3_server, demo_world,
                                                       e2e_artifacts, screenshots, tmp_path):
    _ensure_runs(airflow, s3, s3_server, demo_world, e2e_artifacts, tmp_path)
    run_id, report = _latest_report(e2e_artifacts)
    page = browser_page
    frame = _run_tab(page, "s3_storage_report", run_id)
    assert frame.locator("#report-run").inner_text() == run_id
    assert frame.locator("[data-card=total_bytes]").get_attribute("data-value") == str(report["totals"]["total_bytes"])
    for bucket in report["buckets"]:
        cells = frame.locator(f'#buckets tr[data-bucket="{bucket["name"]}"] td')
        assert cells.nth(3).get_attribute("data-value") == str(bucket["object_count"])
    _shot(page, screenshots, "run_storage")

    upload_run = max((e2e_artifacts / "s3_upload").glob("*/summary.json"), key=lambda p: p.stat().st_mtime).parent
    summary = json.loads((upload_run / "summary.json").read_text())
    results = {p.stem: json.loads(p.read_text()) for p in (upload_run / "results").glob("*.json")}
    frame = _run_tab(page, "s3_upload", upload_run.name)
    assert frame.locator("[data-card=uploaded]").get_attribute("data-value") == str(summary["uploaded"])
    for batch, result in results.items():
        cells = frame.locator(f'#batches tr[data-batch="{batch}"] td')
        in_s3 = sum(r["status"] in ("uploaded", "already_present", "uploaded_not_deleted") for r in result["rows"])
        assert cells.nth(1).get_attribute("data-value") == str(in_s3)
    _shot(page, screenshots, "run_upload")


def test_nav_entry_opens_the_plugin_inside_airflow(browser_page, screenshots):
    page = browser_page
    base = page.url.split("/s3ops/")[0] if "/s3ops/" in page.url else page.url.split("/dags/")[0]
    page.goto(f"{base}/plugin/s3ops")
    frame = page.frame_locator("iframe")
    frame.locator("header b").wait_for(timeout=60_000)
    assert frame.locator("header b").inner_text() == "S3 Ops"
    assert page.get_by_text("S3 Ops").first.is_visible()
    page.wait_for_timeout(1500)
    _shot(page, screenshots, "airflow_nav")
    _dark_and_light(page, screenshots, "airflow_nav")
