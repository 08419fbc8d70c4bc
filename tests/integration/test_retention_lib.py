"""include.retention.policy + include.retention.jobs against the real local MariaDB and S3 server (no Airflow run)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from include.aws.listing import iter_objects
from include.deletion.plan import GuardRefused, check_guards, delete_chunk
from include.retention import jobs as jobs_db
from include.retention.expired_rows import EXPIRED_ROWS_DIR, ExpiredRowsWriter, planned_rows
from include.retention.policy import Policy, Unmatchable, make_recheck, refusals, write_plan
from include.seed import seed_jobs

NOW = datetime(2019, 6, 3, tzinfo=UTC)
OLD = (NOW - timedelta(days=400)).isoformat()
# Values whose order differs between a _ci / PAD SPACE collation and binary order, and that S3 must
# list in the same order as MySQL's binary sort.
ODD = ["a", "A", "a ", "a\t", "a!", "B", "b", "é", "e", "z", "Z", "ü", "\u00a0x", "\U0001f600", "~", "a b", "x/y", "0", "_"]


@pytest.fixture
def bucket(s3):
    name = f"ret-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def table():
    return f"jobs_{uuid.uuid4().hex[:10]}"


def conn_for(mysql_server):
    return jobs_db.prepare(mysql_server.connect())


def test_table_names_are_validated_and_quoted():
    assert jobs_db.quote_table("jobs") == "`jobs`"
    assert jobs_db.quote_table("s3ops.jobs_1") == "`s3ops`.`jobs_1`"
    for bad in ["", "jobs; DROP TABLE x", "`jobs`", "a.b.c", "1jobs", "jo bs", "x" * 65]:
        with pytest.raises(ValueError, match="jobs_table .* is not a plain table name"):
            jobs_db.quote_table(bad)


def test_mysql_binary_order_equals_s3_key_order(mysql_server, mysql_conn, s3, s3_server, bucket, table):
    rows = [(f"j{i}", None, "TRIAL", v) for i, v in enumerate(ODD)] + [("jnull", None, "TRIAL", None)]
    seed_jobs(mysql_conn, rows, table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": f"p/{v}", "size": 1} for v in ODD]})
    conn = conn_for(mysql_server)
    try:
        from_db = [r.source_data for r in jobs_db.iter_job_rows(conn, table)]
    finally:
        conn.close()
    by_utf8 = sorted(ODD, key=lambda v: v.encode("utf-8"))
    assert from_db == [None, *by_utf8]
    assert [o.key[2:] for o in iter_objects(s3, bucket, "p/")] == by_utf8


def test_lookup_uses_the_table_collation_and_maps_rows_back(mysql_server, mysql_conn, table):
    seed_jobs(mysql_conn, [("1", None, "TRIAL", "abc"), ("2", None, "OFFICIAL", "Other"), ("3", None, "TRIAL", "x")],
              table=table)
    conn = conn_for(mysql_server)
    try:
        found = jobs_db.rows_for_names(conn, table, {n: () for n in ["abc", "ABC", "abc ", "other", "nope"]})
        # a name's other spellings answer for the name; rows are found through any of them, in one query
        grouped = jobs_db.rows_for_names(conn, table, {"q": ["/q", "x", "abc"], "z": ["/z"], "other": []})
    finally:
        conn.close()
    assert {k: [r.job_id for r in v] for k, v in found.items()} == {"abc": ["1"], "ABC": ["1"], "abc ": ["1"], "other": ["2"]}
    assert {k: sorted(r.job_id for r in v) for k, v in grouped.items()} == {"q": ["1", "3"], "other": ["2"]}


def test_lookup_of_a_name_the_column_cannot_hold(mysql_server, mysql_conn):
    """A latin1 column: a name with 'ł' is Unmatchable unless another of its spellings found a row (the rows
    win: the file is ambiguous then, kept either way); a spelling it cannot hold is not queried (MySQL would
    refuse the whole query: "Illegal mix of collations")."""
    cur = mysql_conn.cursor()
    cur.execute("CREATE TABLE jobs_latin1 (jobId VARCHAR(64), completedAt DATETIME NULL, type VARCHAR(32), "
                "sourceData VARCHAR(100)) CHARACTER SET latin1")
    cur.execute("INSERT INTO jobs_latin1 VALUES ('1', NULL, 'OFFICIAL', 'cafe.dat')")
    mysql_conn.commit()
    conn = conn_for(mysql_server)
    try:
        found = jobs_db.rows_for_names(conn, "jobs_latin1", {"ł.dat": ["/ł.dat"], "łcafe.dat": ["cafe.dat", "/łcafe.dat"],
                                                             "plain.dat": ["ł/plain.dat"]})
    finally:
        conn.close()
        cur.execute("DROP TABLE jobs_latin1")
    assert isinstance(found["ł.dat"], Unmatchable) and found["ł.dat"].charset == "latin1"
    assert [r.job_id for r in found["łcafe.dat"]] == ["1"] and not isinstance(found["łcafe.dat"], Unmatchable)
    assert "plain.dat" not in found


def test_plan_then_a_new_job_row_saves_its_file(mysql_server, mysql_conn, s3, s3_server, bucket, table, tmp_path):
    seed_jobs(mysql_conn, [("1", NOW - timedelta(days=200), "TRIAL", "f1"), ("2", None, "OFFICIAL", "f2")], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 5, "last_modified": OLD} for k in ("f1", "f2", "f3", "F2")]})
    policy = Policy.at(NOW, "P3M", 7)
    stream, lookup_conn = conn_for(mysql_server), conn_for(mysql_server)
    try:
        def lookup(names):
            return jobs_db.rows_for_names(lookup_conn, table, names)

        summary = write_plan(iter_objects(s3, bucket), jobs_db.iter_job_rows(stream, table), tmp_path,
                             key_prefix="", policy=policy, lookup=lookup, jobs_table=table,
                             allow_empty_jobs=False)
        plan_rows = [json.loads(line) for line in (tmp_path / "plan" / "00000.jsonl").read_text().splitlines()]
        assert {r["key"]: r["reason"] for r in plan_rows} == {"f1": "trial_expired", "f3": "orphan"}
        # "F2" differs from an OFFICIAL job's sourceData only by case: the _ci table calls it equal
        assert summary["protected"]["by_cause"]["ambiguous"] == 1
        assert summary["protected"]["ambiguous_samples"] == ["F2"]
        assert summary["delete_count"] == 2 and summary["scanned_count"] == 4

        # between plan and delete, a job starts using f3
        seed_jobs(mysql_conn, [("4", None, "TRIAL", "f3")], table=table, replace=False)
        done = delete_chunk(s3, bucket, tmp_path, "00000", recheck=make_recheck(lookup, "", policy), dry_run=False)
    finally:
        stream.close()
        lookup_conn.close()
    assert done["deleted"] == 1 and done["skipped"] == 1
    audit = json.loads((tmp_path / "audit" / "00000.json").read_text())
    assert audit["skipped"][0]["key"] == "f3" and audit["skipped"][0]["why"] == "trial_running"
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == ["F2", "f2", "f3"]


def test_empty_job_table_is_refused(mysql_server, mysql_conn, s3, s3_server, bucket, table, tmp_path):
    seed_jobs(mysql_conn, [], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": "a", "size": 1, "last_modified": OLD}]})
    conn = conn_for(mysql_server)
    try:
        summary = write_plan(iter_objects(s3, bucket), jobs_db.iter_job_rows(conn, table), tmp_path,
                             key_prefix="", policy=Policy.at(NOW), lookup=None, jobs_table=table,
                             allow_empty_jobs=False)
    finally:
        conn.close()
    assert summary["jobs"]["rows"] == 0 and summary["delete_count"] == 1
    assert len(summary["refusals"]) == 1 and "returned no rows" in summary["refusals"][0]
    assert json.loads((tmp_path / "plan.json").read_text())["refusals"] == summary["refusals"]
    assert refusals(summary, jobs_table=table, allow_empty_jobs=True) == []
    with pytest.raises(GuardRefused, match="returned no rows"):
        check_guards(summary, max_delete_count=100, max_delete_fraction=None)


def test_a_failing_listing_makes_the_plan_incomplete(s3, s3_server, bucket, tmp_path):
    s3_server.control("POST", "seed", {"bucket": bucket, "generate": {"prefix": "k/", "count": 1500, "size": 1,
                                                                     "last_modified": OLD}})
    s3_server.control("POST", "faults", {"mode": "error", "operation": "ListObjectsV2", "count": 50})
    try:
        from include.aws.client import client_from_args

        client = client_from_args(endpoint_url=s3_server.endpoint_url, region_name="us-east-1", max_attempts=2)
        pages = iter_objects(client, bucket)
        summary = write_plan(pages, [], tmp_path, key_prefix="", policy=Policy.at(NOW, "P3M", 0), lookup=None,
                             jobs_table="t", allow_empty_jobs=True)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    assert summary["listing_complete"] is False
    assert any("listing the bucket failed" in r for r in summary["refusals"])


def _plan_recording_rows(conn, table, run_dir, policy):
    """A plan of no objects that records the table's expired TRIAL rows (what ``purge_job_rows`` plans)."""
    return write_plan([], jobs_db.iter_job_rows(conn, table), run_dir, key_prefix="", policy=policy, lookup=None,
                      jobs_table=table, allow_empty_jobs=False, expired_rows=ExpiredRowsWriter(run_dir, policy))


