"""s3rver (npm) as the bench's S3 server for the sizes moto cannot list in reasonable time (scenario 3).

moto lists ~2,000 keys/s and slows down superlinearly past ~100k keys per bucket; s3rver keeps each object
as files on disk and lists by walking the bucket's directory tree. It is installed from the npm registry
into ``.s3ops/bench-node`` (git-ignored) by :func:`ensure_s3rver`, which ``make bench`` runs through
``python -m bench.run``; it needs ``npm`` (Node.js 20 here).

The server is ``bench/s3rver_main.js``: s3rver plus the two control calls the harness uses on moto
(``GET /_s3ops/stats``, ``POST /_s3ops/stats/reset``), so S3 requests are counted by the server the same way.

Seeding writes s3rver's own on-disk layout directly (``<bucket>/<key dirs>/<name>._S3rver_object`` plus its
``.md5`` and ``._S3rver_metadata.json``, LastModified = the file's mtime), as s3rver 3.7.1's PutObject does;
:func:`verify` then lists the bucket through the S3 API and checks the count and total bytes, so a layout
that s3rver does not read back is caught before anything is measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from scripts import tools
from scripts.stack import ROOT, STATE, S3Server, StackError, _die_with_parent, _wait, free_port

S3RVER_VERSION = "3.7.1"  # the last release (2021); pure JavaScript, runs on Node.js 20
NODE_DIR = STATE / "bench-node"
PACKAGE = NODE_DIR / "node_modules" / "s3rver"
MAIN = ROOT / "bench" / "s3rver_main.js"
# s3rver's built-in account (lib/models/account.js); it refuses any other access key.
S3RVER_KEY = "S3RVER"
S3RVER_SECRET = "S3RVER"
NAME = f"s3rver {S3RVER_VERSION} (npm)"
SUFFIX = "._S3rver_"


def installed_version() -> str | None:
    try:
        return str(json.loads((PACKAGE / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_s3rver(install: bool = True) -> Path:
    """s3rver's package folder, installed with npm into ``.s3ops/bench-node`` when missing (or another version)."""
    node = tools.which("node")
    if node is None:
        raise StackError("s3rver needs Node.js (>= 8; 20 is tested): apt-get install nodejs npm (or brew install node)")
    if installed_version() == S3RVER_VERSION:
        return PACKAGE
    if not install:
        raise StackError(f"s3rver is not installed in {NODE_DIR}: run `make bench` (or drop --no-bootstrap)")
    npm = tools.which("npm")
    if npm is None:
        raise StackError(f"installing s3rver {S3RVER_VERSION} needs npm: apt-get install npm (or brew install node), "
                         f"or by hand: npm install --prefix {NODE_DIR} s3rver@{S3RVER_VERSION}")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"bench: installing s3rver {S3RVER_VERSION} into {NODE_DIR}", flush=True)
    done = subprocess.run([npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--save-exact",
                           f"s3rver@{S3RVER_VERSION}"], capture_output=True, text=True, check=False)
    if done.returncode != 0 or installed_version() != S3RVER_VERSION:
        raise StackError(f"npm install s3rver@{S3RVER_VERSION} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return PACKAGE


def legacy_openssl() -> list[str]:
    """s3rver 3.7.1 encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 (Node.js >= 17) only
    has in its legacy provider: without it every truncated listing is a 500 (ERR_OSSL_EVP_UNSUPPORTED)."""
    done = subprocess.run([tools.which("node") or "node", "--version"], capture_output=True, text=True, check=False)
    major = int(done.stdout.strip().lstrip("v").split(".")[0] or 0) if done.returncode == 0 else 0
    return ["--openssl-legacy-provider"] if major >= 17 else []


@dataclass
class S3rverServer(S3Server):
    """s3rver on 127.0.0.1 over ``workdir/data``. From ``S3Server``: ``endpoint_url``, ``stop`` and ``control``,
    which here reaches only the launcher's request counter (``GET stats``, ``POST stats/reset``)."""

    access_key: str = S3RVER_KEY
    secret_key: str = S3RVER_SECRET
    name: str = NAME

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def start(self, install: bool = True) -> S3rverServer:
        package = ensure_s3rver(install)
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.workdir / "s3rver.log"
        self.proc = subprocess.Popen(
            [tools.require("node"), *legacy_openssl(), str(MAIN), str(package), str(self.data), "127.0.0.1", str(self.port),
             *(["--verbose"] if os.environ.get("S3OPS_S3RVER_LOG") == "1" else [])],
            cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _wait(lambda: self.control("GET", "stats") is not None, NAME, 30, self.proc, log)
        return self

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    # ---------------------------------------------------------------------------------------- seeding

    def seed(self, bucket: str, keys: list[str], size: int, last_modified: datetime | None = None,
             workers: int = 2) -> tuple[float, float, bool]:
        """``bucket`` holding exactly ``keys``, written straight into s3rver's directory and then listed
        through the API (:meth:`verify`: also the unmeasured warm-up). A bucket seeded identically by an
        earlier run (``seeded.json`` beside the data) is reused when it still lists right.
        Returns (seconds writing, seconds of the verifying listing, reused)."""
        marks_file = self.workdir / "seeded.json"
        marks = json.loads(marks_file.read_text()) if marks_file.exists() else {}
        spec = {"count": len(keys), "first": keys[0] if keys else "", "last": keys[-1] if keys else "",
                "size": size, "last_modified": last_modified.isoformat() if last_modified else None,
                "s3rver": S3RVER_VERSION}
        prefix = os.path.commonprefix([keys[0], keys[-1]]) if keys else ""
        if marks.get(bucket) == spec:
            try:
                return 0.0, self.verify(bucket, prefix, len(keys), len(keys) * size), True
            except StackError as exc:
                print(f"  {bucket}: reseeding ({exc})", flush=True)
        marks.pop(bucket, None)
        marks_file.write_text(json.dumps(marks, indent=1))
        start = time.perf_counter()
        self.drop_bucket(bucket)
        self.create_bucket(bucket)
        step = 10_000
        chunks = [(str(self.data / bucket), keys[i:i + step], size, last_modified) for i in range(0, len(keys), step)]
        if workers > 1 and len(chunks) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_write_chunk, chunks))
        else:
            for chunk in chunks:
                _write_chunk(chunk)
        wrote = time.perf_counter() - start
        listed = self.verify(bucket, prefix, len(keys), len(keys) * size)
        marks[bucket] = spec
        marks_file.write_text(json.dumps(marks, indent=1))
        return wrote, listed, False

    def create_bucket(self, bucket: str) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=bucket)
        except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            pass

    def drop_bucket(self, bucket: str) -> None:
        shutil.rmtree(self.data / bucket, ignore_errors=True)

    def verify(self, bucket: str, prefix: str, count: int, total_bytes: int) -> float:
        """List ``bucket`` through the S3 API (a plain paginator): the count and bytes must match what was
        written, and one object's HEAD must agree with its listing entry. Returns the listing's seconds."""
        client = self.client()
        start = time.perf_counter()
        objects = size = 0
        last = ""
        first: dict[str, Any] | None = None
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"] <= last:
                    raise StackError(f"s3rver listed {obj['Key']!r} after {last!r}: not in key order")
                last = obj["Key"]
                first = first or obj
                objects += 1
                size += obj["Size"]
        seconds = time.perf_counter() - start
        if (objects, size) != (count, total_bytes):
            raise StackError(f"s3rver lists {objects:,} objects / {size:,} bytes in {bucket}/{prefix}, "
                             f"expected {count:,} / {total_bytes:,}: the seeded layout is not what it reads")
        if first is not None:
            head = client.head_object(Bucket=bucket, Key=first["Key"])
            if (head["ContentLength"], head["ETag"]) != (first["Size"], first["ETag"]):
                raise StackError(f"s3rver HEAD {first['Key']} = {head['ContentLength']}/{head['ETag']}, "
                                 f"listed {first['Size']}/{first['ETag']}")
        return seconds


