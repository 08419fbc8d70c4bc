"""Deleting pipelines planned from S3 Inventory (issue 17) against the local S3 server and MariaDB:
real inventories written by include.inventory.generate, read through include.inventory.read.

The promise: a plan from an inventory equals the plan from a listing of the same bucket; an object
rewritten after the inventory is kept (the delete is conditional on the ETag the inventory recorded);
an object written after the inventory is not in the plan; an inventory that cannot be trusted is refused."""

from __future__ import annotations

import json
import unicodedata
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.aws.listing import iter_objects
from include.deletion.plan import delete_chunk, read_chunk, write_audit
from include.inventory.generate import write_inventory
from include.inventory.manifest import InventoryError
from include.inventory.read import latest_snapshot
from include.retention import jobs as jobs_db
from include.retention.plan import plan_bucket
from include.retention.policy import Policy, make_recheck, write_plan
from include.seed import seed_jobs

NOW = datetime(2019, 6, 3, tzinfo=UTC)
OLD = (NOW - timedelta(days=400)).isoformat()
#: Names that break naive CSV, URL-decoding or sorting: '+' and '%' (CSV keys are URL-encoded), commas,
#: quotes, a tab, a newline, NFC and NFD forms of one name, astral characters, and binary-vs-collation order.
ODD = ["a b", "a+b", "a%2Bb", "100%", "c,d", 'q"uote', "tab\there", "line\nbreak", "café", "\U0001f600", "x/y", "~",
       "Z", "a", "_"]
NFD = unicodedata.normalize("NFD", "café")  # no job of its own; the table's NFC "café" row makes it ambiguous


def _job(i: int, name: str) -> tuple[str, Any, str, str] | None:
    """A mix of every job class; every fifth file has no job (an orphan)."""
    kind = i % 5
    if kind == 0:
        return None
    return [(f"j{i}", NOW - timedelta(days=200), "TRIAL", name), (f"j{i}", None, "OFFICIAL", name),
            (f"j{i}", NOW - timedelta(days=10), "TRIAL", name), (f"j{i}", None, "TRIAL", name)][kind - 1]


@pytest.fixture
def world(s3: Any, s3_server: Any, mysql_conn: Any) -> dict[str, Any]:
    uid = uuid.uuid4().hex[:8]
    bucket, dest, table = f"invplan-{uid}", f"invplan-dest-{uid}", f"jobs_{uid}"
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=dest)
    names = ODD + [f"bulk/{i:05d}.dat" for i in range(2500)]
    objs = [{"key": f"jobs/{n}", "size": 10 + i, "last_modified": OLD} for i, n in enumerate(names)]
    objs.append({"key": "outside/never-touched", "size": 1, "last_modified": OLD})
    objs.append({"key": f"jobs/{NFD}", "size": 3, "last_modified": OLD})
    for i in range(0, len(objs), 2000):
        s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs[i:i + 2000]})
    rows = [r for i, n in enumerate(names) if (r := _job(i, n)) is not None]
    seed_jobs(mysql_conn, rows, table=table)
    return {"bucket": bucket, "dest": dest, "table": table}