def test_purge_deletes_only_the_rows_the_plan_recorded_and_that_still_are_expired(mysql_server, mysql_conn, table,
                                                                                   tmp_path):
    """The approver is shown a count of expired TRIAL rows: the purge deletes those rows, not whatever
    matches the cutoff when it runs (a row added after the approval stays, so does one changed since)."""
    seed_jobs(mysql_conn, [
        ("old-trial", NOW - timedelta(days=200), " trial ", "a"),
        ("changed", NOW - timedelta(days=300), "TRIAL", "f"),
        ("no-source", NOW - timedelta(days=300), "TRIAL", None),
        ("new-trial", NOW - timedelta(days=10), "TRIAL", "b"),
        ("running", None, "TRIAL", "c"),
        ("official", NOW - timedelta(days=900), "OFFICIAL", "d"),
        ("beta", NOW - timedelta(days=900), "BETA", "e"),
    ], table=table)
    policy = Policy.at(NOW, "P3M", 7)
    conn = conn_for(mysql_server)
    try:
        summary = _plan_recording_rows(conn, table, tmp_path, policy)
        recorded = summary["expired_trial_rows_files"]
        # after the approval: a new expired TRIAL row, and a planned one that became OFFICIAL
        seed_jobs(mysql_conn, [("late-trial", NOW - timedelta(days=400), "TRIAL", "g")], table=table, replace=False)
        cur = mysql_conn.cursor()
        cur.execute(f"UPDATE `{table}` SET type = 'OFFICIAL' WHERE jobId = 'changed'")
        mysql_conn.commit()
        first = jobs_db.purge_planned_rows(conn, table, planned_rows(tmp_path, recorded), policy)
        again = jobs_db.purge_planned_rows(conn, table, planned_rows(tmp_path, recorded), policy)  # a retry
        cur = conn.cursor()
        cur.execute(f"SELECT jobId FROM `{table}` ORDER BY jobId")
        left = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    assert summary["expired_trial_rows"] == recorded["count"] == 3
    rows = [json.loads(line) for f in sorted((tmp_path / EXPIRED_ROWS_DIR).iterdir()) for line in f.read_text().splitlines()]
    assert sorted(r["jobId"] for r in rows) == ["changed", "no-source", "old-trial"]
    assert (first["planned"], first["deleted"], first["kept_count"]) == (3, 2, 1)
    assert [r["jobId"] for r in first["kept_rows"]] == ["changed"]  # which recorded row stayed, not only how many
    assert (again["planned"], again["deleted"], again["kept_count"]) == (3, 0, 3)  # a new purge, not a resumed one
    assert left == ["beta", "changed", "late-trial", "new-trial", "official", "running"]


