"""Shared test harness: real local servers (session-scoped), an isolated Airflow, ``dag.test()`` helpers.

Airflow reads its settings when first imported, so the isolated AIRFLOW_HOME is set here, at import
time, before any test module imports airflow. Servers start lazily: a unit test run starts none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.stack import LOCAL_AWS_KEY, LOCAL_AWS_SECRET, LOCAL_REGION, STATE, LocalStack, airflow_env  # noqa: E402

STATE.mkdir(exist_ok=True)
RUN_DIR = Path(tempfile.mkdtemp(prefix="pytest-", dir=STATE))
os.environ.update(airflow_env(RUN_DIR / "airflow"))
os.environ["S3OPS_ARTIFACT_ROOT"] = str(RUN_DIR / "artifacts")
# Never let a test reach real AWS: dummy credentials, and no profile or CA bundle from the host.
for var in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN"):
    os.environ.pop(var, None)
os.environ.update(AWS_ACCESS_KEY_ID=LOCAL_AWS_KEY, AWS_SECRET_ACCESS_KEY=LOCAL_AWS_SECRET, AWS_DEFAULT_REGION=LOCAL_REGION)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true", help="skip tests marked slow (e2e, crash loops, scale-out)")


def _is_e2e(nodeid: str) -> bool:
    return nodeid.startswith("tests/e2e/")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (make test) the e2e tests go to one worker and every other test to the other:
    the session's one `airflow standalone` serves all e2e tests, and its S3 server never sees another
    test's buckets or injected faults (a storage report run lists every bucket there). xdist's own
    ``--dist loadgroup`` with ``xdist_group`` marks did not keep them apart here (pytest 9.2, xdist 3.8:
    no node id got its group, and both workers ran tests of both kinds), so the two scopes are named here
    (whatever ``--dist`` says)."""
    from xdist.scheduler import LoadScopeScheduling

    class E2eApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "e2e" if _is_e2e(nodeid) else "servers"

    return E2eApart(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--fast"):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under pytest-xdist the worker of the non-e2e tests runs at a lower CPU priority (nice 10, its servers
    and dag.test runs too: they inherit it), so on a 2-core machine the e2e standalone's scheduler and
    task processes are never starved by it: e2e tests mostly wait on Airflow, and that waiting time is
    what the other worker uses."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) < 2 or not hasattr(os, "setpriority"):
        return  # one process: nothing to give way to
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0 if _is_e2e(item.nodeid) else 10)
    except PermissionError:  # lowering it again needs root; a worker runs one kind only, so this is rare
        pass


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("S3OPS_KEEP_STATE") != "1":
        shutil.rmtree(RUN_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """The S3 server and MariaDB, started once per session; their Airflow connections are set."""
    local = LocalStack(RUN_DIR / "stack").start()
    saved = dict(os.environ)
    env = local.env()
    env.pop("PYTHONPATH", None)
    env.pop("S3OPS_ARTIFACT_ROOT", None)
    env.pop("AIRFLOW_HOME", None)
    os.environ.update(env)
    try:
        yield local
    finally:
        local.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def s3_server(stack: LocalStack) -> Any:
    assert stack.s3 is not None
    return stack.s3


@pytest.fixture(scope="session")
def mysql_server(stack: LocalStack) -> Any:
    assert stack.mysql is not None
    return stack.mysql


@pytest.fixture(scope="session")
def s3(s3_server: Any) -> Any:
    """A plain boto3 client on the local server, for arranging and checking (not the code under test)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=s3_server.endpoint_url, region_name=LOCAL_REGION,
        aws_access_key_id=LOCAL_AWS_KEY, aws_secret_access_key=LOCAL_AWS_SECRET,
        config=Config(retries={"mode": "standard", "max_attempts": 10}, s3={"addressing_style": "path"}),
    )


@pytest.fixture
def mysql_conn(mysql_server: Any) -> Iterator[Any]:
    conn = mysql_server.connect()
    conn.cursor().execute("SET time_zone = '+00:00'")
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="session")
def demo_world(s3: Any, s3_server: Any, mysql_server: Any) -> Any:
    """The demo world (include/seed.py) in S3 and MySQL, seeded once. Tests must not modify it:
    a test that deletes or changes data seeds its own bucket or table."""
    from include.seed import DemoWorld, reference_job_rows, seed_jobs, seed_s3

    world = DemoWorld()
    seed_s3(s3, world, control=s3_server.control)
    conn = mysql_server.connect()
    try:
        seed_jobs(conn, reference_job_rows(datetime.now().astimezone()), table=world.jobs_table)
    finally:
        conn.close()
    return world


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB in the isolated AIRFLOW_HOME (once per session)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env={**os.environ}, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return home


class DagRunResult:
    """A finished ``dag.test()`` run: its state, task states and XCom return values."""

    def __init__(self, dag_run: Any) -> None:
        self.dag_run = dag_run
        self.run_id: str = dag_run.run_id
        self.dag_id: str = dag_run.dag_id
        self.state: str = str(dag_run.state)

    def _by_task(self, column: str) -> dict[tuple[str, int], Any]:
        """``column`` of every task instance of the run, by (task_id, map_index)."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(TaskInstance.task_id, TaskInstance.map_index, getattr(TaskInstance, column)).where(
                    TaskInstance.dag_id == self.dag_id, TaskInstance.run_id == self.run_id
                )
            ).all()
        return {(task_id, map_index): value for task_id, map_index, value in rows}

    def task_states(self) -> dict[tuple[str, int], str]:
        return {key: str(state) for key, state in self._by_task("state").items()}

    def try_numbers(self) -> dict[tuple[str, int], int]:
        """Which try each task instance ended on (2: it was retried once)."""
        return self._by_task("try_number")

    def xcom(self, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == self.dag_id, XComModel.run_id == self.run_id,
                    XComModel.task_id == task_id, XComModel.map_index == map_index, XComModel.key == key,
                )
            ).first()
            if row is None:
                raise KeyError(f"no XCom {key!r} for {task_id}[{map_index}] in {self.run_id}")
            return XComModel.deserialize_value(row)

    def artifacts(self) -> Path:
        """This run's artifact folder (``<root>/<dag_id>/<run_id>``)."""
        return Path(os.environ["S3OPS_ARTIFACT_ROOT"]) / self.dag_id / self.run_id


