"""Times for people and files: aware UTC inside, one ISO 8601 form outside, a run's logical "now".

Every timestamp s3ops writes (listings, reports, upload records, the UI) is ISO 8601 UTC ending in
``Z``; ``timespec`` only chooses the precision. Naive datetimes (MySQL ``DATETIME``) are taken as UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

TimeSpec = Literal["seconds", "milliseconds"]


def utc(value: datetime) -> datetime:
    """A plain aware UTC ``datetime``. MySQL returns naive datetimes (the sessions run in UTC, so naive
    means UTC); Airflow hands out pendulum DateTimes, whose arithmetic can drop the zone: convert them."""
    t = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if type(t) is datetime:  # MySQL's rows, parsed strings: already plain (a plan makes one per row and object)
        return t
    return datetime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, tzinfo=UTC)


def format_time(value: datetime, timespec: TimeSpec = "milliseconds") -> str:
    """``2026-11-22T04:28:13.000Z`` (or ``…T04:28:13Z`` with ``timespec="seconds"``)."""
    return utc(value).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def parse_time(value: str) -> datetime:
    """``2026-11-22T04:28:13.000Z`` (or any ISO 8601 with an offset) → an aware UTC datetime."""
    return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def logical_now(context: Mapping[str, Any]) -> datetime:
    """A run's "now": its logical date, or ``run_after`` for a manual run without one (Airflow 3), so
    a retry or a backfill decides exactly what the original run would have. Never later than
    ``run_after``: the REST API accepts a logical date in the future (``2099-01-01``), which would make
    every TRIAL job expired and every deployment old enough to delete."""
    run_after = context["dag_run"].run_after
    moment = utc(context.get("logical_date") or run_after)
    return min(moment, utc(run_after)) if run_after is not None else moment


def given_time(text: str, what: str) -> datetime:
    """A time typed by a person (ISO 8601; without an offset, UTC); ``ValueError`` naming ``what`` otherwise."""
    try:
        return parse_time(text)
    except (ValueError, OverflowError) as exc:  # Overflow: 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"{what} {text[:64]!r} is not an ISO 8601 time such as 2026-11-30T00:00:00Z") from exc


def decided_as_of(logical: datetime, given: str | None, what: str = "now") -> datetime:
    """The time a run decides at: ``given`` (:func:`given_time`) or, when None, its logical time ``logical``.
    Never later: a later time would make more old enough to delete than the run's own time does, so it is
    refused (``ValueError`` naming ``what``); an earlier one only keeps more."""
    if given is None:
        return logical
    at = given_time(given, what)
    if at > logical:
        raise ValueError(f"{what} = {given[:64]!r} is later than the run's logical time "
                         f"{format_time(logical, 'seconds')}: a run decides as of its own time or an earlier one")
    return at
