"""`python -m scripts.stack run -- CMD`: the servers are up for CMD, with its env set, and gone after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, boto3, MySQLdb
aws = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
my = json.loads(os.environ["AIRFLOW_CONN_MYSQL_DEFAULT"])
s3 = boto3.client("s3", endpoint_url=aws["extra"]["endpoint_url"], region_name="us-east-1",
                  aws_access_key_id=aws["login"], aws_secret_access_key=aws["password"])
s3.create_bucket(Bucket="probe-bucket")
conn = MySQLdb.connect(host=my["host"], port=my["port"], user=my["login"], passwd=my["password"], db=my["schema"])
cur = conn.cursor(); cur.execute("SELECT @@version"); version = cur.fetchone()[0]
print(json.dumps({"buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]], "mysql": version,
                  "home": os.environ["AIRFLOW_HOME"], "pids": [os.getppid()]}))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stack_run_starts_servers_for_the_command_and_leaves_nothing_behind():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "S3OPS_"))}
    done = subprocess.run([sys.executable, "-m", "scripts.stack", "run", "--", sys.executable, "-c", PROBE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["buckets"] == ["probe-bucket"]
    assert "MariaDB" in out["mysql"] or out["mysql"][0].isdigit()
    workdir = Path(out["home"]).parent
    assert workdir.parent == ROOT / ".s3ops"
    # everything the stack wrote is removed, and no server is left running
    assert not workdir.exists()
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(workdir) not in ps


def test_stack_run_propagates_the_command_exit_status():
    done = subprocess.run([sys.executable, "-m", "scripts.stack", "run", "--", "sh", "-c", "exit 7"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 7


def test_bootstrap_is_quick_when_already_done():
    start = time.monotonic()
    done = subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    # the suite runs after `make test` bootstrapped, so this call must find everything in place
    assert time.monotonic() - start < 15
    assert "creating .venv" not in done.stdout


def test_servers_stop_when_the_process_that_started_them_is_killed(tmp_path):
    """A test run killed with SIGKILL (a CI timeout) must not leave S3 or MySQL servers running."""
    import signal

    script = (
        "import sys, time, pathlib\n"
        "from scripts.stack import LocalStack\n"
        f"st = LocalStack(pathlib.Path({str(tmp_path)!r}) / 'stack').start()\n"
        "print(st.s3.proc.pid, st.mysql.proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "servers outlived the process that started them"
