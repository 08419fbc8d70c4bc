"""The harness itself: a standalone Airflow comes up, its API needs a token, it stops without leftovers."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_api_requires_a_token(airflow):
    anonymous = httpx.get(f"{airflow.base_url}/api/v2/dags", timeout=30)
    assert anonymous.status_code == 401
    assert "dags" in airflow.get("/api/v2/dags")
