"""The retention decision: which objects no job still needs, joined in one streaming pass.

A MySQL table holds jobs (``jobId``, ``completedAt``, ``type``, ``sourceData``); a bucket holds one
object per ``sourceData`` at ``key_prefix + sourceData``. At the run's logical time ``now``:

- an object is **protected** if any job referring to it is OFFICIAL, or TRIAL still running
  (``completedAt`` NULL) or completed after ``now - trial_retention``, or has any other type (unknown
  data is kept and reported). ``type`` is compared case-insensitively after trimming.
- otherwise it is deletable: ``trial_expired`` when only expired TRIAL jobs refer to it, ``orphan``
  when no job refers to it and it is older than ``orphan_min_age_days``.

The join is a merge of two streams sorted the same way: the S3 listing (UTF-8 binary key order) and
the job rows sorted by ``sourceData`` in binary order. Python compares ``str`` by code point, which is
the same order as UTF-8 bytes, so both streams are checked against it as they arrive: a stream out of
order stops the plan instead of producing wrong orphans. Memory stays constant: one object, one
``sourceData`` group and a bounded batch of deletion candidates at a time.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from include.aws.listing import S3Object
from include.core.settings import MAX_DAYS
from include.core.times import parse_time, utc
from include.retention.settings import DURATION_PATTERN

JobClass = Literal["official", "trial_running", "trial_recent", "trial_expired", "unknown_type"]
JOB_CLASSES: tuple[JobClass, ...] = ("official", "trial_running", "trial_recent", "trial_expired", "unknown_type")

#: Why a protected object is kept; an object with several causes is counted under the first one here.
CAUSES = ("unknown_type", "official", "trial_running", "trial_recent", "ambiguous", "unmatchable", "too_young")
#: Why a deletable object may go.
REASONS = ("trial_expired", "orphan")


class OrderError(RuntimeError):
    """A stream the merge join relies on is not sorted in binary order: the join would be wrong."""


# ---------------------------------------------------------------------------------------- durations

_DURATION = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration; years and months are calendar units (2019-05-31 minus P3M is 2019-02-28)."""

    text: str
    months: int = 0  # years are folded in
    delta: timedelta = field(default_factory=timedelta)  # weeks, days, hours, minutes, seconds

    def before(self, t: datetime) -> datetime:
        """``t`` minus this duration; ValueError when that is before year 1 (the calendar's start).

        The weeks, days and time go first, then the months: the reverse of how ISO 8601 adds a duration
        (months first, then the rest), so a time at or before the result plus the duration is at or before
        ``t``. (Months first made 2019-03-01 minus P1M15D 2019-01-17, which plus P1M15D is 2019-03-04.)"""
        try:
            rest = t - self.delta
        except OverflowError:  # the weeks, days and hours reach past year 1
            raise self._off_calendar(t) from None
        index = rest.year * 12 + (rest.month - 1) - self.months
        year, month = divmod(index, 12)
        if year < 1:
            raise self._off_calendar(t)
        day = min(rest.day, calendar.monthrange(year, month + 1)[1])
        return rest.replace(year=year, month=month + 1, day=day)

    def _off_calendar(self, t: datetime) -> ValueError:
        return ValueError(f"trial_retention {self.text} before {t.isoformat()} is before year 1: use a shorter one")


def parse_duration(text: str) -> Duration:
    """``"P3M"``, ``"P90D"``, ``"P1Y2M"``, ``"PT12H"``… → :class:`Duration`; anything else raises ValueError.
    Strict (upper case, designators in order), like the ``trial_retention`` setting's schema."""
    value = str(text)
    match = _DURATION.fullmatch(value)
    if not match or value in ("P", "PT") or value.endswith("T"):
        raise ValueError(
            f"trial_retention {text!r} is not an ISO 8601 duration: use whole numbers like P3M (3 calendar "
            "months), P90D (90 days), P1Y2M or P2W"
        )
    if not re.fullmatch(DURATION_PATTERN, value):  # the DAG's schema: the same bounds everywhere
        raise ValueError(
            f"trial_retention {text!r} is out of range: at most 3 digits of years, 4 of months, 4 of weeks, "
            "5 of days, 6 of hours, 7 of minutes and 9 of seconds (P999Y9999M9999W99999DT999999H9999999M999999999S)"
        )
    n = {name: int(v) if v else 0 for name, v in match.groupdict().items()}
    return Duration(
        text=value,
        months=n["years"] * 12 + n["months"],
        delta=timedelta(weeks=n["weeks"], days=n["days"], hours=n["hours"], minutes=n["minutes"], seconds=n["seconds"]),
    )