def _plan(mysql_server: Any, s3: Any, world: dict[str, Any], run_dir: Any, *, objects: Any,
          prefix: str = "jobs/") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    stream, lookup_conn = jobs_db.prepare(mysql_server.connect()), jobs_db.prepare(mysql_server.connect())
    try:
        summary = write_plan(objects, jobs_db.iter_job_rows(stream, world["table"]), run_dir, key_prefix=prefix,
                             policy=Policy.at(NOW, "P3M", 7), jobs_table=world["table"], allow_empty_jobs=False,
                             lookup=lambda names: jobs_db.rows_for_names(lookup_conn, world["table"], names))
    finally:
        stream.close()
        lookup_conn.close()
    items = [asdict(item) for c in summary["chunks"] for item in read_chunk(run_dir, c)]
    return summary, items


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("delete_count", "delete_bytes", "scanned_count", "scanned_bytes", "by_reason",
                                    "protected", "jobs", "refusals")}


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_retention_plan_from_inventory_equals_plan_from_listing(mysql_server, s3, world, tmp_path, fmt):
    write_inventory(s3, world["bucket"], dest_bucket=world["dest"], fmt=fmt, rows_per_file=700)
    listed, listed_items = _plan(mysql_server, s3, world, tmp_path / "listing",
                                 objects=iter_objects(s3, world["bucket"], "jobs/"))
    with latest_snapshot(s3, world["bucket"], include_versions=False) as snap:
        assert len(snap.paths) == 4  # 2,518 rows in files of 700: a sort across files, not within one
        from_inventory, inventory_items = _plan(mysql_server, s3, world, tmp_path / "inventory",
                                                objects=snap.objects("jobs/"))
    assert inventory_items == listed_items  # every key, reason, size, ETag and time, in the same order
    assert _comparable(from_inventory) == _comparable(listed)
    # ambiguous: the NFD café (the NFC row names it), a+b (its expired TRIAL row names it exactly, but the
    # OFFICIAL row "a%2Bb" is its percent-encoded spelling) and "a b" (the row "a+b" is its spelling in an S3 event)
    assert listed["delete_count"] > 500 and listed["protected"]["by_cause"]["ambiguous"] == 3
    assert sorted(listed["protected"]["ambiguous_samples"]) == sorted(["jobs/a b", "jobs/a+b", f"jobs/{NFD}"])
    planned = {i["key"] for i in listed_items}
    assert {"jobs/a+b", "jobs/a%2Bb", "jobs/tab\there", "jobs/line\nbreak"} & planned  # the odd names took part
    assert all(i["etag"] for i in inventory_items)  # every delete is conditional
    assert not any(k.startswith("outside/") for k in planned)


def test_an_object_rewritten_after_the_inventory_is_kept_and_one_written_after_is_not_planned(
        mysql_server, s3, s3_server, world, tmp_path):
    write_inventory(s3, world["bucket"], dest_bucket=world["dest"], fmt="Parquet")
    s3.put_object(Bucket=world["bucket"], Key='jobs/q"uote', Body=b"rewritten after the inventory")  # an orphan before
    s3_server.control("POST", "seed", {"bucket": world["bucket"], "objects": [
        {"key": "jobs/after-the-inventory", "size": 3, "last_modified": OLD}]})  # an old orphan, but unseen
    with latest_snapshot(s3, world["bucket"], include_versions=False) as snap:
        summary, items = _plan(mysql_server, s3, world, tmp_path, objects=snap.objects("jobs/"))
    keys = {i["key"] for i in items}
    assert 'jobs/q"uote' in keys and "jobs/after-the-inventory" not in keys
    policy = Policy.at(NOW, "P3M", 7)
    lookup_conn = jobs_db.prepare(mysql_server.connect())
    try:
        recheck = make_recheck(lambda names: jobs_db.rows_for_names(lookup_conn, world["table"], names), "jobs/",
                               policy)
        done = [delete_chunk(s3, world["bucket"], tmp_path, chunk, recheck=recheck, dry_run=False)
                for chunk in summary["chunks"]]
    finally:
        lookup_conn.close()
    audit = write_audit(tmp_path)
    left = {o.key for o in iter_objects(s3, world["bucket"])}
    assert 'jobs/q"uote' in left and "jobs/after-the-inventory" in left and "outside/never-touched" in left
    assert s3.get_object(Bucket=world["bucket"], Key='jobs/q"uote')["Body"].read() == b"rewritten after the inventory"
    skipped = [r for c in summary["chunks"] for r in json.loads((tmp_path / "audit" / f"{c}.json").read_text())["skipped"]]
    assert [(r["key"], r["code"]) for r in skipped] == [('jobs/q"uote', "PreconditionFailed")]
    assert sum(d["deleted"] for d in done) == audit["deleted_count"] == len(items) - 1
    assert audit["error_count"] == 0 and not left & (keys - {'jobs/q"uote'})