def triggers_served_like_the_triggerer() -> Any:
    """Let ``dag.test()``'s inline triggers read and write their task's HITL record, as the triggerer lets them.

    ``dag.test()`` runs a deferred task's trigger in-process (``airflow/sdk/definitions/dag.py``,
    ``_run_inline_trigger``) under ``InProcessTestSupervisor``, whose request handler is a worker's: it does not
    serve ``GetHITLDetailResponse`` and ``UpdateHITLDetail`` (``airflow/sdk/execution_time/supervisor.py``,
    ``ActivitySubprocess._handle_request`` answers "Unhandled request"), so no HITL trigger, the provider's
    ``HITLTrigger`` included, can run under ``dag.test()``. The triggerer serves both with two calls to the
    execution API (``airflow/jobs/triggerer_job_runner.py``, ``TriggerRunnerSupervisor._handle_request``);
    this patch adds exactly those two calls, through the same in-process execution API and metadata DB."""
    from unittest import mock

    from airflow.sdk.execution_time.comms import GetHITLDetailResponse, UpdateHITLDetail
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    worker_handler = InProcessTestSupervisor._handle_request

    def handle(self: Any, msg: Any, log: Any, req_id: int) -> None:
        if isinstance(msg, UpdateHITLDetail):
            resp = self.client.hitl.update_response(ti_id=msg.ti_id, chosen_options=msg.chosen_options,
                                                    params_input=msg.params_input)
        elif isinstance(msg, GetHITLDetailResponse):
            resp = self.client.hitl.get_detail_response(ti_id=msg.ti_id)
        else:
            return worker_handler(self, msg, log, req_id)
        self.send_msg(resp, request_id=req_id)

    return mock.patch.object(InProcessTestSupervisor, "_handle_request", handle)


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``deployment("s3ops_retention", approval="auto")``: set keys of a DAG's Airflow Variable for this test
    (through ``AIRFLOW_VAR_…``, merged with what is set), as a deployer would. The safety settings
    (approval, approvers, limits, dry_run) can only be loosened there, not by a run's conf."""
    import json

    def _set(variable: str, **values: Any) -> None:
        env = f"AIRFLOW_VAR_{variable.upper()}"
        monkeypatch.setenv(env, json.dumps({**json.loads(os.environ.get(env) or "{}"), **values}))

    return _set


@pytest.fixture
def run_dag(airflow_db: Path, stack: LocalStack) -> Any:
    """``run_dag(dag_id, conf, logical_date=…, mark_success_pattern=…, retries=…)`` runs the DAG with
    ``dag.test()`` against the local servers and returns a :class:`DagRunResult` (failed runs do not raise).
    ``retries`` replaces every task's retries, retried at once (the DAG's own backoff waits minutes). A
    deferred task's trigger runs in-process and may use its HITL record (:func:`triggers_served_like_the_triggerer`)."""
    from airflow.dag_processing.dagbag import DagBag

    def _run(
        dag_id: str, conf: dict[str, Any] | None = None, *, logical_date: datetime | None = None,
        mark_success_pattern: str | None = None, retries: int | None = None,
    ) -> DagRunResult:
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"no DAG {dag_id!r} in dags/"
        if retries is not None:
            for task in dag.tasks:
                task.retries, task.retry_delay, task.retry_exponential_backoff = retries, timedelta(0), 0
        kwargs: dict[str, Any] = {"run_conf": conf or {}}
        if logical_date is not None:
            kwargs["logical_date"] = logical_date
            kwargs["run_after"] = logical_date
        if mark_success_pattern:
            kwargs["mark_success_pattern"] = mark_success_pattern
        with triggers_served_like_the_triggerer():
            return DagRunResult(dag.test(**kwargs))

    return _run


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free local port that keeps every message it receives."""

    def __init__(self) -> None:
        import threading

        from aiosmtpd.controller import Controller

        from scripts.stack import free_port

        self.messages: list[Any] = []
        self._lock = threading.Lock()
        self.port = free_port()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
                from email import message_from_bytes, policy

                msg = message_from_bytes(envelope.original_content, policy=policy.default)
                with sink._lock:
                    sink.messages.append({"to": list(envelope.rcpt_tos), "from": envelope.mail_from,
                                          "subject": str(msg["subject"]), "body": _text_of(msg), "raw": msg})
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def conn_uri_json(self) -> str:
        """``AIRFLOW_CONN_SMTP_DEFAULT`` for this sink (plain SMTP, no TLS, a sender address)."""
        import json

        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "s3ops@localhost",
                                     "retry_limit": 0, "timeout": 10}})

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Any]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.2)
        with self._lock:
            return list(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


def _text_of(msg: Any) -> str:
    parts = [p for p in msg.walk() if p.get_content_maintype() == "text"] if msg.is_multipart() else [msg]
    return "\n".join(str(p.get_content()) for p in parts)


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()


@pytest.fixture
def mailbox(smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> SmtpSink:
    """The SMTP sink, emptied, with ``smtp_default`` pointing at it for this test."""
    smtp_sink.clear()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_sink.conn_uri_json())
    return smtp_sink