# ---------------------------------------------------------------------------------------- the rule


#: How much later than its face value (read as UTC) a ``completedAt`` without a time zone can mean: the
#: westernmost zone in use is UTC-12.
ZONELESS_SLACK = timedelta(hours=12)


@dataclass(frozen=True)
class Policy:
    """The rule's parameters, fixed for a run by its logical time."""

    now: datetime
    trial_cutoff: datetime  # TRIAL jobs completed at or before this have expired
    orphan_cutoff: datetime  # unreferenced objects modified before this are orphans

    @classmethod
    def at(cls, now: datetime, trial_retention: str = "P3M", orphan_min_age_days: float = 7) -> Policy:
        """The policy of a run at ``now``; ValueError for a day count outside 0 to ``MAX_DAYS`` (as the
        DAG's settings), a bad duration, or a cutoff that would be before year 1."""
        check_days(orphan_min_age_days)
        now = utc(now)
        trial_cutoff = parse_duration(trial_retention).before(now)
        try:
            orphan_cutoff = now - timedelta(days=orphan_min_age_days)
        except OverflowError:
            raise ValueError(f"orphan_min_age_days {orphan_min_age_days} before {now.isoformat()} is before "
                             "year 1") from None
        if trial_cutoff - datetime.min.replace(tzinfo=trial_cutoff.tzinfo) < ZONELESS_SLACK:  # refused here,
            raise ValueError(f"trial_retention {trial_retention} before {now.isoformat()}, less {ZONELESS_SLACK} "
                             "for a completedAt of no time zone, is before year 1")  # not in the middle of a plan
        return cls(now, trial_cutoff, orphan_cutoff)

    def for_zoneless_times(self) -> Policy:
        """This policy for a ``completedAt`` without a time zone (a ``DATETIME`` column): the value may have
        been written in any zone, so a TRIAL job expires only once even the latest instant it can mean (its
        face value written in UTC-12, :data:`ZONELESS_SLACK` after it read as UTC) is at the cutoff. Written in
        UTC, it expires 12 hours late; written in local time (MySQL's ``NOW()`` in a non-UTC server), never early.
        (:meth:`at` refuses a cutoff too close to year 1 for this.)"""
        return replace(self, trial_cutoff=self.trial_cutoff - ZONELESS_SLACK)


def check_days(days: float, name: str = "orphan_min_age_days") -> float:
    """``days`` if it is a number from 0 to ``MAX_DAYS`` (the DAG's bound, NaN and infinities refused),
    else ValueError naming ``name``."""
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 <= days <= MAX_DAYS:
        raise ValueError(f"{name} must be a number of days from 0 to {MAX_DAYS}, got {days!r}")
    return days


class JobRow(NamedTuple):
    job_id: str | None  # None: a NULL jobId (a table without a key on it)
    completed_at: datetime | None
    type: str | None
    source_data: str | None


def classify_job(job_type: str | None, completed_at: datetime | None, policy: Policy) -> JobClass:
    """What one job says about the object it refers to. The type is read as the purge's SQL reads it
    (``UPPER(TRIM(type))``: spaces trimmed, ASCII letters): ``"trıal"`` (dotless i), ``"TRIAL\xa0"`` or an
    em space are an unknown type and kept, where Python's own ``strip().upper()`` made them TRIAL."""
    kind = job_type.strip(" ") if isinstance(job_type, str) else None
    kind = kind.upper() if kind is not None and kind.isascii() else None
    if kind == "OFFICIAL":
        return "official"
    if kind != "TRIAL":
        return "unknown_type"
    if completed_at is None:
        return "trial_running"
    return "trial_expired" if utc(completed_at) <= policy.trial_cutoff else "trial_recent"