def test_an_inventory_without_etags_or_with_a_bad_checksum_is_refused(s3, world):
    with pytest.raises(InventoryError, match="no usable S3 Inventory configuration"):
        latest_snapshot(s3, world["bucket"], include_versions=False)
    key = write_inventory(s3, world["bucket"], dest_bucket=world["dest"], fmt="CSV")
    manifest = json.loads(s3.get_object(Bucket=world["dest"], Key=key)["Body"].read())
    manifest["fileSchema"] = manifest["fileSchema"].replace(", ETag", "")
    body = json.dumps(manifest).encode()
    s3.put_object(Bucket=world["dest"], Key=key, Body=body)
    with pytest.raises(InventoryError, match="manifest.checksum .* does not match"):
        latest_snapshot(s3, world["bucket"], include_versions=False)
    import hashlib

    s3.put_object(Bucket=world["dest"], Key=key.replace("manifest.json", "manifest.checksum"),
                  Body=hashlib.md5(body).hexdigest().encode())
    with pytest.raises(InventoryError, match="no ETag column"):
        latest_snapshot(s3, world["bucket"], include_versions=False)
    with pytest.raises(InventoryError, match="IncludedObjectVersions All|every version|IsLatest/IsDeleteMarker"):
        latest_snapshot(s3, world["bucket"], include_versions=True)


def test_a_versions_inventory_without_a_null_versions_etag_is_refused(s3, world, monkeypatch):
    """The 'null' version is the one version that can be rewritten: its delete is checked against the
    ETag the plan recorded, so an inventory row without one refuses the plan (versions with ids need none)."""
    from include.inventory import generate

    bucket = f"{world['bucket']}-n"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="jobs/a", Body=b"a")
    real_rows = generate.rows
    monkeypatch.setattr(generate, "rows", lambda c, b, v: (r[:7] + ("",) + r[8:] for r in real_rows(c, b, v)))
    write_inventory(s3, bucket, dest_bucket=world["dest"], fmt="CSV", versions=True)
    with latest_snapshot(s3, bucket, include_versions=True) as snap, \
            pytest.raises(InventoryError, match="no ETag for the 'null' version of 'jobs/a'"):
        list(snap.versions("jobs/"))


# --- deploy cleanup ----------------------------------------------------------------------------------

DAY = timedelta(days=1)


def _seed_deployments(s3_server: Any, bucket: str, ages: dict[str, int]) -> None:
    now = datetime.now(UTC)
    objs = [{"key": "deploys/README.txt", "size": 1, "last_modified": (now - 400 * DAY).isoformat()}]
    for name, age in ages.items():
        for f in ("index.html", "assets/app+1.js", "ünï code.txt"):
            objs.append({"key": f"deploys/{name}/{f}", "size": 10, "last_modified": (now - age * DAY).isoformat()})
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs})


def _cleanup_plan(s3: Any, bucket: str, run_dir: Any, source: str, **params: Any) -> tuple[dict[str, Any], list[Any]]:
    from include.deploy_cleanup.plan import plan_cleanup, settings_from_params

    summary = plan_cleanup(s3, bucket, settings_from_params({"prefix": "deploys/", "source": source, **params}),
                           run_dir, datetime.now(UTC))
    return summary, [asdict(item) for c in summary["chunks"] for item in read_chunk(run_dir, c)]