def test_a_purge_resumed_after_a_failure_sends_no_committed_batch_again_and_counts_each_row_once(
        mysql_server, mysql_conn, table, monkeypatch):
    """A purge that failed after its first batch, retried: the retry deleted the rest and reported the first
    batch's rows as "changed or gone since the plan" (its own count only). With the first attempt's record it
    goes on after the last committed batch; a record it cannot read is not trusted (everything is sent again)."""
    old = NOW - timedelta(days=200)
    seed_jobs(mysql_conn, [(f"j{i}", old, "TRIAL", f"s{i}") for i in range(5)], table=table)
    policy = Policy.at(NOW, "P3M", 7)
    rows = [{"jobId": f"j{i}", "completedAt": old.replace(tzinfo=None).isoformat() + "Z", "type": "TRIAL",
             "sourceData": f"s{i}"} for i in range(5)]
    monkeypatch.setattr(jobs_db, "PURGE_BATCH", 2)
    saved: list[dict] = []
    sent: list[list[str]] = []
    real = jobs_db._purge_batch

    def purge_batch(conn, quoted, part, cutoff, name):
        sent.append([r["jobId"] for r in part])
        if len(sent) == 2:
            raise RuntimeError("MySQL server has gone away")
        return real(conn, quoted, part, cutoff, name)

    monkeypatch.setattr(jobs_db, "_purge_batch", purge_batch)
    conn = conn_for(mysql_server)
    lists = [rows[:4], rows[4:]]
    try:
        with pytest.raises(RuntimeError, match="gone away"):
            jobs_db.purge_planned_rows(conn, table, lists, policy, save=lambda r: saved.append(json.loads(json.dumps(r))))
        done = jobs_db.purge_planned_rows(conn, table, lists, policy, saved[-1])
        junk = jobs_db.purge_planned_rows(conn, table, lists, policy, {**saved[-1], "deleted": "2"})
        with pytest.raises(jobs_db.PurgeMismatch, match="does not add up|not written by this purge"):
            jobs_db.purge_planned_rows(conn, table, lists, policy, {**saved[-1], "done_through": [1, 0]})
        monkeypatch.setattr(jobs_db, "PURGE_BATCH", 4)  # [0, 2] then names the middle of a batch
        resized = jobs_db.purge_planned_rows(conn, table, lists, policy, saved[-1])
    finally:
        conn.close()
    assert [r["done_through"] for r in saved] == [[0, 2]]
    assert sent[:4] == [["j0", "j1"], ["j2", "j3"], ["j2", "j3"], ["j4"]]  # the retry: only what was not committed
    assert (done["planned"], done["deleted"], done["kept_count"], done["done_through"]) == (5, 5, 0, [2, 0])
    assert (junk["deleted"], junk["kept_count"]) == (0, 5) and sent[4:7] == [["j0", "j1"], ["j2", "j3"], ["j4"]]
    assert sent[7] == ["j4"]  # a record that skips rows it did not count: what is left is sent, then refused
    assert (resized["deleted"], resized["kept_count"]) == (0, 5) and sent[8:] == [["j0", "j1", "j2", "j3"], ["j4"]]
    assert table_rows_left(mysql_conn, table) == 0


def table_rows_left(mysql_conn, table) -> int:
    cur = mysql_conn.cursor()
    cur.execute(f"SELECT COUNT(*) FROM `{table}`")
    return cur.fetchone()[0]


def test_the_purge_matches_each_recorded_row_exactly_in_a_table_without_a_unique_job_id(mysql_server, mysql_conn,
                                                                                       table, tmp_path):
    """Deleting by ``jobId IN (…)`` also took a row added after the approval with the same jobId, or one the
    table's ``_ci`` collation calls equal ('ABC ' for 'abc'), and a NULL jobId was recorded as "None"."""
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NULL, completedAt TIMESTAMP NULL, type VARCHAR(32) NULL, "
                "sourceData VARCHAR(64) NULL, KEY (jobId)) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    old = (NOW - timedelta(days=200)).replace(tzinfo=None)
    cur.executemany(f"INSERT INTO `{table}` VALUES (%s, %s, %s, %s)",
                    [("J1", old, "TRIAL", "a"), ("abc", old, "TRIAL", "b"), (None, old, "TRIAL", "c")])
    mysql_conn.commit()
    policy = Policy.at(NOW, "P3M", 7)
    conn = conn_for(mysql_server)
    try:
        summary = _plan_recording_rows(conn, table, tmp_path, policy)
        # after the approval: expired TRIAL rows that share a key with planned ones, or match it loosely
        cur.executemany(f"INSERT INTO `{table}` VALUES (%s, %s, %s, %s)",
                        [("J1", old, "TRIAL", "late"), ("ABC ", old, "TRIAL", "b"), ("None", old, "TRIAL", "d")])
        mysql_conn.commit()
        counts = jobs_db.purge_planned_rows(conn, table, planned_rows(tmp_path, summary["expired_trial_rows_files"]),
                                            policy)
        cur.execute(f"SELECT jobId, sourceData FROM `{table}` ORDER BY sourceData")
        left = cur.fetchall()
        # an identical copy of a planned row, added since: the batch would delete more than it names
        cur.execute(f"INSERT INTO `{table}` VALUES (%s, %s, %s, %s)", ("late", old, "TRIAL", "x"))
        cur.execute(f"INSERT INTO `{table}` VALUES (%s, %s, %s, %s)", ("late", old, "TRIAL", "x"))
        mysql_conn.commit()
        with pytest.raises(jobs_db.PurgeMismatch, match="rolled back"):
            jobs_db.delete_expired_trials(conn, table, [{"jobId": "late", "completedAt": old.isoformat() + "Z",
                                                         "type": "TRIAL", "sourceData": "x"}], policy)
        cur.execute(f"SELECT COUNT(*) FROM `{table}` WHERE jobId = 'late'")
        still = cur.fetchone()[0]
    finally:
        conn.close()
    assert (counts["planned"], counts["deleted"], counts["kept_rows"]) == (3, 3, [])
    assert left == (("ABC ", "b"), ("None", "d"), ("J1", "late"))
    assert still == 2