def decide(classes: Iterable[JobClass], last_modified: datetime, policy: Policy) -> tuple[str | None, str | None]:
    """``(reason, None)`` for a deletable object, ``(None, cause)`` for a protected one."""
    present = set(classes)
    if present:
        for cause in CAUSES:
            if cause in present:
                return None, cause
        return "trial_expired", None  # only expired TRIAL jobs are left
    if utc(last_modified) < policy.orphan_cutoff:
        return "orphan", None
    return None, "too_young"  # its job row may not be written yet


class Unmatchable(list[Any]):
    """What a lookup answers for a name the jobs table's ``sourceData`` character set cannot hold (a
    latin1 column and a key with ``ł``): no row can refer to it, so nobody can say the file is unused."""

    def __init__(self, charset: str) -> None:
        super().__init__()
        self.charset = charset


def protected_now(remainder: str, rows: Iterable[JobRow], policy: Policy) -> str | None:
    """Why ``remainder`` (a key minus ``key_prefix``) must be kept given rows the table's own collation
    matched to it, or None. A row matching only loosely (case, trailing spaces, accents: the collation
    says equal, the bytes differ; or another Unicode normalization form of the name) makes the key
    ambiguous, and an ambiguous key is kept. A name the table cannot hold (:class:`Unmatchable`) is kept."""
    if isinstance(rows, Unmatchable):
        return "unmatchable"
    classes: set[JobClass] = set()
    for row in rows:
        if row.source_data != remainder:
            return "ambiguous"
        classes.add(classify_job(row.type, row.completed_at, policy))
    if remainder == "":
        return "ambiguous"  # the key is the prefix itself (a folder marker), not a job's file
    classes.discard("trial_expired")
    return next((c for c in CAUSES if c in classes), None)


# ---------------------------------------------------------------------------------------- the merge join


@dataclass
class JobStats:
    """What the job rows looked like (for plan.json and the empty-table guard)."""

    rows: int = 0
    rows_without_source: int = 0
    rows_with_empty_source: int = 0  # '' or blanks name no file either (a legacy NOT NULL DEFAULT '' column)
    sources: int = 0
    sources_without_object: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: dict.fromkeys(JOB_CLASSES, 0))
    unknown_type_samples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "rows_without_source": self.rows_without_source,
            "rows_with_empty_source": self.rows_with_empty_source, "sources": self.sources,
            "sources_without_object": self.sources_without_object, "by_class": dict(self.by_class),
        }


class Group(NamedTuple):
    source_data: str
    classes: frozenset[JobClass]


def group_rows(rows: Iterable[JobRow], policy: Policy, stats: JobStats, sample_size: int = 20) -> Iterator[Group]:
    """Fold rows sorted by ``sourceData`` into one :class:`Group` per value, checking the order."""
    current: str | None = None
    classes: set[JobClass] = set()
    for row in rows:
        stats.rows += 1
        kind = classify_job(row.type, row.completed_at, policy)
        stats.by_class[kind] += 1
        if kind == "unknown_type" and len(stats.unknown_type_samples) < sample_size:
            stats.unknown_type_samples.append(
                {"jobId": row.job_id, "type": row.type, "sourceData": row.source_data}
            )
        if row.source_data is None:
            stats.rows_without_source += 1
            continue
        if not row.source_data.strip():  # '', or only blanks and line ends
            stats.rows_with_empty_source += 1
        if current is not None and row.source_data < current:
            raise OrderError(
                f"job rows are not sorted in binary order ({row.source_data!r} after {current!r}): "
                "the merge join would be wrong, so nothing is planned"
            )
        if row.source_data != current:
            if current is not None:
                stats.sources += 1
                yield Group(current, frozenset(classes))
            current, classes = row.source_data, set()
        classes.add(kind)
    if current is not None:
        stats.sources += 1
        yield Group(current, frozenset(classes))