def test_deploy_cleanup_from_inventory_equals_listing_and_follows_folders_changed_since(s3, s3_server, world, tmp_path):
    # CSV here (URL-encoded keys); deploy cleanup reads Parquet through the same Snapshot as retention's test
    fmt = "CSV"
    bucket = world["bucket"]
    _seed_deployments(s3_server, bucket, {f"d{i}": 70 - 10 * i for i in range(1, 7)})  # d6 newest
    write_inventory(s3, bucket, dest_bucket=world["dest"], fmt=fmt, rows_per_file=5)
    listed, listed_items = _cleanup_plan(s3, bucket, tmp_path / "l1", "listing", keep=3)
    inventoried, inventory_items = _cleanup_plan(s3, bucket, tmp_path / "i1", "inventory", keep=3)
    assert inventory_items == listed_items and listed["delete_sample"] == ["d3", "d2", "d1"]
    assert inventoried["source"] == "inventory" and "S3 Inventory" in inventoried["headline"]

    # since the inventory, d6 (kept) was removed: counting the vanished d6 among the newest 3 would
    # delete d3 one run too early (a listing keeps d5, d4 and d3)
    for o in iter_objects(s3, bucket, "deploys/d6/"):
        s3.delete_object(Bucket=bucket, Key=o.key)
    listed, listed_items = _cleanup_plan(s3, bucket, tmp_path / "l2", "listing", keep=3)
    inventoried, inventory_items = _cleanup_plan(s3, bucket, tmp_path / "i2", "inventory", keep=3)
    assert listed["delete_sample"] == inventoried["delete_sample"] == ["d2", "d1"]
    assert inventory_items == listed_items
    assert inventoried["gone_since_inventory"] == ["d6"] and "Gone since the inventory" in inventoried["headline"]
    # then d7 is deployed: it counts among the newest 3 in both, though the inventory has never seen it
    s3.put_object(Bucket=bucket, Key="deploys/d7/index.html", Body=b"new")
    listed, listed_items = _cleanup_plan(s3, bucket, tmp_path / "l3", "listing", keep=3)
    inventoried, inventory_items = _cleanup_plan(s3, bucket, tmp_path / "i3", "inventory", keep=3)
    assert listed["delete_sample"] == inventoried["delete_sample"] == ["d3", "d2", "d1"]
    assert inventory_items == listed_items
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "i3" / "deployments.jsonl").read_text().splitlines())}
    assert rows["d7"]["after_inventory"] and not rows["d7"]["delete"] and "d6" not in rows


def test_an_empty_folder_created_after_the_inventory_takes_no_rank(s3, s3_server, world, tmp_path):
    """The inventory plan knows a folder created since exists, not what it holds: an empty console folder
    took rank 0 and pushed the live release out of keep=1."""
    bucket = world["bucket"]
    _seed_deployments(s3_server, bucket, {"rel-1": 20, "rel-2": 10})
    write_inventory(s3, bucket, dest_bucket=world["dest"], fmt="CSV")
    s3.put_object(Bucket=bucket, Key="deploys/tmp-folder/", Body=b"")
    summary, items = _cleanup_plan(s3, bucket, tmp_path, "inventory", keep=1)
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "deployments.jsonl").read_text().splitlines())}
    assert {n for n, r in rows.items() if r["delete"]} == {"rel-1"} and rows["rel-2"]["rank"] == 0
    assert rows["tmp-folder"]["rank"] == -1 and {i["group"] for i in items} == {"rel-1"}


def test_a_deployment_emptied_after_the_inventory_takes_no_rank(s3, s3_server, world, tmp_path):
    """The inventory still lists rel-3's files, but a rollback emptied it down to its console folder: ranked
    among the newest 2, it pushed rel-1 out of the plan and every delete then refused the plan until the
    next inventory. Checked at planning, it takes no rank: rel-2 and rel-1 are kept, rel-0 goes."""
    from include.deletion.plan import read_plan
    from include.deletion.recheck import RecheckContext
    from include.deploy_cleanup.plan import make_recheck as deploy_recheck

    bucket = world["bucket"]
    _seed_deployments(s3_server, bucket, {"rel-3": 5, "rel-2": 10, "rel-1": 20, "rel-0": 30})
    write_inventory(s3, bucket, dest_bucket=world["dest"], fmt="CSV")
    for o in iter_objects(s3, bucket, "deploys/rel-3/"):
        s3.delete_object(Bucket=bucket, Key=o.key)
    s3.put_object(Bucket=bucket, Key="deploys/rel-3/", Body=b"")
    summary, items = _cleanup_plan(s3, bucket, tmp_path, "inventory", keep=2)
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "deployments.jsonl").read_text().splitlines())}
    assert {n for n, r in rows.items() if r["delete"]} == {"rel-0"} and rows["rel-3"]["rank"] == -1
    assert [n for n, r in rows.items() if r["holds_rank"]] == ["rel-2", "rel-1"]
    recheck = deploy_recheck(RecheckContext(s3, bucket, {}, read_plan(tmp_path), tmp_path))
    assert recheck(read_chunk(tmp_path, "00000")) == {}  # the delete is not refused: the ranking holds
    assert {i["group"] for i in items} == {"rel-0"}