def _write_chunk(args: tuple[str, list[str], int, datetime | None]) -> None:
    """Write keys in s3rver's on-disk layout, as its PutObject would (one process of :meth:`S3rverServer.seed`).

    s3rver 3.7.1 (lib/stores/filesystem.js): the key's ``/``-separated dirs become directories, the last
    part ``<name>._S3rver_object`` holds the bytes, ``<name>._S3rver_object.md5`` the hex MD5 (the ETag),
    ``<name>._S3rver_metadata.json`` the allowed headers; Size and LastModified come from ``stat``.
    """
    bucket_dir, keys, size, last_modified = args
    body = b"x" * size
    md5 = hashlib.md5(body).hexdigest().encode()  # S3's ETag
    meta = json.dumps({"content-type": "binary/octet-stream"}, indent=2).encode()
    stamp = last_modified.timestamp() if last_modified else None
    root = Path(bucket_dir)
    made: set[Path] = set()
    for key in keys:
        *dirs, name = key.split("/")
        folder = root.joinpath(*dirs)
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        obj = folder / f"{name}{SUFFIX}object"
        obj.write_bytes(body)
        (folder / f"{name}{SUFFIX}object.md5").write_bytes(md5)
        (folder / f"{name}{SUFFIX}metadata.json").write_bytes(meta)
        if stamp is not None:
            os.utime(obj, (stamp, stamp))
