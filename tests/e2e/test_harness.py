"""The harness itself: a standalone Airflow comes up, its API needs a token, it stops without leftovers."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from tests.e2e.airflow_api import AirflowError

pytestmark = pytest.mark.slow


def test_api_requires_a_token(airflow):
    anonymous = httpx.get(f"{airflow.base_url}/api/v2/dags", timeout=30)
    assert anonymous.status_code == 401
    assert "dags" in airflow.get("/api/v2/dags")


def test_a_stopped_component_fails_the_next_wait_at_once_and_a_restart_recovers(standalone, airflow):
    """airflow standalone never restarts a component that died. The client must then fail at once, naming
    it and showing its last log lines, instead of waiting out every later test's timeout; restart()
    brings the standalone back on the same port, with the old API tokens still valid."""
    scheduler = next(p for p in psutil.Process(standalone.proc.pid).children()
                     if "scheduler" in p.cmdline()[1:3])
    scheduler.kill()  # it stays a zombie: standalone reaps it only when its output pipe closes
    deadline = time.monotonic() + 30
    while standalone.components_down() != ["scheduler"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert standalone.components_down() == ["scheduler"]

    airflow._next_alive_check = 0.0  # look now, not after the 10 s the client waits between looks
    with pytest.raises(AirflowError, match="scheduler no longer running") as failed:
        airflow.runs("s3_storage_report")
    assert "--- scheduler (last" in str(failed.value)

    standalone.restart()
    assert standalone.components_down() == []
    assert "dags" in airflow.get("/api/v2/dags")  # the token from before the restart