def test_deploy_cleanup_never_deletes_a_deployment_created_after_the_inventory(s3, s3_server, world, tmp_path):
    bucket = world["bucket"]
    _seed_deployments(s3_server, bucket, {"old": 90})
    write_inventory(s3, bucket, dest_bucket=world["dest"], fmt="CSV")
    for name in ("new1", "new2", "new3"):
        s3.put_object(Bucket=bucket, Key=f"deploys/{name}/index.html", Body=b"x")
    summary, items = _cleanup_plan(s3, bucket, tmp_path, "inventory", keep=1)
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "deployments.jsonl").read_text().splitlines())}
    # new2 and new3 rank beyond keep=1 but are unknown to the inventory: kept, never planned
    assert {n for n, r in rows.items() if r["delete"]} == {"old"}
    assert rows["new1"]["why"] == rows["new2"]["why"] == "created after the inventory: not in this plan"
    assert {i["group"] for i in items} == {"old"}


# --- the DAGs: source inventory through real runs (dag.test) ------------------------------------------

def test_s3_retention_runs_from_the_inventory_and_fails_once_without_one(run_dag, s3, s3_server, mysql_conn, world,
                                                                        deployment):
    from include.seed import reference_files, reference_job_rows
    from tests.integration.test_s3_retention_dag import EXPIRED, LONG_AGO, ORPHANS
    from tests.integration.test_s3_retention_dag import NOW as RUN_NOW

    bucket, table = f"{world['bucket']}-ref", f"{world['table']}_ref"
    s3.create_bucket(Bucket=bucket)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 100 + i, "last_modified": LONG_AGO} for i, k in enumerate(reference_files())]})
    seed_jobs(mysql_conn, reference_job_rows(RUN_NOW), table=table)
    deployment("s3ops_retention", approval="auto")  # the deployment's choice: a run may not loosen approval
    conf = {"bucket": bucket, "jobs_table": table, "orphan_min_age_days": 0, "source": "inventory"}

    refused = run_dag("s3_retention", conf, logical_date=RUN_NOW)  # no inventory configured yet
    assert refused.state == "failed" and refused.task_states()[("plan", -1)] == "failed"
    assert {o.key for o in iter_objects(s3, bucket)} == set(reference_files())

    write_inventory(s3, bucket, dest_bucket=world["dest"], fmt="Parquet", rows_per_file=20)
    result = run_dag("s3_retention", conf, logical_date=RUN_NOW + timedelta(seconds=1))
    assert result.state == "success", result.task_states()
    assert {o.key for o in iter_objects(s3, bucket)} == set(reference_files()) - set(EXPIRED) - set(ORPHANS)
    plan = json.loads((result.artifacts() / "plan.json").read_text())
    assert plan["source"] == "inventory" and plan["inventory"]["format"] == "Parquet"
    assert plan["inventory"]["manifest"].startswith(f"s3://{world['dest']}/inventory/{bucket}/")
    assert "Planned from the S3 Inventory of" in plan["headline"]


def test_s3_deploy_cleanup_runs_from_the_inventory(run_dag, s3, s3_server, world):
    bucket = world["bucket"]
    _seed_deployments(s3_server, bucket, {f"r{i}": 50 - i for i in range(5)})
    write_inventory(s3, bucket, dest_bucket=world["dest"], fmt="CSV", rows_per_file=4)
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 2, "approval": "auto",
                                           "source": "inventory"})
    assert result.state == "success", result.task_states()
    left = {o.key.split("/")[1] for o in iter_objects(s3, bucket, "deploys/") if o.key.count("/") > 1}
    assert left == {"r3", "r4"}
    assert result.xcom("plan")["source"] == "inventory"


