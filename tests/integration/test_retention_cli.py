"""``s3ops retention plan`` against the real local S3 server and MariaDB, with Airflow unimportable."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

from include.seed import seed_jobs
from tests.layout.test_cli import s3ops

NOW = datetime(2019, 6, 3, tzinfo=UTC)
OLD = (NOW - timedelta(days=400)).isoformat()


def test_retention_plan_prints_every_file_and_reason_and_deletes_nothing(s3, s3_server, mysql_server, mysql_conn,
                                                                           tmp_path):
    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    seed_jobs(mysql_conn, [("1", NOW - timedelta(days=200), "TRIAL", "expired"), ("2", None, "OFFICIAL", "kept"),
                           ("3", NOW - timedelta(days=10), "TRIAL", "recent"), ("4", None, "Weird", "odd")], table=table)
    keys = ["in/expired", "in/kept", "in/recent", "in/odd", "in/orphan", "in/Kept"]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": k, "size": 7, "last_modified": OLD}
                                                                      for k in keys]})
    base = ["retention", "plan", "--bucket", bucket, "--key-prefix", "in/", "--jobs-table", table,
            "--now", "2019-06-03T00:00:00Z", "--endpoint-url", s3_server.endpoint_url,
            "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
            "--mysql-database", mysql_server.database]
    result = s3ops(*base, "--out", str(tmp_path), env={**os.environ, "MYSQL_PWD": mysql_server.password})
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {line.split()[-1]: line.split()[1] for line in result.stdout.splitlines() if line.startswith("DELETE")}
    assert planned == {"in/expired": "trial_expired", "in/orphan": "orphan"}
    assert "kept (ambiguous): 1" in result.stdout and "kept (unknown_type): 1" in result.stdout
    assert "dry run: nothing was deleted" in result.stdout
    assert json.loads((tmp_path / "plan.json").read_text())["delete_count"] == 2
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(keys)

    wrong = s3ops(*base, env={**os.environ, "MYSQL_PWD": "not-the-password"})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert f"cannot connect to MySQL at 127.0.0.1:{mysql_server.port}" in wrong.stderr

    # an S3 problem is named as one, not blamed on MySQL (the MySQL login is right here)
    env = {**os.environ, "MYSQL_PWD": mysql_server.password, "AWS_CONFIG_FILE": str(tmp_path / "none")}
    profile = s3ops(*base, "--profile", "no-such-profile", env=env)
    assert profile.returncode == 2 and "Traceback" not in profile.stderr, profile.stderr[-3000:]
    assert "no-such-profile" in profile.stderr and "MySQL" not in profile.stderr


def test_retention_plan_refuses_an_empty_job_table(s3, s3_server, mysql_server, mysql_conn, tmp_path):
    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    seed_jobs(mysql_conn, [], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": "f", "size": 1, "last_modified": OLD}]})
    result = s3ops("retention", "plan", "--bucket", bucket, "--jobs-table", table, "--endpoint-url",
                   s3_server.endpoint_url, "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
                   "--mysql-database", mysql_server.database, "--out", str(tmp_path),
                   env={**os.environ, "MYSQL_PWD": mysql_server.password})
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"Refused: the job query on {table!r} returned no rows" in result.stdout


def test_retention_plan_include_versions_lists_every_version_of_the_planned_keys(s3, s3_server, mysql_server,
                                                                                  mysql_conn, tmp_path):
    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    seed_jobs(mysql_conn, [("1", NOW - timedelta(days=200), "TRIAL", "expired"), ("2", None, "OFFICIAL", "kept")],
              table=table)
    for body in (b"first", b"second"):  # two versions of each key
        s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
            {"key": k, "size": len(body), "last_modified": OLD} for k in ("in/expired", "in/kept", "in/orphan")]})
    s3.delete_object(Bucket=bucket, Key="in/orphan")  # a delete marker on top of its two versions
    stored = {(v["Key"], v["VersionId"]) for v in s3.list_object_versions(Bucket=bucket)["Versions"]}
    markers = {(m["Key"], m["VersionId"]) for m in s3.list_object_versions(Bucket=bucket)["DeleteMarkers"]}
    base = ["retention", "plan", "--bucket", bucket, "--key-prefix", "in/", "--jobs-table", table,
            "--now", "2019-06-03T00:00:00Z", "--endpoint-url", s3_server.endpoint_url,
            "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
            "--mysql-database", mysql_server.database]
    env = {**os.environ, "MYSQL_PWD": mysql_server.password}

    plain = s3ops(*base, "--out", str(tmp_path / "plain"), env=env)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "only add delete markers" in plain.stdout
    assert not [line for line in plain.stdout.splitlines() if line.startswith("DELETE") and "version" in line]
    assert {line.split()[-1] for line in plain.stdout.splitlines() if line.startswith("DELETE")} == {"in/expired"}

    result = s3ops(*base, "--include-versions", "--out", str(tmp_path / "versions"), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {(line.split()[3], line.split()[5]) for line in result.stdout.splitlines() if line.startswith("DELETE")}
    # every version of the expired key; the orphan's newest entry is a delete marker: a deleted key, kept
    # (reported), as the DAG does; the OFFICIAL one is kept
    expected = {(k, v) for k, v in stored if k == "in/expired"}
    assert planned == expected and len(planned) == 2
    plan = json.loads((tmp_path / "versions" / "plan.json").read_text())
    assert plan["include_versions"] is True and plan["versioning"] == "Enabled" and plan["delete_count"] == 2
    assert plan["versions"]["versions_of_deleted_keys"] == {"keys": 1, "count": 2, "bytes": 11}
    assert "objects, versions and delete markers" in result.stdout
    after = s3.list_object_versions(Bucket=bucket)  # a dry run: every version and marker is still there
    assert {(v["Key"], v["VersionId"]) for v in after["Versions"]} == stored
    assert {(m["Key"], m["VersionId"]) for m in after["DeleteMarkers"]} == markers


def test_retention_plan_shows_hostile_keys_escaped_one_line_each(s3, s3_server, mysql_server, mysql_conn, tmp_path):
    """Object keys are anyone's who can write to the bucket: a raw carriage return or terminal escape in
    one could overwrite its DELETE line for whoever reads the plan."""
    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "kept")], table=table)
    hostile = ["in/orphan\rKEPT in/kept", "in/\x1b[2K\x1b[1Agone", "in/line\nbreak"]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": k, "size": 7, "last_modified": OLD}
                                                                      for k in ["in/kept", *hostile]]})
    result = s3ops("retention", "plan", "--bucket", bucket, "--key-prefix", "in/", "--jobs-table", table,
                   "--now", "2019-06-03T00:00:00Z", "--endpoint-url", s3_server.endpoint_url,
                   "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
                   "--mysql-database", mysql_server.database, "--out", str(tmp_path),
                   env={**os.environ, "MYSQL_PWD": mysql_server.password})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    planned = sorted(line.split("  ")[-1] for line in result.stdout.splitlines() if line.startswith("DELETE"))
    assert planned == sorted(["in/orphan\\rKEPT in/kept", "in/\\u001b[2K\\u001b[1Agone", "in/line\\nbreak"])


def test_a_role_without_list_all_my_buckets_can_plan_and_a_refusal_names_the_permission(
        s3, s3_server, mysql_server, mysql_conn, tmp_path):
    """The access check was ListBuckets (s3:ListAllMyBuckets), which a role scoped to one bucket lacks: the
    command stopped with "S3 refused the credentials: check the login/password". It is HeadBucket on the
    bucket now, and a refusal names the request and the permission."""
    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "kept")], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": "kept", "size": 1, "last_modified": OLD}]})
    base = ["retention", "plan", "--bucket", bucket, "--jobs-table", table, "--endpoint-url", s3_server.endpoint_url,
            "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
            "--mysql-database", mysql_server.database, "--out", str(tmp_path)]
    env = {**os.environ, "MYSQL_PWD": mysql_server.password}
    s3_server.control("POST", "faults", {"mode": "denied", "operation": "ListBuckets", "count": 100})
    try:
        allowed = s3ops(*base, env=env)
        assert allowed.returncode == 0, allowed.stderr[-3000:]
        s3_server.control("POST", "faults", {"mode": "denied", "operation": "HeadBucket", "bucket": bucket, "count": 100})
        refused = s3ops(*base, env=env)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "S3 refused HeadBucket (" in refused.stderr and "s3:ListBucket on the bucket" in refused.stderr
    missing = s3ops(*[a if a != bucket else f"{bucket}-gone" for a in base], env=env)
    assert missing.returncode == 2 and f"bucket '{bucket}-gone' does not exist" in missing.stderr


def test_a_jobs_table_the_user_cannot_read_is_named_before_anything_is_listed(s3, s3_server, mysql_server,
                                                                              mysql_conn, tmp_path):
    """A login without SELECT on the table, or a misspelt table, got MySQL's bare error only once the plan
    read the rows (after an inventory's download); it is one line naming jobs_table, before anything is listed."""
    from tests.integration.test_retention_versions import select_only_login

    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    for name in (table, f"{table}_other"):
        seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "kept")], table=name)
    with select_only_login(mysql_server, f"{table}_other") as (user, password, _):
        for login, name, pwd in ((user, table, password), (mysql_server.user, f"{table}_typo", mysql_server.password)):
            result = s3ops("retention", "plan", "--bucket", bucket, "--jobs-table", name, "--endpoint-url",
                           s3_server.endpoint_url, "--mysql-port", str(mysql_server.port), "--mysql-user", login,
                           "--mysql-database", mysql_server.database, "--out", str(tmp_path),
                           env={**os.environ, "MYSQL_PWD": pwd})
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
            assert f"jobs_table {name!r} cannot be read" in result.stderr and len(result.stderr.splitlines()) == 1
            assert not (tmp_path / "plan.json").exists()  # nothing was listed or planned


