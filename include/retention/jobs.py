"""The jobs table in MySQL/MariaDB: streamed in binary ``sourceData`` order, re-checked, purged.

Connections come from an Airflow MySQL connection (``MySqlHook(mysql_conn_id).get_conn()``) or any
MySQLdb connection. Every session runs in UTC with utf8mb4. The table name comes from a param, so it
is checked against a strict pattern and quoted; values are always bound parameters.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeGuard

from include.retention.policy import EVERY_SPELLING, LINE_ENDS, JobRow, Policy, SpellingMarks, Unmatchable

_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?")
#: the one expression both the sort and the join use: sourceData as UTF-8 bytes, compared byte by byte
#: (no PAD SPACE, no case folding), i.e. the same order as S3 keys.
def _bytes_of(column: str) -> str:
    """SQL for ``column`` as UTF-8 bytes, whatever its character set (what Python compares, byte for byte)."""
    return f"CAST(CONVERT({column} USING utf8mb4) AS BINARY)"


_SOURCE_BYTES = _bytes_of("sourceData")
_COLUMNS = f"jobId, completedAt, type, {_SOURCE_BYTES}"
LOOKUP_BATCH = 500


def quote_table(name: str) -> str:
    """```db`.`table``` for ``db.table`` or ``table``; anything else raises ValueError."""
    if not isinstance(name, str) or not _TABLE.fullmatch(name):
        raise ValueError(
            f"jobs_table {name!r} is not a plain table name: use letters, digits and underscores "
            "(optionally schema.table), e.g. 'jobs'"
        )
    return ".".join(f"`{part}`" for part in name.split("."))


def prepare(conn: Any) -> Any:
    """UTC session, utf8mb4, autocommit (each re-check sees the latest committed rows)."""
    conn.set_character_set("utf8mb4")
    conn.autocommit(True)
    cur = conn.cursor()
    cur.execute("SET time_zone = '+00:00'")
    cur.close()
    return conn


def connect(mysql_conn_id: str) -> Any:
    """A prepared MySQLdb connection from an Airflow MySQL connection."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    return prepare(MySqlHook(mysql_conn_id=mysql_conn_id).get_conn())


def connect_direct(*, host: str, port: int, user: str, password: str, database: str) -> Any:
    """A prepared MySQLdb connection without Airflow (the command line)."""
    import MySQLdb

    return prepare(MySQLdb.connect(host=host, port=port, user=user, password=password, database=database,
                                   charset="utf8mb4", connect_timeout=10))


class TableUnreadable(ValueError):
    """The job query cannot run on the jobs table (missing, not a jobs table, or not readable by the user): no
    retry fixes it."""


#: MySQL errors no retry fixes: no such database (1049) or table (1146), a missing column (1054: not a jobs
#: table), the user may not read it (1044, 1142, 1143)
_UNREADABLE = {1044, 1049, 1054, 1142, 1143, 1146}


def check_readable(conn: Any, table: str) -> str:
    """Run the job query's columns on ``table`` reading no row (``LIMIT 0``): :class:`TableUnreadable` naming
    the table when it cannot run, or when ``completedAt`` holds no times (a DATE or text column: the rule
    needs the moment a job completed), before anything is listed or downloaded. Other errors propagate.
    Returns ``completedAt``'s type: ``"TIMESTAMP"`` (an instant) or ``"DATETIME"`` (a time of no zone)."""
    import MySQLdb
    from MySQLdb.constants import FIELD_TYPE

    cur = conn.cursor()
    try:
        cur.execute(f"SELECT {_COLUMNS} FROM {quote_table(table)} LIMIT 0")
        completed_type = cur.description[1][1]
    except MySQLdb.Error as exc:
        if exc.args and exc.args[0] in _UNREADABLE:
            raise TableUnreadable(
                f"jobs_table {table!r} cannot be read ({exc.args[1]}): check the name (table or schema.table), "
                "that it has the columns jobId, completedAt, type and sourceData, and that the MySQL user may "
                "SELECT from it") from None
        raise
    finally:
        cur.close()
    if completed_type not in (FIELD_TYPE.TIMESTAMP, FIELD_TYPE.DATETIME):
        names = {v: k for k, v in vars(FIELD_TYPE).items() if isinstance(v, int)}
        raise TableUnreadable(
            f"jobs_table {table!r}: completedAt is a {names.get(completed_type, completed_type)} column, not a "
            "TIMESTAMP or DATETIME: the TRIAL expiry needs the time each job completed")
    return "TIMESTAMP" if completed_type == FIELD_TYPE.TIMESTAMP else "DATETIME"