def merge_join(
    objects: Iterable[S3Object], groups: Iterable[Group], key_prefix: str, stats: JobStats
) -> Iterator[tuple[S3Object, str, frozenset[JobClass]]]:
    """``(object, remainder, classes of the jobs referring to it)`` for every object under ``key_prefix``,
    in key order. Objects outside the prefix are skipped (never touched)."""
    it = iter(groups)
    group = next(it, None)
    previous: str | None = None
    for obj in objects:
        if not obj.key.startswith(key_prefix):
            continue
        if previous is not None and obj.key <= previous:
            raise OrderError(f"the S3 listing is not in key order ({obj.key!r} after {previous!r}): this server does "
                             "not list keys in UTF-8 binary order as S3 does, so the merge join would be wrong and "
                             "nothing is planned; plan from an S3 Inventory (source: inventory) instead")
        previous = obj.key
        remainder = obj.key[len(key_prefix):]
        while group is not None and group.source_data < remainder:
            stats.sources_without_object += 1
            group = next(it, None)
        if group is not None and group.source_data == remainder:
            yield obj, remainder, group.classes
            group = next(it, None)
        else:
            yield obj, remainder, frozenset()
    while group is not None:  # read to the end so the row counts are complete
        stats.sources_without_object += 1
        group = next(it, None)


# ---------------------------------------------------------------------------------------- the plan

#: ``lookup({name: its other spellings})`` → {name: the rows the table's collation calls equal to any of them}
#: (:func:`include.retention.jobs.rows_for_names`); a name the table cannot hold answers :class:`Unmatchable`
Lookup = Callable[[Mapping[str, Sequence[str]]], dict[str, list[JobRow]]]


#: what may end a name typed or pasted into a job row (a CSV line's end, a tab, padding): no collation forgives
#: them, and a ``_ci`` one's PAD SPACE only trailing spaces
LINE_ENDS = ("\r", "\n", "\r\n", "\t", " ")
#: how a job row may give the file as a URI (``s3a``: what Hadoop and Spark jobs write)
S3_SCHEMES = ("s3://", "s3a://")


@dataclass(frozen=True)
class SpellingMarks:
    """Which added characters some row of the jobs table carries, read in one scan when a plan starts
    (:func:`include.retention.jobs.spelling_marks`): a leading ``/`` or space, a line end, tab or space at its
    end, ``key_prefix`` anywhere, ``%`` or ``+`` (percent- or form-encoding), ``://`` (a URI). Without the
    ``prefix`` mark only forms holding ``key_prefix`` as typed are left out: ``p%2Fa.dat`` is still made.

    :func:`spellings` makes no spelling that adds a character no row carries, as no row could equal it: on a
    clean table a name costs one value again, not dozens. Rows written after the scan are no risk: the delete
    step's re-check makes every spelling (:data:`EVERY_SPELLING`)."""

    slash: bool = True
    space: bool = True
    end: bool = True
    prefix: bool = True
    encoded: bool = True
    uri: bool = True


#: the marks of a table that may hold anything: every spelling is made
EVERY_SPELLING = SpellingMarks()


#: MySQL's ``latin1`` is Windows-1252, whose five unassigned bytes it reads as the C1 controls of the same number
_CP1252 = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_CP1252_BYTES = {ord(c): b for b, c in _CP1252.items()}


def as_latin1(name: str) -> str:
    """``name``'s UTF-8 bytes read as MySQL's latin1 (``café`` → ``cafÃ©``): how a name looks that an
    application wrote as UTF-8 through a latin1 connection (into a latin1 column, or double-encoded)."""
    return name.encode().decode("latin-1").translate(_CP1252)


def from_latin1(name: str) -> list[str]:
    """The name whose :func:`as_latin1` is ``name`` (``cafÃ©`` → ``café``), if there is one: a key uploaded
    under the garbled name while the job row holds the real one. ``[]`` for a name no UTF-8 garbles into."""
    if name.isascii():
        return []
    try:
        raw = bytes(_CP1252_BYTES.get(ord(c), ord(c)) for c in name)  # ValueError past U+00FF
        return [raw.decode()]  # UnicodeDecodeError: not UTF-8 read as latin1
    except ValueError:
        return []


