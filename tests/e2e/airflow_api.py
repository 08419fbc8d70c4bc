"""A real ``airflow standalone`` for the end-to-end tests, and a small client for its REST API v2.

The standalone runs in its own process group (scheduler, dag-processor, api-server, triggerer and every
task process inherit it), so :meth:`AirflowStandalone.stop` can stop all of it and then check that
nothing of it is left. Tests talk to Airflow only through the REST API (``AirflowClient``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ADMIN = "admin"
#: a second user (role "user") who answers approval requests: the admin triggers runs and, with
#: separate_approver on, may not approve them
APPROVER = "approver"

FINISHED = {"success", "failed"}
#: the processes ``airflow standalone`` starts (``airflow <component>``) and never restarts
COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")

# Watches the test process and the standalone's process group: if the test process dies without
# stopping the standalone (killed, Ctrl-C twice), it kills the group. Exits once the group is gone.
_REAPER = """
import os, signal, sys, time
parent, pgid = int(sys.argv[1]), int(sys.argv[2])
def alive(pid, group=False):
    try:
        (os.killpg if group else os.kill)(pid, 0)
        return True
    except ProcessLookupError:
        return False
while alive(pgid, group=True):
    if not alive(parent):
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            time.sleep(wait)
        break
    time.sleep(1)