def _row(raw: tuple[Any, ...]) -> JobRow:
    job_id, completed_at, job_type, source = raw
    if isinstance(source, (bytes, bytearray)):
        source = bytes(source).decode("utf-8")
    if isinstance(job_id, (bytes, bytearray)):  # a VARBINARY key: as the purge's CONVERT(… USING utf8mb4) reads it
        job_id = bytes(job_id).decode("utf-8", "replace")
    return JobRow(None if job_id is None else str(job_id), completed_at, job_type, source)


def iter_job_rows(conn: Any, table: str) -> Iterator[JobRow]:
    """Every row, sorted by ``sourceData`` in binary (UTF-8 byte) order, NULLs first, streamed from the
    server (SSCursor: constant memory). Use a connection of its own until the iterator is exhausted."""
    import MySQLdb.cursors

    cur = conn.cursor(MySQLdb.cursors.SSCursor)
    try:
        # The consumer interleaves S3 listing: give the server time to wait on a slow reader.
        cur.execute("SET SESSION net_write_timeout = 3600")
        cur.execute(f"SELECT {_COLUMNS} FROM {quote_table(table)} ORDER BY {_SOURCE_BYTES}")
        while True:
            batch = cur.fetchmany(1000)
            if not batch:
                return
            for raw in batch:
                yield _row(raw)
    finally:
        cur.close()


#: ``sourceData`` character sets that hold every Unicode character (NULL: a binary column)
_HOLDS_ALL = {None, "", "utf8mb4", "utf16", "utf16le", "utf32", "binary"}
_CHARSET = re.compile(r"[a-z0-9_]{1,32}")


def _source_info(conn: Any, table: str) -> tuple[Any, ...] | None:
    """The ``sourceData`` column's character set, length and collation as information_schema gives them
    (None when the column is not found)."""
    schema, _, name = table.rpartition(".")
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT CHARACTER_SET_NAME, CHARACTER_MAXIMUM_LENGTH, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND COLUMN_NAME = 'sourceData'",
            (schema or None, name))
        row = cur.fetchone()
    finally:
        cur.close()
    return None if row is None else tuple(v.decode() if isinstance(v, bytes) else v for v in row)


def source_column(conn: Any, table: str) -> tuple[str | None, int | None]:
    """The character set of the table's ``sourceData`` column (None when unknown or binary) and its
    length (characters; bytes for a binary column; None when unknown or unbounded)."""
    info = _source_info(conn, table)
    charset, width = (info[0], info[1]) if info else (None, None)
    return charset, (None if width is None else int(width))


def source_charset(conn: Any, table: str) -> str | None:
    """The character set of the table's ``sourceData`` column (None when unknown or binary)."""
    return source_column(conn, table)[0]


def too_long(width: int | None, binary: bool, values: list[str]) -> set[str]:
    """The ``values`` longer than the column holds: a table without MySQL's strict mode stored such a
    name cut short, so its row names another file and the real one would look unused."""
    if width is None:
        return set()
    return {v for v in values if (len(v.encode()) if binary else len(v)) > width}


def unholdable(conn: Any, charset: str | None, values: list[str]) -> set[str]:
    """The ``values`` a ``charset`` column cannot hold (MySQL converts them lossily, ``ł`` → ``?``):
    compared with such a column they raise "Illegal mix of collations", and no row can equal them.
    MySQL decides (its latin1 is not Python's), by converting each value there and back."""
    if charset in _HOLDS_ALL or not values:
        return set()
    if not _CHARSET.fullmatch(str(charset)):
        raise ValueError(f"unexpected character set {charset!r} for sourceData")
    lost: set[str] = set()
    for start in range(0, len(values), LOOKUP_BATCH):
        part = values[start : start + LOOKUP_BATCH]
        sql = " UNION ALL ".join(
            f"SELECT %s, CAST(CONVERT(CONVERT(%s USING {charset}) USING utf8mb4) AS BINARY) = CAST(%s AS BINARY)"
            for _ in part)
        cur = conn.cursor()
        try:
            cur.execute(sql, [v for i, value in enumerate(part) for v in (i, value, value)])
            lost.update(part[int(i)] for i, same in cur.fetchall() if not same)
        finally:
            cur.close()
    return lost