def test_a_completed_at_column_that_holds_no_times_is_named_before_anything_is_listed(s3, s3_server, mysql_server,
                                                                                      mysql_conn, tmp_path):
    """completedAt as a DATE or a VARCHAR column crashed the plan at the first completed TRIAL row (a traceback:
    'datetime.date' object has no attribute 'tzinfo'; the DAG retried it three times); it is one line naming
    the column, before anything is listed."""
    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    cur = mysql_conn.cursor()
    for name, column, value in ((f"{table}_date", "DATE", "2019-01-01"), (f"{table}_text", "VARCHAR(40)",
                                                                          "2019-01-01 10:00:00")):
        cur.execute(f"CREATE TABLE `{name}` (jobId VARCHAR(64), completedAt {column} NULL, type VARCHAR(32), "
                    "sourceData VARCHAR(64))")
        cur.execute(f"INSERT INTO `{name}` VALUES ('1', %s, 'TRIAL', 'a'), ('2', NULL, 'OFFICIAL', 'b')", (value,))
    mysql_conn.commit()
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": k, "size": 1, "last_modified": OLD}
                                                                      for k in ("a", "b", "c")]})
    for name in (f"{table}_date", f"{table}_text"):
        result = s3ops("retention", "plan", "--bucket", bucket, "--jobs-table", name, "--endpoint-url",
                       s3_server.endpoint_url, "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
                       "--mysql-database", mysql_server.database, "--out", str(tmp_path / name),
                       env={**os.environ, "MYSQL_PWD": mysql_server.password})
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert f"jobs_table {name!r}: completedAt is" in result.stderr and len(result.stderr.splitlines()) == 1
        assert not (tmp_path / name / "plan.json").exists()