def test_the_purge_counts_matches_per_recorded_row_and_reads_other_charsets(mysql_server, mysql_conn, table,
                                                                            tmp_path):
    """A batch check on the total let a gone recorded row hide an unplanned copy of another; and comparing
    a latin1 or utf16 column's own bytes with the UTF-8 the plan recorded purged nothing."""
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (id INT AUTO_INCREMENT PRIMARY KEY, jobId VARCHAR(64) CHARACTER SET latin1, "
                "completedAt TIMESTAMP(3) NULL, type CHAR(8) CHARACTER SET latin1, "
                "sourceData VARCHAR(64) CHARACTER SET utf16) CHARACTER SET latin1")
    old = (NOW - timedelta(days=200)).replace(tzinfo=None, microsecond=250_000)
    cur.executemany(f"INSERT INTO `{table}` (jobId, completedAt, type, sourceData) VALUES (%s, %s, %s, %s)",
                    [("j\u00e9", old, "TRIAL", "caf\u00e9"), ("a", old, "TRIAL", "x"), ("b", old, "TRIAL", "y")])
    mysql_conn.commit()
    policy = Policy.at(NOW, "P3M", 7)
    conn = conn_for(mysql_server)
    try:
        summary = _plan_recording_rows(conn, table, tmp_path, policy)
        rows = [r for part in planned_rows(tmp_path, summary["expired_trial_rows_files"]) for r in part]
        # after the approval: "b" goes, and an unplanned copy of "a" comes (the batch total still balances)
        cur.execute(f"DELETE FROM `{table}` WHERE jobId = 'b'")
        cur.execute(f"INSERT INTO `{table}` (jobId, completedAt, type, sourceData) VALUES ('a', %s, 'TRIAL', 'x')",
                    (old,))
        mysql_conn.commit()
        with pytest.raises(jobs_db.PurgeMismatch, match="did not record"):
            jobs_db.delete_expired_trials(conn, table, rows, policy)
        cur.execute(f"SELECT COUNT(*) FROM `{table}`")
        after_refusal = cur.fetchone()[0]
        cur.execute(f"DELETE FROM `{table}` WHERE jobId = 'a' ORDER BY id DESC LIMIT 1")  # the copy goes
        mysql_conn.commit()
        deleted = jobs_db.delete_expired_trials(conn, table, rows, policy)
        cur.execute(f"SELECT COUNT(*) FROM `{table}`")
        left = cur.fetchone()[0]
    finally:
        conn.close()
    assert len(rows) == 3 and after_refusal == 3  # rolled back: nothing of the batch deleted
    assert deleted == 2 and left == 0  # "j\u00e9"/"caf\u00e9" in latin1 and utf16 columns, and "a"


def _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, *, allow_empty_jobs=False, recheck_keys=(),
                     key_prefix=""):
    """Plan ``key_prefix`` with the real lookup; returns the summary, {key: reason} and the delete re-check's
    answer for ``recheck_keys``."""
    from include.deletion.plan import PlanItem

    stream, lookup_conn = conn_for(mysql_server), conn_for(mysql_server)
    try:
        def lookup(names):
            return jobs_db.rows_for_names(lookup_conn, table, names)

        summary = write_plan(iter_objects(s3, bucket, key_prefix), jobs_db.iter_job_rows(stream, table), tmp_path,
                             key_prefix=key_prefix, policy=Policy.at(NOW, "P3M", 7), lookup=lookup, jobs_table=table,
                             allow_empty_jobs=allow_empty_jobs, bucket=bucket,
                             marks=jobs_db.spelling_marks(lookup_conn, table, key_prefix, bucket))  # as plan_bucket does
        rechecked = make_recheck(lookup, key_prefix, Policy.at(NOW, "P3M", 7), bucket=bucket)(
            [PlanItem(k, 1, "orphan") for k in recheck_keys])
        plan_rows = [json.loads(line) for c in summary["chunks"]
                     for line in (tmp_path / "plan" / f"{c}.jsonl").read_text().splitlines()]
        return summary, {r["key"]: r["reason"] for r in plan_rows}, rechecked
    finally:
        stream.close()
        lookup_conn.close()


def test_an_nfd_key_and_an_nfc_job_row_are_ambiguous_under_general_ci(mysql_server, mysql_conn, s3, s3_server,
                                                                       bucket, table, tmp_path):
    """Issue 12: ``utf8mb4_general_ci`` calls NFC ``café`` and NFD ``cafe`` + U+0301 different, so the NFD
    file (as macOS names files) was deleted as an orphan although a job names it."""
    nfc, nfd = "caf\u00e9.dat", "cafe\u0301.dat"
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", nfc), ("2", NOW - timedelta(days=300), "TRIAL", "n\u0303o.dat")],
              table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in (nfd, "\u00f1o.dat", "orphan.dat")]})
    summary, planned, rechecked = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, recheck_keys=[nfd])
    assert planned == {"orphan.dat": "orphan"}
    assert summary["protected"]["by_cause"]["ambiguous"] == 2
    assert sorted(summary["protected"]["ambiguous_samples"]) == sorted([nfd, "\u00f1o.dat"])
    assert rechecked == {nfd: "ambiguous"}


