"""End-to-end fixtures: ONE ``airflow standalone`` per session on the local S3 + MariaDB stack.

Every e2e test is ``@pytest.mark.slow``. The standalone gets the stack's connections
(``AIRFLOW_CONN_AWS_DEFAULT`` / ``AIRFLOW_CONN_MYSQL_DEFAULT``), its own ``AIRFLOW_HOME`` and artifact root
under the session's ``.s3ops/`` folder, and is stopped (whole process group) at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.stack import LocalStack, free_port
from tests.conftest import RUN_DIR
from tests.e2e.airflow_api import ADMIN, APPROVER, AirflowClient, AirflowStandalone
from tests.postgres import PostgresServer

E2E_DIR = RUN_DIR / "e2e"
# outside the per-session folder (which is removed at the end) so CI can keep them as artifacts
SCREENSHOTS = RUN_DIR.parent / "e2e-screenshots"
DAG_IDS = ("s3_storage_report", "s3_upload", "s3_retention", "s3_deploy_cleanup")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: they look at what the other e2e tests' runs left in the artifact store."""
    items.sort(key=lambda item: "browser" in item.nodeid)


@pytest.fixture(scope="session")
def e2e_artifacts() -> Path:
    """The artifact root the standalone's tasks write to (``S3OPS_ARTIFACT_ROOT``)."""
    return E2E_DIR / "artifacts"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[PostgresServer]:
    """The standalone's metadata database (see ``AirflowStandalone``: not SQLite)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def standalone(stack: LocalStack, e2e_artifacts: Path, smtp_sink: Any, airflow_db: PostgresServer
               ) -> Iterator[AirflowStandalone]:
    env = {k: v for k, v in stack.env().items() if k.startswith(("AIRFLOW_CONN_", "S3OPS_", "AWS_"))}
    env["S3OPS_ARTIFACT_ROOT"] = str(e2e_artifacts)
    env["AIRFLOW_CONN_SMTP_DEFAULT"] = smtp_sink.conn_uri_json()  # notifications land in the local sink
    env["S3OPS_PROGRESS_SECONDS"] = "0"  # a progress line at every page/request/file: tests see several
    server = AirflowStandalone(E2E_DIR / "airflow", free_port(), env, database_url=airflow_db.url)
    try:
        server.start(timeout=420)  # a loaded 2-core machine needs minutes to import Airflow 5 times
        yield server
    finally:
        server.stop()
        if os.environ.get("S3OPS_KEEP_STATE") == "1":
            shutil.copy(server.log_path, E2E_DIR / "standalone.log")


@pytest.fixture(autouse=True)
def _standalone_running(request: pytest.FixtureRequest) -> None:
    """Before each test of the standalone: if one of its components stopped (the test that saw it failed
    at once, with that component's last log lines), start it again, so one crash fails one test, not
    every test after it. Each restart is a warning in the session summary."""
    if not {"airflow", "approver", "standalone"} & set(request.fixturenames):
        return
    server: AirflowStandalone = request.getfixturevalue("standalone")
    down = server.components_down()
    if down:
        warnings.warn(f"airflow standalone restarted before {request.node.nodeid}: {', '.join(down)} had stopped\n"
                      f"{server.diagnostics()}", stacklevel=1)
        server.restart()


@pytest.fixture(scope="session")
def airflow(standalone: AirflowStandalone) -> AirflowClient:
    """REST API v2 client, logged in as the admin. Tests wait for their own DAG (``trigger`` does), so
    one DAG with an import error fails only its own tests."""
    return AirflowClient(standalone.base_url, ADMIN, standalone.password, server=standalone)


@pytest.fixture(scope="session")
def approver(standalone: AirflowStandalone) -> AirflowClient:
    """REST API v2 client logged in as the second user (role "user"), who answers approval requests: the
    admin triggers the runs and, with separate_approver on, may not approve them."""
    return AirflowClient(standalone.base_url, APPROVER, standalone.approver_password, server=standalone)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Any:
    """``unique("name")`` → a bucket/table-safe name unique to this test."""
    import uuid

    def make(prefix: str) -> str:
        return f"e2e-{prefix}-{uuid.uuid4().hex[:8]}"

    return make