def test_an_out_folder_that_cannot_be_written_is_named_before_anything_is_listed(s3, s3_server, mysql_server,
                                                                                 mysql_conn, tmp_path):
    """``--out`` naming a file (or a folder the user may not write) ended in a traceback once the plan's first
    chunk was written, after the bucket was listed; it is one line naming the folder, before anything is listed."""
    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "kept")], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": k, "size": 1, "last_modified": OLD}
                                                                      for k in ("kept", "gone")]})
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    result = s3ops("retention", "plan", "--bucket", bucket, "--jobs-table", table, "--endpoint-url",
                   s3_server.endpoint_url, "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
                   "--mysql-database", mysql_server.database, "--out", str(taken / "plan"),
                   env={**os.environ, "MYSQL_PWD": mysql_server.password})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"--out {str(taken / 'plan')!r}" in result.stderr and len(result.stderr.splitlines()) == 1
    # a bucket that cannot be read is refused before --out is made: the refused run leaves no folder behind
    fresh = tmp_path / "fresh"
    missing = s3ops("retention", "plan", "--bucket", f"{bucket}-none", "--jobs-table", table, "--endpoint-url",
                    s3_server.endpoint_url, "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
                    "--mysql-database", mysql_server.database, "--out", str(fresh),
                    env={**os.environ, "MYSQL_PWD": mysql_server.password})
    assert missing.returncode == 2 and f"{bucket}-none" in missing.stderr and not fresh.exists(), missing.stderr[-3000:]