def test_a_latin1_jobs_table_keeps_keys_it_cannot_hold_as_unmatchable(mysql_server, mysql_conn, s3, s3_server,
                                                                     bucket, table, tmp_path):
    """Issue 12: a key with a character latin1 cannot hold crashed the plan ("Illegal mix of collations")."""
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt TIMESTAMP NULL, "
                "type VARCHAR(32) NULL, sourceData VARCHAR(64) NULL, KEY (sourceData)) CHARACTER SET latin1")
    mysql_conn.commit()
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "caf\u00e9"), ("2", None, "OFFICIAL", "\u20acuro"),
                           ("3", NOW - timedelta(days=300), "TRIAL", "done")], table=table)
    keys = ["caf\u00e9", "\u20acuro", "done", "\u0142\u00f3d\u017a", "x\U0001f600", "a?b", "plain"]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": k, "size": 1, "last_modified": OLD}
                                                                     for k in keys]})
    conn = conn_for(mysql_server)
    try:
        assert jobs_db.source_charset(conn, table) == "latin1"
    finally:
        conn.close()
    summary, planned, rechecked = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path,
                                                   recheck_keys=["x\U0001f600", "plain"])
    assert planned == {"done": "trial_expired", "a?b": "orphan", "plain": "orphan"}
    assert summary["protected"]["by_cause"]["official"] == 2
    assert summary["protected"]["by_cause"]["unmatchable"] == 2
    assert sorted(summary["protected"]["unmatchable_samples"]) == sorted(["\u0142\u00f3d\u017a", "x\U0001f600"])
    assert "sourceData column cannot hold (its character set, or its length)" in summary["headline"]
    assert rechecked == {"x\U0001f600": "unmatchable"}


def test_a_name_longer_than_the_source_data_column_is_unmatchable_and_kept(mysql_server, mysql_conn, s3, s3_server,
                                                                           bucket, table, tmp_path):
    """A legacy table without strict mode stores a name longer than VARCHAR(n) cut short: its row then names
    another file, and the real file looked unused (an orphan, deleted)."""
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt TIMESTAMP NULL, "
                "type VARCHAR(32) NULL, sourceData VARCHAR(16) NULL, KEY (sourceData)) CHARACTER SET utf8mb4")
    mysql_conn.commit()
    long_name = "report-of-2019-06-01.csv"  # 24 characters; the row holds its first 16, as such a table stores it
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", long_name[:16]), ("2", None, "OFFICIAL", "short.csv")], table=table)
    keys = [long_name, "short.csv", "unused.csv"]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": k, "size": 1, "last_modified": OLD}
                                                                     for k in keys]})
    summary, planned, rechecked = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, recheck_keys=[long_name])
    assert planned == {"unused.csv": "orphan"}
    assert summary["protected"]["unmatchable_samples"] == [long_name]
    assert rechecked == {long_name: "unmatchable"}


def test_a_whole_key_longer_than_the_source_data_column_keeps_its_file_as_ambiguous(mysql_server, mysql_conn, s3,
                                                                                     s3_server, bucket, table, tmp_path):
    """A legacy table holding whole keys, without strict mode, in a column the name fits but the key does not:
    the row holds the key cut short (``data/abcdefg`` for ``data/abcdefghij``). The whole-key spelling was not
    looked up at all (too long for the column), so the file went as an orphan although an OFFICIAL row named it.
    The spelling is looked up as such a table stores it, cut to the column's width: the file is ambiguous, kept."""
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt TIMESTAMP NULL, "
                "type VARCHAR(32) NULL, sourceData VARCHAR(12) NULL, KEY (sourceData)) CHARACTER SET utf8mb4")
    cur.execute("SET SESSION sql_mode = ''")  # the legacy writer: no strict mode, a long value is cut
    cur.execute(f"INSERT INTO `{table}` VALUES ('1', NULL, 'OFFICIAL', 'data/abcdefghij'), "
                "('2', NULL, 'OFFICIAL', 'data/zz')")
    mysql_conn.commit()
    cur.execute(f"SELECT sourceData FROM `{table}` ORDER BY jobId")
    assert [r[0] for r in cur.fetchall()] == ["data/abcdefg", "data/zz"]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in ["data/abcdefghij", "data/zz", "data/gone"]]})
    summary, planned, rechecked = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix="data/",
                                                   recheck_keys=["data/abcdefghij"])
    assert planned == {"data/gone": "orphan"}
    assert sorted(summary["protected"]["ambiguous_samples"]) == ["data/abcdefghij", "data/zz"]
    assert rechecked == {"data/abcdefghij": "ambiguous"}


def test_job_rows_with_only_null_source_data_are_refused(mysql_server, mysql_conn, s3, s3_server, bucket, table,
                                                         tmp_path):
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", None), ("2", NOW - timedelta(days=300), "TRIAL", None)], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": "a", "size": 1, "last_modified": OLD}]})
    summary, planned, _ = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path)
    assert planned == {"a": "orphan"} and summary["jobs"]["rows_without_source"] == 2
    assert len(summary["refusals"]) == 1 and "sourceData NULL" in summary["refusals"][0]
    with pytest.raises(GuardRefused, match="sourceData NULL or empty"):
        check_guards(summary, max_delete_count=100, max_delete_fraction=None)
    summary, _, _ = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, allow_empty_jobs=True)
    assert summary["refusals"] == []


def test_job_rows_whose_source_data_is_empty_are_refused_like_null_ones(mysql_server, mysql_conn, s3, s3_server,
                                                                         bucket, table, tmp_path):
    """A legacy table writes '' where it means "no file" (NOT NULL DEFAULT ''): no row names a file, every file
    looked like an orphan, and only max_delete_fraction stood in the way. Refused as with NULL; so are rows of
    blanks only (a space, a tab, a line end)."""
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", ""), ("2", NOW - timedelta(days=300), "TRIAL", None),
                           ("3", None, "TRIAL", ""), ("4", None, "OFFICIAL", "  "), ("5", None, "OFFICIAL", "\t\r\n")],
              table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": "a", "size": 1, "last_modified": OLD}]})
    summary, planned, _ = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path)
    assert planned == {"a": "orphan"} and summary["jobs"]["rows_with_empty_source"] == 4
    assert len(summary["refusals"]) == 1 and "sourceData NULL or empty" in summary["refusals"][0]
    summary, _, _ = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, allow_empty_jobs=True)
    assert summary["refusals"] == []


