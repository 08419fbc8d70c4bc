"""``make demo``: seed the demo world on the local stack and run the pipelines end to end.

Runs inside ``python -m scripts.stack run --`` (which provides the servers and the connections). Each
pipeline runs as a real DAG run (``airflow dags test``), then its outputs are shown. Exit status is
non-zero if any run fails. ``S3OPS_DEMO_UI=1`` then keeps ``airflow standalone`` up (Ctrl-C stops it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def demo_runs(upload_dir: Path) -> list[tuple[str, dict[str, object]]]:
    """(dag_id, conf) in the order the demo runs them."""
    from include.seed import DemoWorld

    w = DemoWorld()
    return [
        ("s3_storage_report", {"size_unit": "auto", "include_versions": True}),
        ("s3_upload", {"base_dir": str(upload_dir), "bucket": w.upload_bucket, "settle_seconds": 30}),
        ("s3_retention", {"bucket": w.jobs_bucket, "orphan_min_age_days": 0}),
        ("s3_deploy_cleanup", {"bucket": w.deploys_bucket, "prefix": w.deploys_prefix, "keep": 5, "approval": "auto"}),
    ]


#: What the demo's deployment sets in the DAGs' Variables (a run's conf may tighten these, never loosen
#: them): the demo deletes without a human so that it finishes on its own.
DEMO_VARIABLES = {"AIRFLOW_VAR_S3OPS_RETENTION": json.dumps({"approval": "auto"})}


def banner(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def run(cmd: list[str], **kw: object) -> int:
    return subprocess.call(cmd, cwd=ROOT, **kw)  # type: ignore[arg-type]


def newest(folder: Path, name: str) -> dict | str | None:
    found = sorted(folder.glob(f"*/{name}"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    return json.loads(found[-1].read_text()) if name.endswith(".json") else found[-1].read_text()


def show_outcome(dag_id: str, folder: Path) -> None:
    """The few numbers a person wants to see after each run (the full artifacts are on disk)."""
    if dag_id == "s3_storage_report":
        print(newest(folder, "report.txt") or "")
    elif dag_id == "s3_upload":
        summary = newest(folder, "summary.json") or {}
        keys = ("uploaded", "skipped_not_ready", "malformed", "conflicts", "failed", "bytes")
        print("   " + ", ".join(f"{k}={summary.get(k)}" for k in keys))
    else:
        audit = newest(folder, "audit.json") or {}
        print(f"   outcome={audit.get('outcome')} planned={audit.get('planned_count')} "
              f"deleted={audit.get('deleted_count')} ({audit.get('deleted_bytes')} bytes) "
              f"by reason={audit.get('deleted_by_reason')} errors={audit.get('error_count')}")


def main() -> int:
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    banner("airflow db migrate (isolated AIRFLOW_HOME)")
    if run([AIRFLOW, "db", "migrate"], stdout=subprocess.DEVNULL) != 0:
        print("airflow db migrate failed", file=sys.stderr)
        return 1
    banner("seeding the demo world (buckets in two regions, versions, a multipart upload, jobs, .dat files)")
    upload_dir = home.parent / "upload-base-dir"
    if run([sys.executable, "-m", "include.seed", "--upload-dir", str(upload_dir)]) != 0:
        return 1

    dags_present = {p.stem for p in (ROOT / "dags").glob("*.py")}
    failed: list[str] = []
    artifacts = Path(os.environ["S3OPS_ARTIFACT_ROOT"])
    artifacts.mkdir(parents=True, exist_ok=True)
    for dag_id, conf in demo_runs(upload_dir):
        if dag_id not in dags_present:
            print(f"(skipping {dag_id}: not in dags/ yet)")
            continue
        banner(f"airflow dags test {dag_id} -c '{json.dumps(conf)}'")
        logs = artifacts.parent / "demo-logs"  # kept after exit, like the artifacts
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{dag_id}.log"
        with log.open("w") as fh:
            code = run([AIRFLOW, "dags", "test", dag_id, "-c", json.dumps(conf)], stdout=fh, stderr=subprocess.STDOUT,
                       env={**os.environ, **DEMO_VARIABLES})
        if code != 0:
            failed.append(dag_id)
            print(f"FAILED: {dag_id} (log: {log})")
            print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:]))
            continue
        print(f"ok: {dag_id} (log: {log})")
        outputs = sorted((artifacts / dag_id).glob("*/*"))
        for path in outputs[-6:]:
            print(f"   artifact: {path}")
        show_outcome(dag_id, artifacts / dag_id)

    if failed:
        print(f"\ndemo: {len(failed)} pipeline(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\ndemo: all pipelines succeeded at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; "
          f"artifacts under {artifacts}")

    if os.environ.get("S3OPS_DEMO_UI") == "1":
        return serve_ui(home)
    return 0


#: the demo's users (local only): admin triggers runs; approver answers their approval requests, since the
#: user who triggered a run cannot approve its deletions (``separate_approver``)
DEMO_USERS = {"admin": ("admin", "admin"), "approver": ("user", "approver")}


def serve_ui(home: Path) -> int:
    """Keep a real Airflow up on http://127.0.0.1:8080 until Ctrl-C (users admin/admin and
    approver/approver, local only)."""
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({user: password for user, (_, password) in DEMO_USERS.items()}))
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{role}" for u, (role, _) in DEMO_USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    banner("airflow standalone on http://127.0.0.1:8080 (users admin/admin and approver/approver: trigger a run "
           "with approval=required as admin, approve it as approver); Ctrl-C to stop")
    proc = subprocess.Popen([shutil.which("airflow", path=env["PATH"]) or AIRFLOW, "standalone"], env=env,
                            cwd=ROOT, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        return 0


if __name__ == "__main__":
    sys.exit(main())