def test_retention_plan_keeps_files_a_row_spells_another_way_on_a_table_with_and_without_such_rows(
        s3, s3_server, mysql_server, mysql_conn, tmp_path):
    """Through the command line's plan (``plan_bucket``), which asks the table once which added characters its
    rows carry and looks up only those spellings: every loosely spelled OFFICIAL row still keeps its file, and
    the orphan beside them is planned; on a table of clean rows the same files are orphans."""
    bucket = f"rcli-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    keys = ["in/a.dat", "in/b.dat", "in/c.dat", "in/d.dat", "in/e.dat", "in/orphan.dat"]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": k, "size": 7, "last_modified": OLD}
                                                                      for k in keys]})
    odd = [("1", None, "OFFICIAL", "/a.dat"), ("2", None, "OFFICIAL", " b.dat"), ("3", None, "OFFICIAL", "c.dat\r"),
           ("4", None, "OFFICIAL", "in/d.dat"), ("5", None, "OFFICIAL", "e.dat\t"), ("6", None, "OFFICIAL", "other")]
    clean = [("1", None, "OFFICIAL", "other")]
    planned = {}
    for name, rows in (("odd", odd), ("clean", clean)):
        table = f"jobs_{uuid.uuid4().hex[:10]}"
        seed_jobs(mysql_conn, rows, table=table)
        result = s3ops("retention", "plan", "--bucket", bucket, "--key-prefix", "in/", "--jobs-table", table,
                       "--now", "2019-06-03T00:00:00Z", "--endpoint-url", s3_server.endpoint_url,
                       "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
                       "--mysql-database", mysql_server.database, "--out", str(tmp_path / name),
                       env={**os.environ, "MYSQL_PWD": mysql_server.password})
        assert result.returncode == 0, result.stderr[-3000:]
        planned[name] = {line.split()[-1] for line in result.stdout.splitlines() if line.startswith("DELETE")}
    assert planned["odd"] == {"in/orphan.dat"}
    assert planned["clean"] == set(keys)