def rows_for_names(conn: Any, table: str, spellings: Mapping[str, Sequence[str]]) -> dict[str, list[JobRow]]:
    """{name: the rows whose ``sourceData`` the table's own collation calls equal to the name or to one of its
    other ``spellings``}. Case, trailing spaces or accents may differ (the collation decides); callers treat
    such loose matches as ambiguous. A spelling the column cannot hold (its character set, or longer than the
    column) is not queried, except, for a name the column holds, another spelling too long for it, which is
    looked up cut to the column's width (a table without strict mode stored it so: a table holding whole keys,
    whose key does not fit where its name does); a name none of whose spellings matched, and which the column
    cannot hold itself, maps to :class:`Unmatchable`.

    One indexed ``IN`` per name, tagged with its position so that its rows map back to it: a query per
    spelling cost three times as much (10,000 names of 8 spellings on MariaDB: 2.3 s against 0.73 s)."""
    quoted = quote_table(table)
    charset, width = source_column(conn, table)
    values = list(dict.fromkeys(v for name, forms in spellings.items() for v in (name, *forms)))
    lost = unholdable(conn, charset, values)
    binary = charset in (None, "binary")
    cut = too_long(width, binary, [v for v in values if v not in lost])
    # Where the name fits, another spelling longer than the column (the whole key, say) is looked up as a table
    # without strict mode stored it: cut to the column's width. A name that does not fit is kept anyway.
    groups = [(name, list(dict.fromkeys(_cut_short(v, width, binary) if v in cut else v
                                        for v in dict.fromkeys((name, *forms))
                                        if v not in lost and (v not in cut or name not in cut and name not in lost))))
              for name, forms in spellings.items()]
    found: dict[str, list[JobRow]] = {}
    for part in _packed([g for g in groups if g[1]], LOOKUP_BATCH):
        sql = " UNION ALL ".join(f"SELECT %s, {_COLUMNS} FROM {quoted} WHERE sourceData IN ({', '.join(['%s'] * len(forms))})"
                                 for _, forms in part)
        params = [v for i, (_, forms) in enumerate(part) for v in (i, *forms)]
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
            for i, *raw in cur.fetchall():
                found.setdefault(part[int(i)][0], []).append(_row(tuple(raw)))
        finally:
            cur.close()
    for name in spellings:
        if name not in found and name in lost:
            found[name] = Unmatchable(str(charset))
        elif name not in found and name in cut:
            found[name] = Unmatchable(f"{charset}, at most {width} characters")
    return found


def _like_literal(text: str) -> str:
    """``text`` for a LIKE pattern with ``|`` as its escape character."""
    return text.replace("|", "||").replace("%", "|%").replace("_", "|_")


#: collations whose ``=`` compares character by character, as ``LIKE`` does (binary, ``_bin``, ``general``,
#: latin1's ``swedish``): a row that equals a spelling holds its characters. A UCA collation (``unicode_ci``,
#: MariaDB 11.5's default ``uca1400_ai_ci``, MySQL 8's ``0900_ai_ci``) or ``latin1_german2_ci`` skips ignorable
#: characters and expands others in ``=`` only: ``\u200b/a.dat`` equals ``/a.dat`` but is not ``LIKE '/%'``,
#: ``STRASSE/`` equals ``straße/`` but is not ``LIKE '%straße/%'``.
_LIKE_AS_EQUALS = re.compile(r"[a-z0-9]+_(?:(?:nopad_)?bin|general(?:_nopad|_mysql500)?_ci|general_cs)"
                             r"|latin1_swedish(?:_nopad)?_ci")


def source_collation(conn: Any, table: str) -> str | None:
    """The collation of the table's ``sourceData`` column (None for a binary one, ``"unknown"`` when not found)."""
    info = _source_info(conn, table)
    if info is None:
        return "unknown"
    return None if info[2] is None else str(info[2])


