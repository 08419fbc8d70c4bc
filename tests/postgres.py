"""A throwaway PostgreSQL server for Airflow's metadata database in tests.

Used by the e2e ``airflow standalone`` and by the Celery topology test. Both once ran (or would run) on
SQLite, where every component shares one write lock: under load a scheduler's write can hit "database
is locked", which ends the scheduler process, and ``airflow standalone`` does not restart it, so every
later test waits on runs nobody schedules. PostgreSQL is what Airflow runs on in production.

The data folder is under /tmp (unix socket paths must stay short). PostgreSQL refuses to run as root,
so when the tests run as root the server runs as ``nobody`` in a folder that user owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from scripts import tools
from scripts.stack import StackError, _stop, _wait, free_port


def _pg_bin() -> Path:
    """PostgreSQL's server binaries (Debian/Ubuntu keep them per version, Homebrew's postgresql@17 is keg-only:
    scripts.tools looks in both)."""
    try:
        return Path(tools.require("initdb")).parent
    except FileNotFoundError as exc:
        raise StackError(str(exc)) from exc


def _as_unprivileged() -> list[str]:
    """The command prefix that runs a program as ``nobody`` when the tests run as root."""
    return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    """Start with :meth:`start`, always :meth:`stop` (which removes the data unless S3OPS_KEEP_STATE=1)."""

    database: str = "airflow"
    user: str = "airflow"
    port: int = 0
    tmp: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL for Airflow (trust authentication on loopback: no password to leak)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def log(self) -> Path:
        return self.tmp / "postgres.log"

    def start(self) -> PostgresServer:
        self.tmp = Path(tempfile.mkdtemp(prefix="s3ops-pg-", dir="/tmp"))
        self.tmp.chmod(0o755)
        data, sock = self.tmp / "data", self.tmp / "sock"
        for d in (data, sock):
            d.mkdir()
            if os.geteuid() == 0:
                shutil.chown(d, "nobody")
        try:
            init = subprocess.run(
                [*_as_unprivileged(), str(_pg_bin() / "initdb"), "-D", str(data), "-U", self.user, "-A", "trust",
                 "-E", "UTF8", "--no-sync"],
                cwd=self.tmp, capture_output=True, text=True, timeout=120,
            )
            if init.returncode != 0:
                raise StackError(f"initdb failed:\n{init.stdout[-2000:]}\n{init.stderr[-2000:]}")
            self.port = self.port or free_port()
            self.proc = subprocess.Popen(
                [*_as_unprivileged(), str(_pg_bin() / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(sock),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                cwd=self.tmp, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            _wait(self._create_database, "PostgreSQL", 60, self.proc, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def _create_database(self) -> bool:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        conn.close()
        return True

    def stop(self) -> None:
        _stop(self.proc, timeout=20)
        self.proc = None
        if getattr(self, "tmp", None) and os.environ.get("S3OPS_KEEP_STATE") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)