def test_a_job_row_spelling_the_name_another_way_keeps_the_file_as_ambiguous(mysql_server, mysql_conn, s3, s3_server,
                                                                            bucket, table, tmp_path):
    """An OFFICIAL row naming a file with a leading slash, percent-encoded, or with a pasted line end, tab or
    space around it (no collation forgives those) is no exact reference, but nobody can say the file is unused:
    it was deleted as an orphan; it is kept as ambiguous, and the delete step's re-check says so too."""
    spelled = {"p/k1.dat": "/k1.dat", "p/k2 x.dat": "k2%20x.dat", "p/k3.dat": "k3.dat\r", "p/k4.dat": "k4.dat\n",
               "p/k5.dat": "k5.dat\t", "p/k6.dat": " k6.dat", "p/k7.dat": "k7.dat\r\n", "p//k8.dat": "k8.dat",
               "p/k9%20y.dat": "k9 y.dat", "p/ k10.dat": "k10.dat"}
    rows = [(f"j{i}", None, "OFFICIAL", name) for i, name in enumerate(spelled.values())]
    rows += [("t", NOW - timedelta(days=200), "TRIAL", "t.dat"), ("o", None, "OFFICIAL", "kept.dat")]
    seed_jobs(mysql_conn, rows, table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in [*spelled, "p/t.dat", "p/kept.dat", "p/gone.dat"]]})
    summary, planned, again = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix="p/",
                                               recheck_keys=list(spelled))
    assert planned == {"p/t.dat": "trial_expired", "p/gone.dat": "orphan"}
    assert summary["protected"]["by_cause"]["ambiguous"] == len(spelled)
    assert sorted(summary["protected"]["ambiguous_samples"]) == sorted(spelled)
    assert f"{len(spelled)} files are ambiguous" in summary["headline"] and "another spelling" in summary["headline"]
    assert again == dict.fromkeys(spelled, "ambiguous")


def test_a_job_row_spelling_the_name_as_an_s3_event_does_keeps_the_file_as_ambiguous(mysql_server, mysql_conn, s3,
                                                                                     s3_server, bucket, table, tmp_path):
    """S3's event notifications give the key form-encoded: a space as ``+`` (``red flower.jpg`` is
    ``red+flower.jpg``), other bytes percent-encoded. A table filled from them names ``k x.dat`` as ``k+x.dat``,
    which neither the collation nor the percent-encoded spelling (``k%20x.dat``) matched: the file went as an
    orphan although an OFFICIAL row named it. It is ambiguous, kept (plan and re-check)."""
    spelled = {"p/k x.dat": "k+x.dat", "p/caf\u00e9 y.dat": "caf%C3%A9+y.dat", "p/a+b.dat": "a b.dat",
               "p/z z.dat": "p/z+z.dat"}
    rows = [(f"j{i}", None, "OFFICIAL", name) for i, name in enumerate(spelled.values())]
    seed_jobs(mysql_conn, [*rows, ("o", None, "OFFICIAL", "kept.dat")], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in [*spelled, "p/kept.dat", "p/gone.dat"]]})
    summary, planned, again = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix="p/",
                                               recheck_keys=list(spelled))
    assert planned == {"p/gone.dat": "orphan"}
    assert sorted(summary["protected"]["ambiguous_samples"]) == sorted(spelled)
    assert again == dict.fromkeys(spelled, "ambiguous")


def test_a_job_row_naming_the_file_as_a_uri_encoded_or_garbled_keeps_it_as_ambiguous(mysql_server, mysql_conn, s3,
                                                                                      s3_server, bucket, table,
                                                                                      tmp_path):
    """An OFFICIAL row naming the file as an S3 URI (``s3://bucket/key``, or Hadoop's ``s3a://``), with its
    slashes percent-encoded (``sub%2Fe.dat``), or by its real name where the key was uploaded garbled (``café``
    under a key ``cafÃ©``): each file went as an orphan; it is ambiguous, kept (plan and re-check). A URI of
    another bucket names another file: that one is still an orphan."""
    spelled = {"p/u1.dat": f"s3://{bucket}/p/u1.dat", "p/u2 x.dat": f"s3a://{bucket}/p/u2%20x.dat",
               "p/u3.dat": f"S3://{bucket}/p/u3.dat\n", "p/sub/e.dat": "sub%2Fe.dat",
               "p/caf\u00c3\u00a9.dat": "caf\u00e9.dat"}
    rows = [(f"j{i}", None, "OFFICIAL", name) for i, name in enumerate(spelled.values())]
    seed_jobs(mysql_conn, [*rows, ("o", None, "OFFICIAL", f"s3://other-{bucket}/p/g.dat")], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in [*spelled, "p/g.dat"]]})
    summary, planned, again = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix="p/",
                                               recheck_keys=[*spelled, "p/g.dat"])
    assert planned == {"p/g.dat": "orphan"}
    assert sorted(summary["protected"]["ambiguous_samples"]) == sorted(spelled)
    assert again == dict.fromkeys(spelled, "ambiguous")


def test_a_job_row_naming_the_whole_key_keeps_the_file_as_ambiguous(mysql_server, mysql_conn, s3, s3_server, bucket,
                                                                    table, tmp_path):
    """A table whose rows hold whole keys (``p/a.dat``, ``/p/b.dat``) where the run's key_prefix ``p/`` expects
    ``a.dat``: each file went as an orphan although an OFFICIAL row named it; it is ambiguous, kept."""
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "p/a.dat"), ("2", None, "OFFICIAL", "/p/b.dat"),
                           ("3", None, "OFFICIAL", "kept.dat")], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in ("p/a.dat", "p/b.dat", "p/kept.dat", "p/gone.dat")]})
    summary, planned, again = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix="p/",
                                               recheck_keys=["p/a.dat", "p/b.dat"])
    assert planned == {"p/gone.dat": "orphan"}
    assert sorted(summary["protected"]["ambiguous_samples"]) == ["p/a.dat", "p/b.dat"]
    assert again == {"p/a.dat": "ambiguous", "p/b.dat": "ambiguous"}