def spellings(name: str, key_prefix: str = "", *, bucket: str = "", marks: SpellingMarks = EVERY_SPELLING) -> list[str]:
    """``name`` (a key minus ``key_prefix``) and the other ways a job row may spell the same file: the whole
    key (``key_prefix + name``), with or without a leading ``/``, percent-encoded (slashes too, ``p%2Fa``) or
    decoded (``a%20b`` for ``a b``), form-encoded or decoded as S3's event notifications give keys (``a+b`` for
    ``a b``), its UTF-8 read as latin1 or the other way round (:func:`as_latin1`, :func:`from_latin1`), as an
    S3 URI of ``bucket`` (``s3://bucket/key``, ``s3a://``), with a line end, a tab or a space around it. No collation
    calls those equal, yet nobody can say a file so named is unused. Only the spellings some row of the table
    could equal are made (``marks``)."""
    found = [name]
    whole_key = key_prefix + name
    for whole in dict.fromkeys([name, whole_key]):
        bare = whole.strip().lstrip("/")
        plain = bare.isascii() and "%" not in bare and "+" not in bare  # decoding and garbling leave it as it is
        cores = [bare] if plain else [bare, unquote(bare), unquote_plus(bare), as_latin1(bare), *from_latin1(bare)]
        if marks.encoded:
            cores += [quote(bare, safe="/"), quote(bare, safe=""), quote_plus(bare, safe="/")]
        cores = list(dict.fromkeys(cores))
        uris = [f"{scheme}{bucket}/{core}" for scheme in S3_SCHEMES for core in cores] if (
            marks.uri and bucket and whole == whole_key) else []
        for core in cores + uris:
            found.append(core)
            if marks.slash and core not in uris:  # nobody writes /s3://
                found.append("/" + core)
            if marks.space:
                found.append(" " + core)
            if marks.end:
                found += [core + end for end in LINE_ENDS]
    return [s for s in dict.fromkeys(found)
            if s == name or any(_may_equal_a_row(form, key_prefix, marks) for form in _normal_forms(s))]


def _may_equal_a_row(form: str, key_prefix: str, marks: SpellingMarks) -> bool:
    """Whether ``marks`` leave ``form`` worth asking for as far as ``key_prefix`` goes: a form holding
    ``key_prefix`` as typed can equal no row where no row holds it (the ``prefix`` mark). Encoding, garbling or
    normalizing the whole key changes its prefix too (``p%2Fa.dat``, ``my%20dir/``, ``cafÃ©/``, NFD), so only
    the form itself tells, not where it came from."""
    return marks.prefix or not key_prefix or key_prefix not in form


def _normal_forms(spelling: str) -> tuple[str, ...]:
    """``spelling`` in NFC and NFD too (an ASCII one is both already)."""
    if spelling.isascii():
        return (spelling,)
    return (spelling, unicodedata.normalize("NFC", spelling), unicodedata.normalize("NFD", spelling))


def lookup_forms(lookup: Lookup, names: Iterable[str], key_prefix: str = "", *, bucket: str = "",
                 marks: SpellingMarks = EVERY_SPELLING) -> dict[str, list[JobRow]]:
    """``lookup`` of each name's :func:`spellings` (under ``key_prefix``, in ``bucket``, as far as ``marks``
    allow) and of their NFC and NFD forms; rows found for any form are answered for the name.
    ``utf8mb4_general_ci`` calls ``café`` (NFC) and ``cafe`` + U+0301 (NFD, as macOS names files) different,
    and ``/a.dat`` or ``a.dat\\r`` different from ``a.dat``, yet they are the same name to a person: a row naming
    another form makes the file ambiguous (see :func:`protected_now`), never an orphan."""
    forms = {name: list(dict.fromkeys(form for spelling in spellings(name, key_prefix, bucket=bucket, marks=marks)
                                      for form in _normal_forms(spelling)
                                      if form == name or _may_equal_a_row(form, key_prefix, marks)))
             for name in names}
    return {name: rows for name, rows in lookup(forms).items() if rows or isinstance(rows, Unmatchable)}