def test_the_spelling_marks_of_a_table(mysql_server, mysql_conn):
    from include.retention import jobs as jobs_db
    from include.retention.policy import SpellingMarks, spellings

    marks_of = ("slash", "space", "end", "prefix", "encoded", "uri")

    def marks(rows, key_prefix="p/"):
        table = f"jobs_{uuid.uuid4().hex[:10]}"
        seed_jobs(mysql_conn, [(str(i), None, "OFFICIAL", s) for i, s in enumerate(rows)], table=table)
        found = jobs_db.spelling_marks(mysql_conn, table, key_prefix)
        return {m for m in marks_of if getattr(found, m)}

    assert marks(["a", "b/c", "x_z", "in/p", "s3:/x", "a:b//c"]) == set()  # "in/p" holds no "p/"; LIKE's _ is literal
    assert marks([]) == set()
    assert marks(["/a"]) == {"slash"} and marks([" a"]) == {"space"}
    assert marks(["a\r"]) == marks(["a\n"]) == marks(["a\t"]) == marks(["a "]) == {"end"}
    assert marks(["x/P/a"]) == {"prefix"}  # anywhere, in the table's case-insensitive collation
    assert marks(["p/a"], key_prefix="") == set()  # no prefix: nothing to add
    assert marks(["ab"], key_prefix="%") == set()
    assert marks(["a%b"], key_prefix="%") == {"prefix", "encoded"}
    assert marks(["a%20b"]) == marks(["a+b"]) == {"encoded"}
    assert marks(["s3://b/a"]) == marks(["S3A://b/a"]) == {"uri"}

    clean = SpellingMarks(**dict.fromkeys(marks_of, False))
    assert spellings("a b/é", "p/", bucket="bk", marks=clean) == ["a b/é", "a b/Ã©"]
    every = spellings("a b/é", "p/", bucket="bk")
    assert {"/a b/é", " a b/é", "a b/é\r\n", "p/a b/é", "a%20b/%C3%A9", "a%20b%2F%C3%A9", "a+b/%C3%A9",
            "s3://bk/p/a b/é", "s3a://bk/p/a%20b/%C3%A9", "s3a://bk/p/a b/é\n", " s3://bk/p/a b/é"} <= set(every)
    assert not any(s.startswith("/s3") for s in every)

    def only(*on):
        return set(spellings("a b/é", "p/", bucket="bk", marks=SpellingMarks(**{m: m in on for m in marks_of})))

    assert all(only(mark) > only() for mark in marks_of if mark != "uri")  # each mark adds spellings of its own
    assert only("uri") == only()  # a URI holds the whole key, so no row can hold one where none holds key_prefix
    assert only("uri", "prefix") - only("prefix") == {f"{scheme}bk/p/a b/{e}" for scheme in ("s3://", "s3a://")
                                                      for e in ("é", "Ã©")}


def listing_out_of_order(monkeypatch):
    """The real listing, handed on in reverse: what a server that does not sort keys as S3 does gives."""
    from include.inventory.read import ObjectSource

    real = ObjectSource.objects
    monkeypatch.setattr(ObjectSource, "objects", lambda self, prefix="", on_batch=None: iter(
        sorted(real(self, prefix, on_batch), key=lambda o: o.key, reverse=True)))


def test_a_listing_out_of_key_order_is_one_line_and_plans_nothing(s3, s3_server, mysql_server, mysql_conn, tmp_path,
                                                                   monkeypatch, capsys):
    """A non-conforming server's listing stops the merge join (its orphans would be wrong): that ended in a
    traceback; it is one line saying why and what to do, exit 2, and no plan."""
    from include.retention.cli import main

    bucket, table = f"rcli-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in ("a.dat", "b.dat")]})
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "a.dat")], table=table)
    listing_out_of_order(monkeypatch)
    monkeypatch.setenv("MYSQL_PWD", mysql_server.password)
    code = main(["--bucket", bucket, "--jobs-table", table, "--now", "2019-06-03T00:00:00Z", "--endpoint-url",
                 s3_server.endpoint_url, "--mysql-port", str(mysql_server.port), "--mysql-user", mysql_server.user,
                 "--mysql-database", mysql_server.database, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "not in key order ('a.dat' after 'b.dat')" in err and "source: inventory" in err
    assert not (tmp_path / "out" / "plan.json").exists()