def test_a_utf8_name_stored_in_a_latin1_column_keeps_its_file_as_ambiguous(mysql_server, mysql_conn, s3, s3_server,
                                                                           bucket, table, tmp_path):
    """An application that wrote UTF-8 bytes into a latin1 column (a connection left at latin1: the row reads
    back as ``cafÃ©.dat``) names ``café.dat`` all the same; the file went as an orphan. It is ambiguous, kept."""
    import MySQLdb

    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt TIMESTAMP NULL, "
                "type VARCHAR(32) NULL, sourceData VARCHAR(64) NULL, KEY (sourceData)) CHARACTER SET latin1")
    mysql_conn.commit()
    names = ["caf\u00e9.dat", "\u20acuro.dat", "\u0142\u00f3d\u017a.dat", "na\u00efve\u2122.dat"]
    legacy = MySQLdb.connect(host="127.0.0.1", port=mysql_server.port, user=mysql_server.user,
                             password=mysql_server.password, database=mysql_server.database, charset="latin1")
    try:  # the legacy writer: its UTF-8 bytes go in as latin1 characters, one per byte
        legacy.cursor().executemany(f"INSERT INTO `{table}` VALUES (%s, NULL, 'OFFICIAL', %s)",
                                    [(f"j{i}", name.encode()) for i, name in enumerate(names)])
        legacy.cursor().execute(f"INSERT INTO `{table}` VALUES ('k', NULL, 'OFFICIAL', 'kept.dat')")
        legacy.commit()
    finally:
        legacy.close()
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in [*names, "kept.dat", "gone.dat"]]})
    summary, planned, rechecked = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, recheck_keys=names)
    assert planned == {"gone.dat": "orphan"}
    # łódź.dat: latin1 cannot hold it, but its row (in latin1 characters) names it: ambiguous, not unmatchable
    assert summary["protected"]["by_cause"]["ambiguous"] == 4 and summary["protected"]["by_cause"]["unmatchable"] == 0
    assert rechecked == dict.fromkeys(names, "ambiguous")


@pytest.mark.parametrize("key_prefix,key,row", [
    ("p/", "p/a.dat", "p%2Fa.dat"),  # the whole key, its slash percent-encoded: no row holds "p/" literally
    ("my dir/", "my dir/a.dat", "my%20dir/a.dat"),  # the whole key percent-encoded (found before 6b92526)
    ("caf\u00e9/", "caf\u00e9/a.dat", "cafe\u0301/a.dat"),  # the whole key in NFD (found before 6b92526)
    ("caf\u00e9/", "caf\u00e9/a.dat", "caf\u00c3\u00a9/a.dat"),  # the whole key's UTF-8 read as latin1 (likewise)
])
def test_a_whole_key_spelled_so_that_no_row_holds_key_prefix_keeps_its_file(mysql_server, mysql_conn, s3, s3_server,
                                                                           bucket, table, tmp_path, key_prefix, key,
                                                                           row):
    """The plan skipped every spelling of the whole key when no row holds ``key_prefix`` as typed (the
    ``prefix`` mark), although encoding the key, garbling it or normalizing it changes the prefix too: the
    file went as an orphan while an OFFICIAL row named it. Only spellings holding ``key_prefix`` are skipped."""
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", row), ("2", None, "OFFICIAL", "other.dat")], table=table)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in (key, key_prefix + "gone.dat")]})
    conn = conn_for(mysql_server)
    try:
        assert not jobs_db.spelling_marks(conn, table, key_prefix).prefix  # the case: no row holds key_prefix
    finally:
        conn.close()
    summary, planned, again = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix=key_prefix,
                                               recheck_keys=[key])
    assert planned == {key_prefix + "gone.dat": "orphan"}
    assert summary["protected"]["ambiguous_samples"] == [key]
    assert again == {key: "ambiguous"}


def test_a_row_a_unicode_collation_calls_equal_to_a_spelling_keeps_its_file(mysql_server, mysql_conn, s3, s3_server,
                                                                          bucket, table, tmp_path):
    """Under a UCA collation (``utf8mb4_unicode_ci``; MariaDB 11.5's default ``uca1400_ai_ci``, MySQL 8's
    ``0900_ai_ci``) ``=`` skips ignorable characters and expands ``ß`` to ``ss``, ``LIKE`` compares character by
    character: a row ``\\u200b/a.dat`` (a zero-width space pasted before it) equals ``/a.dat`` but is not
    ``LIKE '/%'``, a row ``STRASSE/b.dat`` equals the whole key ``straße/b.dat`` but is not ``LIKE '%straße/%'``.
    The marks said no row could equal those spellings, and both files went as orphans."""
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt TIMESTAMP NULL, "
                "type VARCHAR(32), sourceData VARCHAR(64) NULL, KEY (sourceData)) "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    cur.close()
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "\u200b/a.dat"), ("2", None, "OFFICIAL", "STRASSE/b.dat"),
                           ("3", None, "OFFICIAL", "other.dat")], table=table)
    keys = ["stra\u00dfe/a.dat", "stra\u00dfe/b.dat"]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in (*keys, "stra\u00dfe/gone.dat")]})
    summary, planned, again = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix="stra\u00dfe/",
                                               recheck_keys=keys)
    assert planned == {"stra\u00dfe/gone.dat": "orphan"}
    assert sorted(summary["protected"]["ambiguous_samples"]) == keys
    assert again == dict.fromkeys(keys, "ambiguous")


def test_a_key_prefix_a_latin1_column_cannot_hold_plans_and_keeps_what_it_cannot_hold(mysql_server, mysql_conn, s3,
                                                                                      s3_server, bucket, table,
                                                                                      tmp_path):
    """The spelling marks asked ``sourceData LIKE '%łódź/%'`` of a latin1 column: "Illegal mix of collations", so
    every run under such a prefix failed (with its retries) before planning. No row can hold the prefix: the plan goes
    on, and names latin1 cannot hold are kept as unmatchable, as without a prefix."""
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt TIMESTAMP NULL, "
                "type VARCHAR(32) NULL, sourceData VARCHAR(64) NULL, KEY (sourceData)) CHARACTER SET latin1")
    cur.close()
    seed_jobs(mysql_conn, [("1", None, "OFFICIAL", "a.dat")], table=table)
    prefix = "\u0142\u00f3d\u017a/"
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": prefix + k, "size": 1, "last_modified": OLD} for k in ("a.dat", "gone.dat", "\u017c.dat")]})
    summary, planned, again = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix=prefix,
                                               recheck_keys=[prefix + "\u017c.dat"])
    assert planned == {prefix + "gone.dat": "orphan"}
    assert summary["protected"]["unmatchable_samples"] == [prefix + "\u017c.dat"]
    assert again == {prefix + "\u017c.dat": "unmatchable"}