class Candidate(NamedTuple):
    obj: S3Object
    remainder: str
    reason: str


@dataclass
class PlanStats:
    """Counts for plan.json beyond what the plan writer counts."""

    protected_count: int = 0
    protected_bytes: int = 0
    by_cause: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))
    ambiguous_samples: list[str] = field(default_factory=list)
    unmatchable_samples: list[str] = field(default_factory=list)
    too_young_samples: list[str] = field(default_factory=list)

    def keep(self, obj: S3Object, cause: str, sample_size: int) -> None:
        self.protected_count += 1
        self.protected_bytes += obj.size
        self.by_cause[cause] += 1
        samples = {"ambiguous": self.ambiguous_samples, "unmatchable": self.unmatchable_samples,
                   "too_young": self.too_young_samples}.get(cause)
        if samples is not None and len(samples) < sample_size:
            samples.append(obj.key)


def plan_retention(
    objects: Iterable[S3Object],
    rows: Iterable[JobRow],
    *,
    key_prefix: str,
    policy: Policy,
    add: Callable[[S3Object, str], None],
    note_scanned: Callable[[int], None],
    lookup: Lookup | None = None,
    bucket: str = "",
    marks: SpellingMarks = EVERY_SPELLING,
    batch: int = 1000,
    sample_size: int = 20,
) -> dict[str, Any]:
    """Run the merge join and hand every deletable object to ``add(obj, reason)``.

    Deletion candidates are confirmed in batches of ``batch`` with ``lookup`` (the table's own
    collation), under each spelling ``marks`` allows (:func:`lookup_forms`): a row that refers to a key only
    loosely keeps it (``ambiguous``). Returns the counts for plan.json; raises :class:`OrderError` if either
    stream is out of binary order.
    """
    jobs = JobStats()
    stats = PlanStats()
    pending: list[Candidate] = []

    def flush() -> None:
        matched = (lookup_forms(lookup, [c.remainder for c in pending], key_prefix, bucket=bucket, marks=marks)
                   if lookup is not None and pending else {})
        for cand in pending:
            cause = protected_now(cand.remainder, matched.get(cand.remainder, ()), policy)
            if cause:
                stats.keep(cand.obj, cause, sample_size)
            else:
                add(cand.obj, cand.reason)
        pending.clear()

    groups = group_rows(rows, policy, jobs, sample_size)
    for obj, remainder, classes in merge_join(objects, groups, key_prefix, jobs):
        note_scanned(obj.size)
        reason, cause = decide(classes, parse_time(obj.last_modified), policy)
        if reason is None:
            stats.keep(obj, cause or "unknown_type", sample_size)
            continue
        pending.append(Candidate(obj, remainder, reason))
        if len(pending) >= batch:
            flush()
    flush()
    return {
        "policy": {
            "now": policy.now.isoformat(), "trial_cutoff": policy.trial_cutoff.isoformat(),
            "orphan_cutoff": policy.orphan_cutoff.isoformat(), "key_prefix": key_prefix,
        },
        "jobs": jobs.as_dict(),
        "protected": {
            "count": stats.protected_count, "bytes": stats.protected_bytes, "by_cause": stats.by_cause,
            "ambiguous_samples": stats.ambiguous_samples, "unmatchable_samples": stats.unmatchable_samples,
            "too_young_samples": stats.too_young_samples,
        },
        "unknown_type_rows": {"count": jobs.by_class["unknown_type"], "samples": jobs.unknown_type_samples},
        "expired_trial_rows": jobs.by_class["trial_expired"],
    }



# ---------------------------------------------------------------------------------------- run glue


def guarded_listing(objects: Iterable[S3Object], failure: list[str]) -> Iterator[S3Object]:
    """Pass the listing through; if it breaks (S3 still failing after the client's retries), stop and
    record why in ``failure``: the plan is closed as incomplete and the guard refuses it."""
    try:
        yield from objects
    except Exception as exc:  # noqa: BLE001 - any listing failure makes the plan incomplete, never partial-and-trusted
        from include.core.errors import error_text

        failure.append(error_text(exc))