def test_retention_with_versions_from_an_inventory_of_every_version_equals_the_version_listing(
        mysql_server, s3, s3_server, world, tmp_path):
    from include.aws.listing import iter_versions

    bucket = f"{world['bucket']}-v"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    names = ODD + [f"bulk/{i:05d}.dat" for i in range(300)]
    base = NOW - timedelta(days=500)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": f"jobs/{n}", "size": 10 + i, "last_modified": (base + timedelta(hours=i)).isoformat()}
        for i, n in enumerate(names)]})
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [  # newer versions: old ones noncurrent
        {"key": f"jobs/{n}", "size": 20 + i, "last_modified": (base + timedelta(days=60, hours=i)).isoformat()}
        for i, n in enumerate(names) if i % 3 == 0]})
    for n in names[1:80:7]:
        s3.delete_object(Bucket=bucket, Key=f"jobs/{n}")  # a delete marker: no current version, kept
    write_inventory(s3, bucket, dest_bucket=world["dest"], fmt="CSV", versions=True, rows_per_file=100)

    def plan(run_dir: Any, versions: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        stream, lookup_conn = jobs_db.prepare(mysql_server.connect()), jobs_db.prepare(mysql_server.connect())
        try:
            summary = write_plan([], jobs_db.iter_job_rows(stream, world["table"]), run_dir, key_prefix="jobs/",
                                 policy=Policy.at(NOW, "P3M", 7), jobs_table=world["table"], allow_empty_jobs=False,
                                 lookup=lambda names: jobs_db.rows_for_names(lookup_conn, world["table"], names),
                                 versions=versions)
        finally:
            stream.close()
            lookup_conn.close()
        return summary, [asdict(i) for c in summary["chunks"] for i in read_chunk(run_dir, c)]

    listed, listed_items = plan(tmp_path / "listing", iter_versions(s3, bucket, "jobs/"))
    with latest_snapshot(s3, bucket, include_versions=True) as snap:
        assert snap.manifest.versions and len(snap.paths) > 3
        from_inventory, inventory_items = plan(tmp_path / "inventory", snap.versions("jobs/"))
    assert inventory_items == listed_items and all(i["version_id"] for i in inventory_items)
    assert from_inventory["versions"] == listed["versions"]
    assert listed["versions"]["noncurrent_versions"]["count"] > 10
    assert listed["versions"]["versions_of_deleted_keys"]["keys"] == 12


def test_the_retention_plan_connects_to_mysql_only_once_the_inventory_is_downloaded(mysql_server, s3, s3_server,
                                                                                     world, tmp_path):
    """plan_bucket (the DAG's plan task and the command line) opens its two MySQL connections after an
    inventory's download, which can take minutes (no connection idles through it), closes both, and
    plans what a listing plans."""
    write_inventory(s3, world["bucket"], dest_bucket=world["dest"], fmt="CSV", rows_per_file=700)
    opened: list[tuple[int, Any]] = []

    def connect() -> Any:
        conn = jobs_db.prepare(mysql_server.connect())
        opened.append((s3_server.control("GET", "stats").get("GetObject", 0), conn))
        return conn

    def plan(source: str) -> dict[str, Any]:
        return plan_bucket(s3, connect, tmp_path / source, bucket=world["bucket"], key_prefix="jobs/",
                           jobs_table=world["table"], policy=Policy.at(NOW, "P3M", 7), source=source,
                           include_versions=False, allow_empty_jobs=False, trial_retention="P3M", orphan_min_age_days=7)

    s3_server.control("POST", "stats/reset")
    from_inventory = plan("inventory")
    fetched = s3_server.control("GET", "stats").get("GetObject", 0)
    assert fetched >= 5 and [n for n, _ in opened] == [fetched, fetched]  # the manifest, its 4 data files: then MySQL
    from_listing = plan("listing")
    assert len(opened) == 4 and not any(conn.open for _, conn in opened)
    assert _comparable(from_inventory) == _comparable(from_listing) and from_listing["delete_count"] > 500
