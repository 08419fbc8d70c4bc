"""Dates for people: times are ISO 8601 UTC everywhere inside (report.json, plans); formats exist only here.

``date_format`` is ``iso`` (2020-12-29, the default), ``us`` (12/29/2020), ``eu`` (29/12/2020) or a
``strftime`` pattern (``%d.%m.%Y``). ``show_time`` adds the time of day (24-hour, UTC, with the zone
named). A pattern that already has a time directive (``%H``, ``%I``, ``%M``, ``%S``, ``%p``, ``%X``,
``%c``, ``%T``, ``%R``) is used as it is, whatever ``show_time`` says. Values are shown in UTC, as stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

DATE_FORMATS: tuple[str, ...] = ("iso", "us", "eu")
_DATE_PATTERNS = {"iso": "%Y-%m-%d", "us": "%m/%d/%Y", "eu": "%d/%m/%Y"}
_TIME_DIRECTIVE = re.compile(r"%[-_0^#]?[HIMSpXcTRz]")
_DIRECTIVE = re.compile(r"%[-_0^#]?([a-zA-Z%])")
_KNOWN_DIRECTIVES = set("aAwdbBmyYHIpMSfzZjUWcxXGuVeTRFhnt%")
MAX_PATTERN = 64
_PROBE = datetime(2020, 12, 29, 16, 28, 13, tzinfo=UTC)


def check_date_format(value: object) -> str:
    """``value`` if it is a known format or a usable strftime pattern; ValueError saying why otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"date_format {value!r} is empty: use iso, us, eu or a strftime pattern like %d.%m.%Y")
    if value in DATE_FORMATS:
        return value
    if len(value) > MAX_PATTERN or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"date_format {value[:MAX_PATTERN]!r}… must be at most {MAX_PATTERN} printable "
                         "characters: use iso, us, eu or a strftime pattern like %d.%m.%Y")
    directives = _DIRECTIVE.findall(value)
    unknown = sorted({d for d in directives if d not in _KNOWN_DIRECTIVES})
    stray = "%" in _DIRECTIVE.sub("", value)  # a lone % at the end or before a non-letter
    if not [d for d in directives if d != "%"] or unknown or stray:
        what = f"unknown directive(s) %{', %'.join(unknown)}" if unknown else "no strftime directive"
        raise ValueError(f"date_format {value!r} has {what}: use iso, us, eu or a strftime pattern like "
                         "%d.%m.%Y (%Y year, %m month, %d day, %H:%M hour and minute)")
    _PROBE.strftime(value)  # the platform's own check (raises ValueError on what it rejects)
    return value


def pattern(date_format: str, show_time: bool) -> str:
    """The strftime pattern of ``date_format`` with or without the time of day."""
    check_date_format(date_format)
    base = _DATE_PATTERNS.get(date_format, date_format)
    if date_format == "iso":
        return "%Y-%m-%dT%H:%M:%SZ" if show_time else base
    if date_format not in _DATE_PATTERNS and _TIME_DIRECTIVE.search(base):
        return base
    return f"{base} %H:%M:%S UTC" if show_time else base


def parse_iso(value: str) -> datetime | None:
    """``2020-12-29T16:28:13Z`` / ``…+00:00`` / ``2020-12-29`` → an aware UTC datetime; None if unreadable."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00:00+01:00 has no UTC time
        return None


def format_date(value: str | None, date_format: str = "iso", show_time: bool = True, *,
                date_only: bool = False) -> str | None:
    """An ISO 8601 value as people asked to read it (None stays None; text that is not a date is
    returned unchanged, never dropped). ``date_only`` is for values that are days (a metric date)."""
    if value is None:
        return None
    parsed = parse_iso(str(value))
    if parsed is None:
        return str(value)
    return parsed.strftime(pattern(date_format, show_time and not date_only))