class RowRecorder(Protocol):
    """Records job rows on their way to the plan (:class:`include.retention.expired_rows.ExpiredRowsWriter`)."""

    def passing(self, rows: Iterable[JobRow]) -> Iterator[JobRow]: ...

    def close(self) -> dict[str, Any]: ...


def write_plan(
    objects: Iterable[S3Object], rows: Iterable[JobRow], run_dir: Any, *, key_prefix: str, policy: Policy,
    lookup: Lookup | None, jobs_table: str, allow_empty_jobs: bool, bucket: str = "",
    marks: SpellingMarks = EVERY_SPELLING, chunk_size: int = 1000, extra: dict[str, Any] | None = None,
    versions: Iterable[Any] | None = None, run_settings: Mapping[str, Any] | None = None,
    expired_rows: RowRecorder | None = None,
) -> dict[str, Any]:
    """Plan a retention run of ``bucket`` into ``run_dir`` (plan chunks + plan.json); returns the XCom summary.
    Candidates are looked up under the spellings ``marks`` (the jobs table's) allow.

    With ``versions`` (a ListObjectVersions stream, ``include_versions``) instead of ``objects``, a
    planned key's every version and delete marker is a plan item (see include.retention.versions).
    With ``expired_rows`` (``purge_job_rows``), the expired TRIAL rows are recorded too, and only they are
    purged (:class:`include.retention.expired_rows.ExpiredRowsWriter`).
    The summary carries the policy's ``refusals`` (empty job query, failed listing) for the guard."""
    from include.deletion.plan import PlanItem, PlanWriter
    from include.retention.versions import VersionCounts, current_with_versions

    writer = PlanWriter(run_dir, chunk_size=chunk_size, settings=run_settings)
    if expired_rows is not None:
        rows = expired_rows.passing(rows)
    failure: list[str] = []
    version_counts = VersionCounts()
    if versions is not None:
        objects = current_with_versions(guarded_listing(versions, failure), version_counts, writer.note_scanned)  # type: ignore[assignment,arg-type]  # TODO(types): make guarded_listing generic

    def add(o: Any, reason: str) -> None:
        if versions is None:
            writer.add(PlanItem(key=o.key, size=o.size, reason=reason, last_modified=o.last_modified,
                                etag=o.etag))
            return
        version_counts.planned(o)
        for v in o.versions:
            writer.add(PlanItem(key=v.key, size=v.size, reason=reason, version_id=v.version_id,
                                last_modified=v.last_modified, etag=v.etag))

    counts = plan_retention(
        guarded_listing(objects, failure), rows, key_prefix=key_prefix, policy=policy, lookup=lookup, bucket=bucket,
        marks=marks, add=add, note_scanned=writer.note_scanned,
    )
    if versions is not None:
        counts["versions"] = version_counts.as_dict()
    if failure:
        counts["listing_error"] = failure[0]
    counts = {**counts, **(extra or {}), "jobs_table": jobs_table}
    if expired_rows is not None:
        counts["expired_trial_rows_files"] = expired_rows.close()
    counts["refusals"] = refusals(counts, jobs_table=jobs_table, allow_empty_jobs=allow_empty_jobs)
    counts["headline"] = headline(counts)
    return writer.close(listing_complete=not failure, extra=counts)


