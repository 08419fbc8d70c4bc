"""The docker compose topology, as local processes: PostgreSQL + Redis + CeleryExecutor, the scheduler,
the dag-processor, the api-server and N Celery workers with distinct names.

Used by ``test_celery_topology.py`` to prove, without Docker, that the deployment in
``docker-compose.yaml`` scales out. Everything binds 127.0.0.1 on free ports and lives in one temporary
folder that :meth:`CeleryTopology.stop` removes, with every process it started.

PostgreSQL is ``tests.postgres.PostgresServer``. Redis and PostgreSQL come from the system (``make bootstrap``
installs them).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import tools
from scripts.stack import ROOT, StackError, _stop, _wait, free_port
from tests.postgres import PostgresServer

VENV_BIN = Path(sys.executable).parent
# Each worker reports this name as TaskInstance.hostname (both run on one machine, so the FQDN
# would not tell them apart); in docker compose every worker container has its own hostname.
HOSTNAME_MODULE = "import os\n\ndef hostname():\n    return os.environ['S3OPS_WORKER_NAME']\n"


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process and everything it started (each component runs in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def check_celery() -> None:
    """Fail in one line when the installed Celery cannot run Airflow's Celery executor."""
    try:
        from airflow.providers.celery.executors import celery_executor_utils  # noqa: F401
    except ImportError as exc:
        import celery

        raise StackError(
            f"the Celery provider cannot import with celery {celery.__version__} ({exc}); "
            "requirements.txt pins a compatible celery: run `make bootstrap`"
        ) from exc


@dataclass
class CeleryTopology:
    """Start with :meth:`start`, always :meth:`stop` (also on failure)."""

    dags_folder: Path
    workers: tuple[str, ...] = ("w1", "w2")
    worker_concurrency: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    # An airflow_local_settings.py (cluster policies) for $AIRFLOW_HOME/config, as docker compose mounts it.
    local_settings: Path | None = None
    tmp: Path = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    postgres: PostgresServer | None = None
    api_port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    _token: str = ""

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> CeleryTopology:
        check_celery()
        self.tmp = Path(tempfile.mkdtemp(prefix="s3ops-topo-", dir="/tmp"))  # short paths, outside the checkout
        (self.tmp / "logs").mkdir()
        try:
            self.postgres = PostgresServer().start()
            redis_url = self._start_redis()
            self.env = self._airflow_env(self.postgres.url, redis_url)
            migrate = subprocess.run(
                [str(VENV_BIN / "airflow"), "db", "migrate"], env=self.env, cwd=self.tmp,
                capture_output=True, text=True, timeout=600,
            )
            if migrate.returncode != 0:
                raise StackError(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}\n{migrate.stderr[-2000:]}")
            self._spawn("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"])
            self._spawn("scheduler", ["scheduler"])
            self._spawn("dag-processor", ["dag-processor"])
            for name in self.workers:
                self._spawn(
                    f"worker-{name}",
                    ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
                     str(self.worker_concurrency), "--skip-serve-logs"],
                    env={"S3OPS_WORKER_NAME": name},
                )
            _wait(self._api_up, "the api-server", 180, self.procs["api-server"], self.tmp / "logs" / "api-server.log")
            for name in self.workers:
                log = self.tmp / "logs" / f"worker-{name}.log"
                _wait(lambda log=log: " ready." in log.read_text(errors="replace"), f"Celery worker {name}", 180,
                      self.procs[f"worker-{name}"], log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # Airflow first, all at once (runs are over: nothing to finish gracefully), the databases last.
        airflow = [p for n, p in self.procs.items() if n != "redis"]
        for proc in airflow:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in airflow:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        if "redis" in self.procs:
            _stop(self.procs["redis"], timeout=20)
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        self.procs.clear()
        if getattr(self, "tmp", None) and os.environ.get("S3OPS_KEEP_STATE") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> CeleryTopology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- servers
    def _start_redis(self) -> str:
        port = free_port()
        log = self.tmp / "logs" / "redis.log"
        self.procs["redis"] = subprocess.Popen(
            [tools.require("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)],
            cwd=self.tmp, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

        def ready() -> bool:
            import redis

            return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping())

        _wait(ready, "Redis", 30, self.procs["redis"], log)
        return f"redis://127.0.0.1:{port}/0"

    # ---------------------------------------------------------------- airflow
    def _airflow_env(self, pg_url: str, redis_url: str) -> dict[str, str]:
        home = self.tmp / "airflow"
        home.mkdir()
        (self.tmp / "pylib").mkdir()
        (self.tmp / "pylib" / "s3ops_topology_host.py").write_text(HOSTNAME_MODULE)
        if self.local_settings is not None:
            (home / "config").mkdir()
            shutil.copy(self.local_settings, home / "config" / "airflow_local_settings.py")
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps({"admin": self.password}))
        keep = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        return {
            **keep,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), str(self.tmp / "pylib"), os.environ.get("PYTHONPATH", "")) if p
            ),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url,
            "AIRFLOW__CELERY__BROKER_URL": redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg_url}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self._reserve_api_port()}/execution/",
            # Every component must agree on these, as in docker compose (.env).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "s3ops_topology_host.hostname",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "S3OPS_WORKER_NAME": "scheduler",
            "S3OPS_ARTIFACT_ROOT": str(self.artifact_root),
            **self.extra_env,
        }

    @property
    def artifact_root(self) -> Path:
        """Shared by every component, as the artifacts volume is in docker compose."""
        return self.tmp / "artifacts"

    def _reserve_api_port(self) -> int:
        self.api_port = self.api_port or free_port()
        return self.api_port

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = self.tmp / "logs" / f"{name}.log"
        self.procs[name] = subprocess.Popen(
            [str(VENV_BIN / "airflow"), *args], env={**self.env, **(env or {})}, cwd=self.tmp,
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def logs(self) -> str:
        """The tail of every component's log, for assertion messages."""
        logs = sorted((self.tmp / "logs").glob("*.log")) + ([self.postgres.log] if self.postgres else [])
        return "\n".join(f"--- {p.stem}\n{_tail(p, 1500)}" for p in logs)

    # ---------------------------------------------------------------- REST API v2
    def _api_up(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/v2/version", timeout=5) as resp:
            return resp.status == 200

    def api(self, method: str, path: str, body: Any = None) -> Any:
        if not self._token:
            self._token = self._request("POST", "/auth/token", {"username": "admin", "password": self.password},
                                        auth=False)["access_token"]
        return self._request(method, f"/api/v2{path}", body)

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
        )
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path} -> {exc.code}: {exc.read()[:1000]!r}") from exc

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the dag-processor has parsed ``dag_id`` into the metadata DB."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/dags/{dag_id}")
                return
            except AssertionError:
                time.sleep(1)
        raise AssertionError(f"DAG {dag_id} never appeared within {timeout:.0f} s\n{self.logs()}")

    def run(self, dag_id: str, conf: dict[str, Any], run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Unpause, trigger through REST v2 and wait for a final state; returns the DAG run."""
        self.wait_for_dag(dag_id)
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        self.api("POST", f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(2)
        raise AssertionError(f"{dag_id} run {run_id} did not finish within {timeout:.0f} s\n{self.logs()}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]