def spelling_marks(conn: Any, table: str, key_prefix: str, bucket: str = "") -> SpellingMarks:
    """:class:`~include.retention.policy.SpellingMarks` of ``table``, read in one scan of its rows (under its
    own collation, as the lookups compare). The scan asks ``LIKE``, which compares character by character:
    where the column's collation does not (:data:`_LIKE_AS_EQUALS`), or is unknown, every spelling is made.
    ``bucket``: the one whose S3 URIs the spellings hold."""
    collation = source_collation(conn, table)
    if collation is not None and not _LIKE_AS_EQUALS.fullmatch(collation):
        return EVERY_SPELLING
    charset, width = source_column(conn, table)
    lead = len(f" s3a://{bucket}/" if bucket else " ")  # the most a spelling puts before key_prefix
    if key_prefix and width is not None and width < lead + len(key_prefix.encode()):  # bytes: at least characters
        # A spelling too long for the column is looked up cut to its width (rows_for_names): a whole key or a
        # URI cut inside key_prefix can equal a row that holds no key_prefix, so those spellings are all made.
        return replace(_marks(conn, table, ""), prefix=True)
    return _marks(conn, table, key_prefix, charset)


def _marks(conn: Any, table: str, key_prefix: str, charset: str | None = None) -> SpellingMarks:
    """The scan of :func:`spelling_marks`."""
    # A key_prefix the column cannot hold (latin1 and ``łódź/``) is in no row, and comparing it would fail
    # ("Illegal mix of collations"): it is not asked for.
    holds_prefix = bool(key_prefix) and not unholdable(conn, charset, [key_prefix])
    ends = " OR ".join("sourceData LIKE %s ESCAPE '|'" for _ in LINE_ENDS)
    has_prefix = "sourceData LIKE %s ESCAPE '|'" if holds_prefix else "0"
    sql = (f"SELECT COALESCE(MAX(sourceData LIKE '/%%'), 0), COALESCE(MAX(sourceData LIKE ' %%'), 0), "
           f"COALESCE(MAX({ends}), 0), COALESCE(MAX({has_prefix}), 0), "
           "COALESCE(MAX(sourceData LIKE '%%|%%%%' ESCAPE '|' OR sourceData LIKE '%%+%%'), 0), "
           f"COALESCE(MAX(sourceData LIKE '%%://%%'), 0) FROM {quote_table(table)}")
    params = [f"%{_like_literal(end)}" for end in LINE_ENDS] + ([f"%{_like_literal(key_prefix)}%"] if holds_prefix
                                                                  else [])
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        slash, space, end, prefix, encoded, uri = (bool(v) for v in cur.fetchone())
    finally:
        cur.close()
    return SpellingMarks(slash=slash, space=space, end=end, prefix=prefix, encoded=encoded, uri=uri)


def _cut_short(value: str, width: int | None, binary: bool) -> str | bytes:
    """``value`` as a column ``width`` long stores it without MySQL's strict mode: its first ``width``
    characters (bytes in a binary column)."""
    if width is None:
        return value
    return value.encode()[:width] if binary else value[:width]


def _packed(groups: list[tuple[str, list[str | bytes]]], size: int) -> Iterator[list[tuple[str, list[str | bytes]]]]:
    """``groups`` in consecutive parts of at most ``size`` values each (a bigger group alone)."""
    part: list[tuple[str, list[str | bytes]]] = []
    held = 0
    for group in groups:
        if part and held + len(group[1]) > size:
            yield part
            part, held = [], 0
        part.append(group)
        held += len(group[1])
    if part:
        yield part


class PurgeMismatch(RuntimeError):
    """A purge batch matches a row it does not name: rolled back, nothing of that batch deleted."""


def _exact(column: str) -> str:
    """``column`` as the plan read it (utf8mb4), compared as bytes and NULL-safe with a parameter: a ``_ci``
    collation calls ``abc`` and ``ABC `` equal, and a latin1 or utf16 column holds other bytes than the
    UTF-8 the plan recorded."""
    return f"{_bytes_of(column)} <=> CAST(%s AS BINARY)"


#: one planned row, exactly: every recorded value (the first ``jobId <=> %s`` lets the key's index narrow it)
_IDENTITY = f"(jobId <=> %s AND {_exact('jobId')} AND completedAt <=> %s AND {_exact('type')} AND {_exact('sourceData')})"
_IDENTITY_COLUMNS = f"{_bytes_of('jobId')}, completedAt, {_bytes_of('type')}, {_SOURCE_BYTES}"