@pytest.mark.parametrize("width,key_prefix,stored", [
    (12, "datasets/input/", "datasets/input/abc.dat"),  # the whole key, cut inside key_prefix
    (24, "data/", "s3://{bucket}/data/abc.dat"),  # the bucket's URI, cut inside key_prefix
])
def test_a_whole_key_cut_inside_key_prefix_keeps_its_file(mysql_server, mysql_conn, s3, s3_server, bucket, table,
                                                          tmp_path, width, key_prefix, stored):
    """A table without strict mode holds a whole key (or a URI) cut to the column's width, so short that the cut
    falls inside ``key_prefix``: no row holds key_prefix whole, the ``prefix`` mark was off, and the plan left
    out the whole-key spellings that, cut to the column as they are looked up, equal that row. The file went
    as an orphan although an OFFICIAL row named it (as it stands, it names every file under the prefix)."""
    stored = stored.format(bucket=bucket)
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt TIMESTAMP NULL, "
                f"type VARCHAR(32) NULL, sourceData VARCHAR({width}) NULL, KEY (sourceData)) CHARACTER SET utf8mb4")
    cur.execute("SET SESSION sql_mode = ''")  # the legacy writer: no strict mode, a long value is cut
    cur.execute(f"INSERT INTO `{table}` VALUES ('1', NULL, 'OFFICIAL', %s)", (stored,))
    mysql_conn.commit()
    cur.execute(f"SELECT sourceData FROM `{table}`")
    assert cur.fetchall()[0][0] == stored[:width] and key_prefix not in stored[:width]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": key_prefix + "abc.dat", "size": 1, "last_modified": OLD}]})
    summary, planned, again = _plan_with_mysql(mysql_server, s3, bucket, table, tmp_path, key_prefix=key_prefix,
                                               recheck_keys=[key_prefix + "abc.dat"])
    assert planned == {}
    assert summary["protected"]["ambiguous_samples"] == [key_prefix + "abc.dat"]
    assert again == {key_prefix + "abc.dat": "ambiguous"}


@pytest.mark.parametrize("column", ["DATETIME", "TIMESTAMP"])
def test_a_completed_at_of_no_time_zone_expires_late_never_early(mysql_server, mysql_conn, s3, s3_server, bucket,
                                                                 table, tmp_path, column):
    """A DATETIME completedAt has no zone: an application that wrote MySQL's NOW() on a server in UTC-8 stored
    a job completed at 10:00 UTC as 02:00, which read as UTC expired it 8 hours early. The plan moves the TRIAL
    cutoff 12 hours back for such a column (the westernmost zone is UTC-12), and records that cutoff, so the
    delete step's re-check and the purge decide by it too. A TIMESTAMP is an instant: no slack."""
    from include.deletion.plan import PlanItem
    from include.retention.plan import plan_bucket
    from include.retention.policy import policy_of

    cutoff = Policy.at(NOW, "P3M", 7).trial_cutoff  # 2019-03-03T00:00Z
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt {column} NULL, "
                "type VARCHAR(32) NULL, sourceData VARCHAR(255) NULL, KEY (sourceData)) CHARACTER SET utf8mb4")
    cur.execute("SET time_zone = '+00:00'")
    cur.executemany(f"INSERT INTO `{table}` VALUES (%s, %s, 'TRIAL', %s)", [
        ("near", (cutoff - timedelta(hours=6)).replace(tzinfo=None), "near.dat"),  # expired only if read as UTC
        ("far", (cutoff - timedelta(hours=13)).replace(tzinfo=None), "far.dat"),  # expired in every zone
    ])
    mysql_conn.commit()
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": OLD} for k in ("near.dat", "far.dat")]})
    summary = plan_bucket(s3, lambda: conn_for(mysql_server), tmp_path, bucket=bucket, key_prefix="", jobs_table=table,
                          policy=Policy.at(NOW, "P3M", 7), source="listing", include_versions=False,
                          allow_empty_jobs=False, trial_retention="P3M", orphan_min_age_days=7, purge_job_rows=True)
    planned = sorted(json.loads(line)["key"] for c in summary["chunks"]
                     for line in (tmp_path / "plan" / f"{c}.jsonl").read_text().splitlines())
    plan = json.loads((tmp_path / "plan.json").read_text())
    conn = conn_for(mysql_server)
    try:
        rechecked = make_recheck(lambda names: jobs_db.rows_for_names(conn, table, names), "", policy_of(plan),
                                 bucket=bucket)([PlanItem(k, 1, "trial_expired") for k in ("near.dat", "far.dat")])
        purged = jobs_db.purge_planned_rows(conn, table, planned_rows(tmp_path, summary["expired_trial_rows_files"]),
                                            policy_of(plan))
    finally:
        conn.close()
    cur.execute(f"SELECT jobId FROM `{table}` ORDER BY jobId")
    left = [r[0] for r in cur.fetchall()]
    if column == "DATETIME":
        assert planned == ["far.dat"] and summary["protected"]["by_cause"]["trial_recent"] == 1
        assert policy_of(plan).trial_cutoff == cutoff - timedelta(hours=12)
        assert "DATETIME (no time zone)" in summary["headline"]
        assert rechecked == {"near.dat": "trial_recent"}  # the re-check keeps what the plan kept
        assert purged["deleted"] == 1 and left == ["near"]
    else:
        assert planned == ["far.dat", "near.dat"] and policy_of(plan).trial_cutoff == cutoff
        assert "DATETIME" not in summary["headline"]
        assert rechecked == {} and purged["deleted"] == 2 and left == []
