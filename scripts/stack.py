"""The local stack: an S3-protocol server, a MariaDB/MySQL server and an isolated AIRFLOW_HOME.

Everything binds 127.0.0.1 on free ports and keeps its data under ``.s3ops/`` (git-ignored). The same
code serves ``make demo``, the pytest fixtures and the benchmarks, so all three run the same servers.

    python -m scripts.stack run -- COMMAND...   # start the stack, run COMMAND with its env, stop it

The command gets ``AIRFLOW_CONN_AWS_DEFAULT`` / ``AIRFLOW_CONN_MYSQL_DEFAULT`` pointing at the servers,
``AIRFLOW_HOME`` and the Airflow settings, and ``S3OPS_S3_ENDPOINT`` / ``S3OPS_MYSQL_*`` for scripts.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import tools

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".s3ops"

# moto accepts any credentials; these are not secrets, they only keep boto3 away from real AWS.
LOCAL_AWS_KEY = "s3ops-local"
LOCAL_AWS_SECRET = "s3ops-local-secret"
LOCAL_REGION = "us-east-1"


class StackError(RuntimeError):
    """A local server could not be started; the message says what to install or check."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, what: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StackError(f"{what} exited with code {proc.returncode} while starting; its log ({log}):\n{tail}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise StackError(f"{what} did not become ready within {timeout:.0f} s; see {log}")


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, the server gets SIGTERM when the process that started it
    dies, even by SIGKILL (a killed test run leaves no server behind). Elsewhere only stop() stops it."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class S3Server:
    """moto's S3 server (with the ``/_s3ops/`` control API, see ``scripts/s3server.py``)."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.workdir / "s3server.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.s3server", "--port", str(self.port)],
            cwd=ROOT,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        _wait(lambda: self.control("GET", "stats") is not None, "the S3 server (moto)", 30, self.proc, log)
        return self

    def stop(self) -> None:
        _stop(self.proc)

    def control(self, method: str, what: str, body: dict[str, Any] | None = None) -> Any:
        """Call the server's ``/_s3ops/`` control API (seed, touch, faults, stats)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.endpoint_url}/_s3ops/{what}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        """Forget every bucket (moto's own reset endpoint)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"), timeout=30)

    def airflow_conn(self) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": LOCAL_AWS_KEY,
                "password": LOCAL_AWS_SECRET,
                "extra": {"region_name": LOCAL_REGION, "endpoint_url": self.endpoint_url},
            }
        )


def _mysql_binaries() -> tuple[list[str], str]:
    """(install-db command prefix, server binary): MariaDB on both Linux and macOS, so every platform
    tests the server (collations, authentication) the suite was written against."""
    try:
        return [tools.require("mariadb-install-db")], tools.require("mariadbd")
    except FileNotFoundError as exc:
        raise StackError(str(exc)) from exc


