"""include.retention.jobs.rows_for_names (one indexed ``IN`` per name, names packed into queries of at most
LOOKUP_BATCH values) against a plain oracle on the real MariaDB: one ``=`` query per spelling. Many names over
several queries, spellings shared by several names, latin1/utf8mb3 columns that cannot hold some spellings,
columns too short for some, binary and CHAR columns: every name gets exactly the rows its own spellings match,
and :class:`Unmatchable` exactly when none matched and the column cannot hold the name itself (another spelling
too long for the column is looked up cut to its width)."""

from __future__ import annotations

import random
import uuid
from functools import partial

import pytest

from include.retention import jobs as jobs_db
from include.retention.policy import Unmatchable, lookup_forms


def _oracle(conn, table, forms, width, charset):
    import MySQLdb

    def ids_of(value):
        """The rows ``sourceData = value`` finds; None when MySQL refuses the value (the column cannot hold it)."""
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT jobId FROM `{table}` WHERE sourceData = %s", (value,))
            return {r[0] for r in cur.fetchall()}
        except MySQLdb.Error:
            return None
        finally:
            cur.close()

    def too_long(value):
        return width is not None and (len(value.encode()) if charset == "binary" else len(value)) > width

    answer = {}
    for name, each in forms.items():
        name_held = not too_long(name) and ids_of(name) is not None
        ids = set()
        for v in dict.fromkeys((name, *each)):
            if too_long(v):
                if not name_held:
                    continue  # a name the column cannot hold is unmatchable: its spellings are not cut short
                v = v.encode()[:width] if charset == "binary" else v[:width]  # as a table without strict mode holds it
            ids |= ids_of(v) or set()
        answer[name] = ids
    return answer


BASES = ["a.dat", "A.DAT", "café.dat", "cafe\u0301.dat", "łódź.dat", "a b.dat", "a%20b.dat", "/lead.dat",
         "x" * 20, "trail ", "naïve", "日本.dat", "\U0001f600.dat", "%C3%A9.dat", "a+b", "a%2Bb"]


@pytest.mark.parametrize("charset,width,column", [("utf8mb4", 64, "VARCHAR"), ("latin1", 24, "VARCHAR"), ("utf8mb4", 12, "VARCHAR"),
                                                  ("utf8mb3", 30, "VARCHAR"), ("binary", 30, "VARBINARY"), ("utf8mb4", 30, "CHAR"),
                                                  ("latin1", 10, "CHAR")])
@pytest.mark.parametrize("prefix", ["", "in/"])
def test_rows_for_names_answers_what_one_query_per_spelling_answers(mysql_server, mysql_conn, charset, width, column, prefix):
    rng = random.Random(f"{charset}{width}{prefix}")
    table = f"jobs_o_{uuid.uuid4().hex[:8]}"
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt DATETIME NULL, "
                f"type VARCHAR(32), sourceData {column}({width}) NULL, KEY (sourceData))"
                + ("" if charset == "binary" else f" CHARACTER SET {charset}"))
    names = list(dict.fromkeys([*BASES, *(f"{b}{i}" for i in range(60) for b in rng.sample(BASES, 3))]))
    conn = jobs_db.prepare(mysql_server.connect())
    try:
        forms: dict = {}  # each name's spellings, in NFC and NFD, as the plan and the re-check ask for them
        lookup_forms(lambda asked: forms.update(asked) or {}, names, prefix)
        n = 0
        for name in names:
            for v in rng.sample(forms[name], min(2, len(forms[name]))):
                if (len(v.encode()) if charset == "binary" else len(v)) > width:  # stored cut short, as without
                    v = v.encode()[:width] if charset == "binary" else v[:width]  # strict mode
                try:
                    cur.execute(f"INSERT INTO `{table}` VALUES (%s, NULL, 'OFFICIAL', %s)", (f"j{n}", v))
                    n += 1
                except Exception:  # noqa: BLE001 - a value the column cannot hold
                    pass
        mysql_conn.commit()
        got = jobs_db.rows_for_names(conn, table, forms)
        want = _oracle(conn, table, forms, width, charset)
        lost = jobs_db.unholdable(conn, None if charset == "binary" else charset, names)
        cut = jobs_db.too_long(width, charset == "binary", names)
    finally:
        conn.close()
        cur.execute(f"DROP TABLE `{table}`")
    assert n > 50 and sum(len(f) for f in forms.values()) > 3 * jobs_db.LOOKUP_BATCH  # several queries
    for name in names:
        rows = got.get(name, [])
        assert {r.job_id for r in rows} == want[name], name
        if not want[name] and (name in lost or name in cut):
            assert isinstance(rows, Unmatchable), name
        else:
            assert not isinstance(rows, Unmatchable), name


GATED_NAMES = ["a.dat", "a b.dat", "café.dat", "x/y.dat", "a+b.dat", "a%20b.dat", "p/in.dat"]
GATED_PREFIXES = ["", "p/", "my dir/", "café/", "/lead/", "a_b%|\\/"]


@pytest.mark.slow
@pytest.mark.parametrize("column", ["VARCHAR(96) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
                                    "VARCHAR(96) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                                    "CHAR(96) CHARACTER SET utf8mb4", "VARCHAR(96) CHARACTER SET latin1",
                                    "VARBINARY(192)", "VARCHAR(96) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"])
def test_the_plan_asks_for_every_spelling_a_lone_row_could_equal(mysql_server, mysql_conn, column):
    """The plan asks only for the spellings its :class:`SpellingMarks` allow; the re-check asks for all. Against
    a table holding one row at a time (so its marks are that row's): the row is any spelling of a name (or one in
    other case, padded, or after a zero-width space), and the plan finds it exactly when asking for every
    spelling finds it, over key prefixes that encoding, garbling, normalizing or stripping change."""
    from include.retention.policy import EVERY_SPELLING

    rng = random.Random(column)
    table = f"jobs_g_{uuid.uuid4().hex[:8]}"
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (jobId VARCHAR(64) NOT NULL PRIMARY KEY, completedAt DATETIME NULL, "
                f"type VARCHAR(32), sourceData {column} NULL, KEY (sourceData))")
    conn = jobs_db.prepare(mysql_server.connect())
    asked = tried = 0
    try:
        for prefix in GATED_PREFIXES:
            for name in GATED_NAMES:
                every: dict = {}
                lookup_forms(lambda forms, into=every: into.update(forms) or {}, [name], prefix, bucket="my.bucket")
                values = rng.sample(every[name], min(10, len(every[name])))
                values += [v.upper() for v in values[:2]] + [values[0] + "  ", "\u200b" + rng.choice(every[name])]
                for value in values:
                    cur.execute(f"DELETE FROM `{table}`")
                    try:
                        cur.execute(f"INSERT INTO `{table}` VALUES ('j', NULL, 'OFFICIAL', %s)", (value,))
                    except Exception:  # noqa: BLE001 - a value the column cannot hold
                        continue
                    finally:
                        mysql_conn.commit()
                    marks = jobs_db.spelling_marks(conn, table, prefix, "my.bucket")
                    lookup = partial(jobs_db.rows_for_names, conn, table)
                    want = bool(lookup_forms(lookup, [name], prefix, bucket="my.bucket", marks=EVERY_SPELLING).get(name))
                    got = bool(lookup_forms(lookup, [name], prefix, bucket="my.bucket", marks=marks).get(name))
                    assert got == want, (prefix, name, value, marks)
                    tried += 1
                    asked += want
    finally:
        conn.close()
        cur.execute(f"DROP TABLE `{table}`")
    assert tried > 200 and asked > 100