"""


class AirflowError(AssertionError):
    """The running Airflow did not do what the test waited for (with the server log's tail)."""


E2E_MAX_ATTEMPTS = 3  # AWS_MAX_ATTEMPTS of the standalone's task processes


class AirflowStandalone:
    """``airflow standalone`` with an isolated ``AIRFLOW_HOME``, on a free port, with known passwords.

    ``database_url`` is its metadata database (the e2e tests give it a PostgreSQL server: on SQLite a
    scheduler under load can die of "database is locked", and standalone never restarts a component).
    ``env`` is added to the process environment (connections, artifact root, …)."""

    def __init__(self, home: Path, port: int, env: dict[str, str], database_url: str | None = None) -> None:
        self.home = home
        self.port = port
        self.database_url = database_url
        self.password = uuid.uuid4().hex
        self.approver_password = uuid.uuid4().hex
        # airflow.cfg would keep a generated one across restart() too; explicit, so tokens surely stay valid
        self.jwt_secret = secrets.token_urlsafe(32)
        self.restarts = 0
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = home / "standalone.log"
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.reaper: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({ADMIN: self.password, APPROVER: self.approver_password}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__DATABASE__")}
        env.update(self.extra_env)
        if self.database_url:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.database_url
        env.update(
            {
                # standalone launches its components as `airflow …` by name
                "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
                "PYTHONPATH": str(ROOT),
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin,{APPROVER}:user",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                # DAGs start paused: a test unpauses exactly the DAGs it runs (scheduled runs would race it)
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "NO_COLOR": "1",  # component names uncoloured: diagnostics() groups the log by them
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,  # also where task processes find the execution API
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
                # the S3 clients' attempts (AWS's own variable): a test that fails every one of them waits
                # through 2 backoffs, not 9 (~1.5 s instead of ~85 s on average)
                "AWS_MAX_ATTEMPTS": str(E2E_MAX_ATTEMPTS),
            }
        )
        return env

    def start(self, timeout: float = 420) -> AirflowStandalone:  # 2 shared cores can take minutes
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "standalone"],
            cwd=ROOT, env=env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every component and task
        )
        self.reaper = subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid()), str(self.proc.pid)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AirflowError(f"airflow standalone exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._healthy():
                return self
            time.sleep(1)
        self.stop()
        raise AirflowError(f"airflow standalone not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return all(
            health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
        )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def components_down(self) -> list[str]:
        """The standalone's components (``airflow scheduler`` …, each a child process) not running now."""
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return list(COMPONENTS)
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:  # exited since poll()
            return list(COMPONENTS)
        running: set[str] = set()
        for child in children:
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
                # `…/python …/airflow scheduler`; the api-server retitles itself `airflow api_server -- …`
                args = " ".join(child.cmdline()[:3]).replace("_", "-").split()
            except psutil.Error:  # gone while we looked
                continue
            running.update(c for c in COMPONENTS if c in args)
        return [c for c in COMPONENTS if c not in running]

    def diagnostics(self, lines: int = 25) -> str:
        """What explains a stuck run: the components that are down, the health endpoint's answer, and the
        last lines each component logged (the api-server's access lines left out: polling floods them)."""
        try:
            health: Any = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            health = f"unavailable ({exc})"
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        own: dict[str, list[str]] = {}
        for line in text.splitlines():
            name = line.split("|", 1)[0].strip()
            if "[http.access]" not in line:  # lines of no component (tracebacks, set-up) go with standalone's
                own.setdefault(name if name in COMPONENTS else "standalone", []).append(line[:600])
        parts = [f"components down: {self.components_down() or 'none'}; restarts so far: {self.restarts}",
                 f"health: {json.dumps(health, default=str)}"]
        parts += [f"--- {name} (last {lines} lines) ---\n" + "\n".join(own[name][-lines:]) for name in sorted(own)]
        return "\n".join(parts)

    def restart(self) -> None:
        """Stop and start again on the same home, port, database and passwords (API tokens stay valid).
        The old log is kept beside the new one."""
        self.stop()
        self.restarts += 1
        if self.log_path.exists():
            self.log_path.rename(self.log_path.with_suffix(f".{self.restarts}.log"))
        self.start()

    def stop(self, grace: float = 15) -> None:
        """SIGINT to the whole process group, then SIGKILL whatever is left; asserts nothing survives."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(pgid):
                if self.proc.poll() is None:
                    try:
                        self.proc.wait(0.5)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.2)
            if not _group_alive(pgid):
                break
        if self.proc.poll() is None:
            self.proc.wait(5)
        assert not _group_alive(pgid), f"processes of airflow standalone (group {pgid}) survived SIGKILL"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of already-dead children still count for killpg(0); look at their state
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _free_port() -> int:
    from scripts.stack import free_port

    return free_port()


class AirflowClient:
    """The REST API v2 of a running Airflow, authenticated with a token from ``POST /auth/token``."""

    def __init__(self, base_url: str, username: str, password: str, server: AirflowStandalone | None = None) -> None:
        self.base_url = base_url
        self.server = server
        token = httpx.post(f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=30)
        assert token.status_code in (200, 201), f"POST /auth/token: {token.status_code} {token.text}"
        self.token: str = token.json()["access_token"]
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        self._next_alive_check = 0.0

    def _fail(self, message: str) -> AirflowError:
        extra = self.server.diagnostics() if self.server else ""
        return AirflowError(f"{message}\n--- airflow standalone ---\n{extra}")

    def _check_alive(self) -> None:
        """Fail at once (not at a wait's timeout) when a component of the standalone has stopped: nothing
        would schedule, run or resume the tasks waited for. Looked at every 10 s at most."""
        if self.server is None or time.monotonic() < self._next_alive_check:
            return
        self._next_alive_check = time.monotonic() + 10
        down = self.server.components_down()
        if down:
            raise self._fail(f"airflow standalone: {', '.join(down)} no longer running")

    def get(self, path: str, **params: Any) -> Any:
        for attempt in range(3):  # a GET is safe to repeat; an overloaded API server may answer late
            try:
                resp = self.http.get(path, params=params or None)
                break
            except httpx.TimeoutException:
                if attempt == 2:
                    raise
        else:  # pragma: no cover - the loop always breaks or raises
            raise AssertionError("unreachable")
        assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text[:2000]}"
        return resp.json()

    # DAGs ----------------------------------------------------------------------------------------
    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120) -> None:
        """Wait until the dag-processor has parsed (serialized) every DAG in ``dag_ids``; fails at once
        with the traceback when one of their files has an import error."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            found = {d["dag_id"] for d in self.get("/api/v2/dags", limit=100)["dags"]}
            if wanted <= found:
                return
            errors = [e for e in self.get("/api/v2/importErrors")["import_errors"]
                      if Path(e["filename"]).stem in wanted - found]
            if errors:
                raise AirflowError("import errors:\n" + "\n".join(f"{e['filename']}: {e['stack_trace']}" for e in errors))
            if time.monotonic() > deadline:
                raise self._fail(f"DAGs not parsed within {timeout:.0f} s: {sorted(wanted - found)}")
            time.sleep(2)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        resp = self.http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": paused})
        assert resp.status_code == 200, f"PATCH dag {dag_id}: {resp.status_code} {resp.text}"

    # Runs ----------------------------------------------------------------------------------------
    def trigger_raw(self, dag_id: str, conf: dict[str, Any], *, run_id: str | None = None,
                    logical_date: str | None = None) -> httpx.Response:
        self.wait_for_dags([dag_id])
        body = {"dag_run_id": run_id or f"e2e__{uuid.uuid4().hex[:12]}", "logical_date": logical_date, "conf": conf}
        return self.http.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)

    def trigger(self, dag_id: str, conf: dict[str, Any], **kwargs: Any) -> str:
        """Unpause ``dag_id`` (manual runs stay queued on a paused DAG) and trigger a run; returns its id."""
        self.wait_for_dags([dag_id])
        self.set_paused(dag_id, False)
        resp = self.trigger_raw(dag_id, conf, **kwargs)
        assert resp.status_code == 200, f"trigger {dag_id}: {resp.status_code} {resp.text}"
        return str(resp.json()["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The run; while it is still queued, scheduled runs of its DAG are stopped (see below)."""
        self._check_alive()
        run = dict(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))
        if run["state"] == "queued" and run["run_type"] != "scheduled":
            self.stop_scheduled_runs(dag_id)
        return run

    def stop_scheduled_runs(self, dag_id: str) -> list[str]:
        """Mark failed the scheduled runs that unpausing created (no conf: they would fail and retry with
        backoff, or list everything) so they do not hold the DAG's ``max_active_runs`` slot a test's run
        waits for. Tests of the schedule itself do not use this."""
        stopped = []
        for r in self.runs(dag_id, run_type=["scheduled"], state=["queued", "running"]):
            resp = self.http.patch(f"/api/v2/dags/{dag_id}/dagRuns/{r['dag_run_id']}", json={"state": "failed"})
            if resp.status_code == 200:
                stopped.append(r["dag_run_id"])
        return stopped

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 180, states: set[str] = FINISHED) -> str:
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            state = str(self.run(dag_id, run_id)["state"])
            if state in states:
                return state
            time.sleep(1)
        raise self._fail(f"{dag_id}/{run_id} still {state!r} after {timeout:.0f} s; tasks: {self.task_states(dag_id, run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        return {(t["task_id"], t["map_index"]): t["state"] for t in self.task_instances(dag_id, run_id)}

    def wait_task(self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = {s for (t, _), s in self.task_states(dag_id, run_id).items() if t == task_id}
            if now & states:
                return next(iter(now & states))
            if self.run(dag_id, run_id)["state"] in FINISHED:
                break
            time.sleep(1)
        raise self._fail(f"{dag_id}/{run_id}: {task_id} never reached {states}; tasks: {self.task_states(dag_id, run_id)}")

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        entry = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            map_index=map_index, deserialize=True,
        )
        return entry["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log as text (the API returns structured JSON lines). A 404 right after the task
        finished is asked again for a few seconds (the API may not show the try yet)."""
        for _ in range(5):
            resp = self.http.get(
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                params={"map_index": map_index, "full_content": True}, headers={"Accept": "application/json"},
            )
            if resp.status_code != 404:
                break
            time.sleep(2)
        assert resp.status_code == 200, f"log of {task_id}: {resp.status_code} {resp.text[:500]}"
        content = resp.json().get("content", [])
        if isinstance(content, str):
            return content
        # one line per record: the message, then its structured fields (exceptions live in error_detail)
        return "\n".join(json.dumps(line, default=str) if isinstance(line, dict) else str(line) for line in content)

    # Human in the loop -----------------------------------------------------------------------------
    def pending_approvals(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        hitl = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/hitlDetails", response_received=False)
        return list(hitl.get("hitl_details", []))

    def respond_raw(self, dag_id: str, run_id: str, task_id: str, option: str, map_index: int = -1,
                    params_input: dict[str, Any] | None = None) -> Any:
        """Answer as a careful REST client does: read the request, send back its form fields as shown (the
        plan digest the approval is for), or ``params_input`` when given."""
        url = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"
        if params_input is None:
            asked = self.get(url).get("params") or {}
            params_input = {k: v["value"] if isinstance(v, dict) else v for k, v in asked.items()}
        return self.http.patch(url, json={"chosen_options": [option], "params_input": params_input})

    def respond(self, dag_id: str, run_id: str, task_id: str, option: str, map_index: int = -1) -> dict[str, Any]:
        resp = self.respond_raw(dag_id, run_id, task_id, option, map_index)
        assert resp.status_code == 200, f"HITL response {option!r} to {task_id}: {resp.status_code} {resp.text}"
        return dict(resp.json())

    def answer(self, dag_id: str, run_id: str, option: str, task_id: str = "approve", timeout: float = 300,
               settle: float = 5) -> str:
        """Answer the run's approval and wait for the run to finish; returns its final state.

        Answers like a person would: only once the request has been waiting for ``settle`` seconds.
        Airflow 3.3 has a race when a response arrives before the scheduler has processed the executor's
        report that the task paused (under a second after ``deferred``/``awaiting_input``): the resumed task is then
        taken for "changed externally" and retried, and the retry asks again. If that still happens,
        the new request is answered too (once per try)."""
        deadline = time.monotonic() + timeout
        answered: set[int] = set()
        waiting_since: dict[int, float] = {}
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                return str(run["state"])
            ti = next(t for t in self.task_instances(dag_id, run_id) if t["task_id"] == task_id)
            try_number = int(ti["try_number"])
            if ti["state"] not in ("deferred", "awaiting_input"):  # HITL waits deferred (our approve) or parked
                waiting_since.pop(try_number, None)
            elif try_number not in answered:
                since = waiting_since.setdefault(try_number, time.monotonic())
                if time.monotonic() - since >= settle and self.pending_approvals(dag_id, run_id):
                    self.respond(dag_id, run_id, task_id, option)
                    answered.add(try_number)
            time.sleep(1)
        raise self._fail(f"{dag_id}/{run_id} not finished {timeout:.0f} s after answering {option!r}: "
                         f"{self.task_states(dag_id, run_id)}")

    # Backfills and variables -------------------------------------------------------------------------
    def create_backfill(self, dag_id: str, from_date: str, to_date: str, conf: dict[str, Any],
                        max_active_runs: int = 3) -> dict[str, Any]:
        body = {
            "dag_id": dag_id, "from_date": from_date, "to_date": to_date, "run_backwards": False,
            "dag_run_conf": conf, "reprocess_behavior": "none", "max_active_runs": max_active_runs,
        }
        # A 503 means the creation was rolled back (SQLite's "database is locked", kept for a standalone
        # on SQLite), so asking again is safe.
        deadline = time.monotonic() + 90
        resp = self.http.post("/api/v2/backfills", json=body)
        while resp.status_code == 503 and time.monotonic() < deadline:
            time.sleep(2)
            resp = self.http.post("/api/v2/backfills", json=body)
        assert resp.status_code == 200, f"POST backfills: {resp.status_code} {resp.text}"
        return dict(resp.json())

    def runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        params.setdefault("limit", 100)
        self._check_alive()
        return list(self.get(f"/api/v2/dags/{dag_id}/dagRuns", **params)["dag_runs"])

    def set_variable(self, key: str, value: str) -> None:
        self.http.delete(f"/api/v2/variables/{key}")
        resp = self.http.post("/api/v2/variables", json={"key": key, "value": value})
        assert resp.status_code in (200, 201), f"POST variable {key}: {resp.status_code} {resp.text}"