@dataclass
class MySQLServer:
    """A throwaway MariaDB (or MySQL) server with its data dir under the project."""

    workdir: Path
    database: str = "s3ops"
    user: str = "s3ops"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        # unix socket paths are limited to ~100 bytes: keep it short
        return Path(tempfile.gettempdir()) / f"s3ops-mysql-{self.port}.sock"

    def start(self) -> MySQLServer:
        install, server = _mysql_binaries()
        datadir = self.workdir / "data"
        # Its own tmpdir: a starting mariadbd deletes every "#sql*" file in its tmpdir as a crashed
        # server's leftovers, so a server sharing /tmp wipes the temporary tables of another one that
        # is being initialised beside it (parallel test workers), failing that initialisation.
        tmpdir = self.workdir / "tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        log = self.workdir / "mysqld.log"
        if not (datadir / "mysql").exists():
            args = [*install, f"--datadir={datadir}", f"--tmpdir={tmpdir}"]
            if "mariadb" in install[0]:
                args += ["--auth-root-authentication-method=normal", "--skip-test-db", *as_root]
            else:
                args += as_root
            done = subprocess.run(args, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise StackError(f"initialising the MySQL data dir failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        self.proc = subprocess.Popen(
            [
                server,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--tmpdir={tmpdir}",
                *as_root,
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.socket_path}",
                f"--pid-file={self.workdir / 'mysqld.pid'}",
                f"--log-error={log}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=256M",
                "--innodb-flush-log-at-trx-commit=2",
                "--character-set-server=utf8mb4",
                "--default-time-zone=+00:00",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _wait(self._ping_root, "the MySQL server", 60, self.proc, log)
        self._provision()
        return self

    def _root(self) -> Any:
        import MySQLdb

        return MySQLdb.connect(unix_socket=str(self.socket_path), user="root", passwd="")

    def _ping_root(self) -> bool:
        self._root().close()
        return True

    def _provision(self) -> None:
        conn = self._root()
        try:
            cur = conn.cursor()
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4")
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER IF NOT EXISTS '{self.user}'@'{host}' IDENTIFIED BY %s", (self.password,))
                cur.execute(f"ALTER USER '{self.user}'@'{host}' IDENTIFIED BY %s", (self.password,))
                cur.execute(f"GRANT ALL ON `{self.database}`.* TO '{self.user}'@'{host}'")
            conn.commit()
        finally:
            conn.close()

    def stop(self) -> None:
        _stop(self.proc, timeout=30)
        self.socket_path.unlink(missing_ok=True)

    def connect(self, **kwargs: Any) -> Any:
        """A MySQLdb connection as the project user (tests use it to arrange and check rows)."""
        import MySQLdb

        return MySQLdb.connect(
            host="127.0.0.1", port=self.port, user=self.user, passwd=self.password, db=self.database, **kwargs
        )

    def airflow_conn(self) -> str:
        return json.dumps(
            {
                "conn_type": "mysql",
                "host": "127.0.0.1",
                "port": self.port,
                "login": self.user,
                "password": self.password,
                "schema": self.database,
            }
        )


def airflow_env(home: Path) -> dict[str, str]:
    """Settings for an isolated Airflow: its own home, this project's dags/plugins, no examples."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "S3OPS_ARTIFACT_ROOT": os.environ.get("S3OPS_ARTIFACT_ROOT", str(home / "s3ops-artifacts")),
    }


@dataclass
class LocalStack:
    """S3 + MySQL + Airflow settings, started together and stopped together (no leftovers)."""

    workdir: Path
    s3: S3Server | None = None
    mysql: MySQLServer | None = None

    def start(self, mysql: bool = True) -> LocalStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.s3 = S3Server(self.workdir / "s3").start()
            if mysql:
                self.mysql = MySQLServer(self.workdir / "mysql").start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.s3:
            self.s3.stop()
        if self.mysql:
            self.mysql.stop()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        env = airflow_env(self.workdir / "airflow")
        # Dummy credentials so nothing local can ever reach real AWS by accident.
        env.update(AWS_ACCESS_KEY_ID=LOCAL_AWS_KEY, AWS_SECRET_ACCESS_KEY=LOCAL_AWS_SECRET, AWS_DEFAULT_REGION=LOCAL_REGION)
        if self.s3:
            env["AIRFLOW_CONN_AWS_DEFAULT"] = self.s3.airflow_conn()
            env["S3OPS_S3_ENDPOINT"] = self.s3.endpoint_url
        if self.mysql:
            env["AIRFLOW_CONN_MYSQL_DEFAULT"] = self.mysql.airflow_conn()
            env.update(
                S3OPS_MYSQL_PORT=str(self.mysql.port),
                S3OPS_MYSQL_USER=self.mysql.user,
                S3OPS_MYSQL_PASSWORD=self.mysql.password,
                S3OPS_MYSQL_DATABASE=self.mysql.database,
            )
        return env


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        print("usage: python -m scripts.stack run -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    workdir = STATE / f"stack-{os.getpid()}"
    stack = LocalStack(workdir)
    # Stop the servers on Ctrl-C / SIGTERM too, not only on normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        stack.start()
        print(f"[stack] S3 at {stack.s3.endpoint_url if stack.s3 else '-'}, MySQL on 127.0.0.1:"
              f"{stack.mysql.port if stack.mysql else '-'}, data under {workdir}", flush=True)
        return subprocess.call(argv[2:], env={**os.environ, **stack.env()}, cwd=ROOT)
    except StackError as exc:
        print(f"[stack] {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()
        if os.environ.get("S3OPS_KEEP_STATE") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
