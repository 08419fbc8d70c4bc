"""The "S3 Ops" plugin on the running Airflow: registered, and served only to authenticated users."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow

PAGES = ("storage", "plans", "uploads")


def test_plugin_is_registered_with_a_nav_entry(airflow):
    plugins = {p["name"]: p for p in airflow.get("/api/v2/plugins")["plugins"]}
    ui = plugins["s3ops_ui"]
    assert [a["url_prefix"] for a in ui["fastapi_apps"]] == ["/s3ops"]
    assert [(v["name"], v["href"], v["destination"]) for v in ui["external_views"]] == [
        ("S3 Ops", "/s3ops/storage", "nav"), ("S3 Ops", "/s3ops/run/{DAG_ID}/{RUN_ID}", "dag_run")]


def test_run_tab_answers_for_every_dag_and_refuses_path_tricks(airflow):
    other = airflow.http.get("/s3ops/run/some_other_dag/manual__1")
    assert other.status_code == 200 and 'id="not-s3ops"' in other.text
    missing = airflow.get("/s3ops/api/run/s3_retention/manual__never")
    assert missing["kind"] == "plan" and missing["plan"] is None
    for trick in ("%2E%2E", "%2E", "a%2Fb", "a%5Cb", "a%00b"):  # a run folder outside the DAG's folder: refused
        resp = airflow.http.get(f"/s3ops/api/run/s3_retention/{trick}")
        assert resp.status_code != 200 or resp.json()["kind"] == "bad_run_id", (trick, resp.text)


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_requests_are_refused(airflow, page):
    api = httpx.get(f"{airflow.base_url}/s3ops/api/{page}", timeout=30)
    assert api.status_code == 401, api.text
    browser = httpx.get(f"{airflow.base_url}/s3ops/{page}", headers={"Accept": "text/html"}, timeout=30)
    assert browser.status_code == 302 and "/auth/login" in browser.headers["location"]
    forged = httpx.get(f"{airflow.base_url}/s3ops/api/{page}", headers={"Authorization": "Bearer not.a.jwt"}, timeout=30)
    assert forged.status_code in (401, 403)
    assert "S3 Ops" not in browser.text + forged.text


@pytest.mark.parametrize("page", PAGES)
def test_authenticated_users_are_served(airflow, page):
    html = airflow.http.get(f"/s3ops/{page}")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "<b>S3 Ops</b>" in html.text
    cookie = httpx.get(f"{airflow.base_url}/s3ops/api/{page}", cookies={"_token": airflow.token}, timeout=30)
    assert cookie.status_code == 200 and isinstance(cookie.json(), dict)