def refusals(summary: dict[str, Any], *, jobs_table: str, allow_empty_jobs: bool) -> list[str]:
    """Retention's own guard reasons (``summary`` = the plan counts): an empty job query must never
    turn every file into an orphan, and a listing that failed part way cannot be trusted."""
    found: list[str] = []
    jobs = summary.get("jobs", {})
    rows = int(jobs.get("rows") or 0)
    without_source = int(jobs.get("rows_without_source") or 0) + int(jobs.get("rows_with_empty_source") or 0)
    if not rows and not allow_empty_jobs:
        found.append(
            f"the job query on {jobs_table!r} returned no rows, so every file would look like an orphan; "
            "check the table and the connection, or set allow_empty_jobs if the table really is empty"
        )
    elif rows and rows == without_source and not allow_empty_jobs:
        found.append(
            f"every one of the {rows} job rows in {jobs_table!r} has sourceData NULL or empty, so no row names a "
            "file and every file would look like an orphan; check the column and the data, or set allow_empty_jobs "
            "if no job really refers to a file"
        )
    if summary.get("listing_error"):
        found.append(f"listing the bucket failed: {summary['listing_error']}")
    if summary.get("purge_denied"):
        found.append(summary["purge_denied"])
    return found


def make_recheck(lookup: Lookup, key_prefix: str, policy: Policy, bucket: str = "") -> Callable[[list[Any]], dict[str, str]]:
    """The delete step's re-check: ``{key: why it is protected now}`` for plan items whose file a job
    (inserted or changed since planning) now protects, or that the table now matches loosely under any
    spelling (rows written since the plan's :class:`SpellingMarks` were read may carry anything)."""

    def recheck(items: list[Any]) -> dict[str, str]:
        names = {item.key: item.key[len(key_prefix):] for item in items if item.key.startswith(key_prefix)}
        found = lookup_forms(lookup, sorted(set(names.values())), key_prefix, bucket=bucket)
        why = {key: protected_now(name, found.get(name, ()), policy) for key, name in names.items()}
        outside = {item.key: "outside key_prefix" for item in items if item.key not in names}
        return {**{k: v for k, v in why.items() if v}, **outside}

    return recheck


def headline(summary: dict[str, Any]) -> str:
    """One paragraph for the approver: the rule as this run applies it, and what else it will do."""
    policy = summary.get("policy", {})
    if summary.get("refusals"):
        return "Refused: " + "; ".join(summary["refusals"])
    text = (
        f"Retention at {policy.get('now')}: TRIAL jobs completed before {policy.get('trial_cutoff')} have expired "
        f"(trial_retention {summary.get('trial_retention')}); unreferenced objects older than "
        f"{policy.get('orphan_cutoff')} are orphans. {summary.get('protected', {}).get('count', 0)} objects are "
        f"kept; {summary.get('unknown_type_rows', {}).get('count', 0)} job rows have an unknown type (kept)."
    )
    if summary.get("completed_at_type") == "DATETIME":
        text += (" completedAt is a DATETIME (no time zone): the cutoff is 12 hours earlier than the retention "
                 "alone says, so that a time written in any zone expires late, never early.")
    by_cause = summary.get("protected", {}).get("by_cause", {})
    if by_cause.get("ambiguous"):
        text += (f" {by_cause['ambiguous']} files are ambiguous (a job row names them only loosely: under the "
                 "table's collation, in another Unicode form or another spelling such as a leading '/', "
                 "percent-encoding, UTF-8 read as latin1, a line end or the whole key; kept).")
    if by_cause.get("unmatchable"):
        text += (f" {by_cause['unmatchable']} files have names the jobs table's sourceData column cannot hold "
                 "(its character set, or its length), so no row can refer to them (kept).")
    versions = summary.get("versions")
    if versions:
        nc = versions["noncurrent_versions"]
        text += (f" Versions are deleted too: {nc['count']} noncurrent versions ({nc['bytes']} bytes) and "
                 f"{versions['delete_markers']} delete markers of the planned keys.")
    if summary.get("versioning_note"):
        text += " " + summary["versioning_note"]
    if summary.get("inventory"):
        from include.inventory.read import plan_note

        text += " " + plan_note(summary["inventory"])
    if summary.get("purge_job_rows"):
        text += f" Then {summary.get('expired_trial_rows', 0)} expired TRIAL job rows are purged from the table."
    return text


def policy_of(plan: Mapping[str, Any]) -> Policy:
    """The exact policy a plan was made with (delete and purge decide as the plan did)."""
    p = plan["policy"]
    return Policy(*(datetime.fromisoformat(p[k]) for k in ("now", "trial_cutoff", "orphan_cutoff")))