def _identity(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A recorded row as the identity query's columns read it: UTF-8 bytes (or None), and its time."""
    completed = row.get("completedAt")
    when = datetime.fromisoformat(completed.removesuffix("Z")) if isinstance(completed, str) else None
    return tuple(v.encode("utf-8") if isinstance(v, str) else v
                 for v in (row.get("jobId"), when, row.get("type"), row.get("sourceData")))


#: rows a purge transaction names (a retry resumes after the last committed batch, so it must not change
#: between attempts); the kept rows a purge's record names (saved after every transaction: kept small), the
#: rest only counted
PURGE_BATCH = 500
KEPT_ROWS_SHOWN = 100


def delete_expired_trials(conn: Any, table: str, rows: Sequence[Mapping[str, Any]], policy: Policy,
                          batch: int | None = None, *, start_at: int = 0,
                          on_batch: Callable[[int, int, list[Mapping[str, Any]]], None] | None = None) -> int:
    """Delete these recorded rows (``{"jobId", "completedAt", "type", "sourceData"}``) if they are still
    expired TRIAL rows (re-checked in the statement); returns the number deleted.

    Each row is matched by all its recorded values, so a row inserted since with the same ``jobId`` (a
    table whose ``jobId`` is not unique, or compares case-insensitively) is not. In one transaction per
    batch the matching rows are locked and counted per recorded identity first: if any identity matches
    more rows than the plan recorded (copies added since), the batch is rolled back and
    :class:`PurgeMismatch` raised; so is a ``DELETE`` that would remove more rows than were locked.
    The batches start at ``start_at`` (an earlier attempt committed those before); after each committed
    batch, ``on_batch(offset, deleted, kept)`` gets the recorded rows it did not delete (changed or gone)."""
    quoted = quote_table(table)
    cutoff = policy.trial_cutoff.replace(tzinfo=None)
    batch = PURGE_BATCH if batch is None else batch
    deleted = 0
    for start in range(start_at, len(rows), batch):
        part = rows[start : start + batch]
        done, kept = _purge_batch(conn, quoted, part, cutoff, table)
        deleted += done
        if on_batch is not None:
            on_batch(start, done, kept)
    return deleted


def _purge_batch(conn: Any, quoted: str, part: Sequence[Mapping[str, Any]], cutoff: datetime,
                 table: str) -> tuple[int, list[Mapping[str, Any]]]:
    """One batch of :func:`delete_expired_trials` in one transaction: (rows deleted, recorded rows kept)."""
    identities = [_identity(row) for row in part]  # before the transaction: a bad record raises here
    expiry = "AND completedAt IS NOT NULL AND completedAt <= %s AND UPPER(TRIM(type)) = 'TRIAL'"
    where = f"({' OR '.join([_IDENTITY] * len(part))}) {expiry}"
    params = [*(p for i in identities for p in (i[0], i[0], i[1], i[2], i[3])), cutoff]
    cur = conn.cursor()
    try:
        cur.execute("START TRANSACTION")  # the connection autocommits: this batch is checked before it counts
        cur.execute(f"SELECT {_IDENTITY_COLUMNS} FROM {quoted} WHERE {where} FOR UPDATE", params)
        found = Counter(tuple(bytes(v) if isinstance(v, (bytes, bytearray)) else v for v in r)
                        for r in cur.fetchall())
        recorded = Counter(identities)
        extra = sum(max(0, n - recorded[k]) for k, n in found.items())
        if not extra and found:
            cur.execute(f"DELETE FROM {quoted} WHERE {where}", params)
            extra = cur.rowcount - sum(found.values())
        if extra:
            raise PurgeMismatch(f"a purge batch of {len(part)} recorded rows also matched {extra} row(s) in "
                                f"{table!r} that the plan did not record (copies added since): rolled back")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()
    kept: list[Mapping[str, Any]] = []
    for row, identity in zip(part, identities, strict=True):  # found[...] counts each row's matches once
        if found[identity] > 0:
            found[identity] -= 1
        else:
            kept.append(row)
    return len(part) - len(kept), kept


def purge_planned_rows(conn: Any, table: str, row_lists: Iterable[list[dict[str, Any]]], policy: Policy,
                       earlier: Mapping[str, Any] | None = None,
                       save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Delete the planned rows (``row_lists``: :func:`include.retention.expired_rows.planned_rows`, one list per
    file) that are still expired TRIAL rows, and return the purge's record: ``planned`` (the rows the plan
    recorded), ``deleted``, ``kept_count`` and up to :data:`KEPT_ROWS_SHOWN` ``kept_rows`` (changed or gone
    since the plan: not deleted), ``batch_rows`` and ``done_through`` (``[file, offset]``: every batch before
    it is committed; batches go in order).

    ``save(record)`` is called after every committed batch. ``earlier``: the record an earlier attempt of the
    same plan saved: the purge goes on from its ``done_through`` and its counts carry on, so after a retry the
    record counts each row once (only a batch committed in the instant before its record was saved is sent
    again, its rows then counted as kept). A record whose counts do not add up to the plan's rows at the end
    (edited by hand) raises :class:`PurgeMismatch`."""
    batch = PURGE_BATCH
    record: dict[str, Any] = {"planned": 0, "deleted": 0, "kept_count": 0, "kept_rows": [], "batch_rows": batch,
                              "done_through": [0, 0]}
    if _usable(earlier, batch):  # anything else is sent again: safe, rows already gone delete nothing
        record.update(deleted=earlier["deleted"], kept_count=earlier["kept_count"],
                      kept_rows=list(earlier["kept_rows"]), done_through=list(earlier["done_through"]))
    resume_file, resume_offset = record["done_through"]
    for index, rows in enumerate(row_lists):
        record["planned"] += len(rows)
        if index < resume_file:
            continue

        def committed(offset: int, deleted: int, kept: list[Mapping[str, Any]], index: int = index,
                      size: int = len(rows)) -> None:
            record["deleted"] += deleted
            record["kept_count"] += len(kept)
            record["kept_rows"].extend(dict(r) for r in kept[: max(0, KEPT_ROWS_SHOWN - len(record["kept_rows"]))])
            record["done_through"] = [index, offset + batch] if offset + batch < size else [index + 1, 0]
            if save is not None:
                save(record)

        delete_expired_trials(conn, table, rows, policy, batch, start_at=resume_offset if index == resume_file else 0,
                              on_batch=committed)
    if record["deleted"] + record["kept_count"] != record["planned"]:
        raise PurgeMismatch(f"the purge's record counts {record['deleted']} rows deleted and {record['kept_count']} "
                            f"kept of {record['planned']} planned: it was not written by this purge (edited?); "
                            "remove task_results/purge_job_rows.json and clear the task to purge again")
    return record


def _usable(earlier: Mapping[str, Any] | None, batch: int) -> TypeGuard[Mapping[str, Any]]:
    """Is ``earlier`` a purge record as :func:`purge_planned_rows` saves it (counts, rows, where it stopped),
    of batches of ``batch`` rows? (With another size, the offset it stopped at would name other rows.)"""
    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    through = earlier.get("done_through") if isinstance(earlier, Mapping) else None
    return (isinstance(earlier, Mapping) and earlier.get("batch_rows") == batch
            and count(earlier.get("deleted")) and count(earlier.get("kept_count"))
            and isinstance(earlier.get("kept_rows"), list) and all(isinstance(r, dict) for r in earlier["kept_rows"])
            and isinstance(through, list) and len(through) == 2 and all(count(v) for v in through)
            and through[1] % batch == 0)


#: MySQL's "command denied to user … for table …" (ER_TABLEACCESS_DENIED_ERROR).
TABLE_ACCESS_DENIED = 1142


def delete_denied(conn: Any, table: str) -> str | None:
    """Why ``purge_job_rows`` could not delete from ``table`` (the user lacks DELETE), or None.

    ``DELETE … WHERE 1 = 0`` is checked for privileges like any DELETE and deletes nothing, so a plan
    that would purge rows is refused before any file is deleted, not half way through the run."""
    import MySQLdb

    try:
        conn.cursor().execute(f"DELETE FROM {quote_table(table)} WHERE 1 = 0")
    except MySQLdb.OperationalError as exc:
        if exc.args and exc.args[0] == TABLE_ACCESS_DENIED:
            return (f"purge_job_rows is on but the MySQL user may not delete from {table!r} ({exc.args[1]}): "
                    f"GRANT DELETE ON {table} to it, or turn purge_job_rows off")
        raise
    return None
