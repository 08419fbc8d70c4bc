"""Notifications, the pure part: which targets a deployment configured, and what each message says.

Sending is Airflow's job: :mod:`include.dag_defaults` turns each :class:`Target` into a provider notifier
(``SmtpNotifier``, ``SlackNotifier``, ``SlackWebhookNotifier``, ``HttpNotifier``) and hands it a
:class:`Message` built here. Nothing here imports Airflow, so the texts are unit tested on their own.

Targets are the ``notifications`` key of a DAG's deployment-settings Variable (``s3ops_<dag>``), a list:

- ``"ops@example.com"``: an e-mail through the ``smtp_default`` connection;
- ``{"type": "email", "to": ["a@x.org", "b@x.org"], "conn_id": "smtp_ops", "from": "s3ops@x.org"}``
  (the sender is ``from``, else the connection's ``from_email`` extra);
- ``{"type": "slack", "conn_id": "slack_api_default", "channel": "#s3ops"}`` (Slack API token);
- ``{"type": "slack_webhook", "conn_id": "slack_default"}`` (Slack incoming webhook);
- ``{"type": "webhook", "conn_id": "http_default", "endpoint": "/hooks/s3ops"}`` (a JSON POST).

Each may carry ``"events"``, a subset of :data:`EVENTS` (default: all). Unset, ``null`` or ``[]``: nothing
is sent. Everything a message quotes from S3, MySQL or an exception is untrusted: control characters are
replaced, lengths are capped, and each channel gets its own escaping (HTML for e-mail, Slack's ``&<>``).
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from include.core.units import format_size

SETTING = "notifications"
APPROVAL, FAILURE = "approval", "failure"
EVENTS = (APPROVAL, FAILURE)
KINDS = ("email", "slack", "slack_webhook", "webhook")
DEFAULT_CONN = {"email": "smtp_default", "slack": "slack_api_default", "slack_webhook": "slack_default",
                "webhook": "http_default"}
# the local part holds no ':' or '/': "mailto://user:password@host" is an Apprise URL with a password, not
# an address (it was accepted, then logged with every message sent)
EMAIL_RE = re.compile(r"[^@\s<>,;\"':/]+@[^@\s<>,;\"':/]+\.[^@\s<>,;\"':/]+")
CONN_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,250}")
SUBJECT_MAX = 200
LINE_MAX = 500
SAMPLES_MAX = 10


class NotifyConfigError(ValueError):
    """The ``notifications`` setting is malformed; the message names the entry and what to write instead."""


@dataclass(frozen=True)
class Target:
    kind: str  # one of KINDS
    conn_id: str
    to: tuple[str, ...] = ()  # e-mail recipients
    channel: str | None = None  # slack
    endpoint: str | None = None  # webhook path below the connection's host
    sender: str | None = None  # e-mail From; None: the SMTP connection's from_email
    events: frozenset[str] = frozenset(EVENTS)

    def wants(self, event: str) -> bool:
        return event in self.events


@dataclass(frozen=True)
class Message:
    """One notification, rendered for every channel: ``text`` (plain), ``html`` (e-mail), ``slack``
    (mrkdwn, escaped) and ``data`` (the webhook's JSON body)."""

    event: str
    subject: str
    text: str
    html: str
    slack: str
    data: dict[str, Any] = field(default_factory=dict)


# Targets ------------------------------------------------------------------------------------------
# what a rejected value may look like to be shown: an address (with "@"), a channel ("#…") or a lower-case word
_SHOWN = re.compile(r"[A-Za-z0-9_.+-]{1,40}@[A-Za-z0-9_.-]{0,40}|#[a-z0-9_.-]{1,40}|[a-z][a-z _-]{0,23}")


def shown_value(value: Any) -> str:
    """A rejected setting value for an error message, which is logged and mailed: a URL (a Slack webhook, an
    Apprise URL with a password, an endpoint with a token), a bot token or a password pasted in the wrong
    place may be a secret, so only what looks like an address, a channel or a lower-case word
    (``ops@examplecom``, ``#ops``, ``pager``) is shown; anything else is named by its kind."""
    if isinstance(value, str) and _SHOWN.fullmatch(value):
        return repr(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    return f"a {type(value).__name__} (not shown: it may hold a secret)"


def parse_targets(raw: Any, *, source: str = f"the setting {SETTING!r}") -> list[Target]:
    """Validate the ``notifications`` setting; ``source`` names where it came from for the error message."""
    if raw is None or raw == "" or raw == []:
        return []
    if isinstance(raw, (str, Mapping)):
        raw = [raw]
    if not isinstance(raw, Sequence):
        raise NotifyConfigError(f"{source} must be a list of targets (e-mail addresses or objects), got "
                                f"{shown_value(raw)}")
    return [_target(item, f"{source}[{i}]") for i, item in enumerate(raw)]


def _target(item: Any, where: str) -> Target:
    if isinstance(item, str):
        return Target("email", DEFAULT_CONN["email"], to=(_address(item, where),))
    if not isinstance(item, Mapping):
        raise NotifyConfigError(f"{where} must be an e-mail address or an object with a 'type', got "
                                f"{shown_value(item)}")
    kind = item.get("type")
    kind = "email" if kind == "smtp" else kind  # the provider's name for it
    if kind not in KINDS:
        raise NotifyConfigError(f"{where}: 'type' must be one of {list(KINDS)}, got {shown_value(kind)}")
    known = {"type", "conn_id", "events"} | {"email": {"to", "from"}, "slack": {"channel"}, "slack_webhook": set(),
                                              "webhook": {"endpoint"}}[kind]
    unknown = sorted(set(item) - known)
    if unknown:
        raise NotifyConfigError(f"{where}: unknown keys [{', '.join(shown_value(k) for k in unknown)}] for type "
                                f"{kind!r}; known: {sorted(known)}")
    conn_id = item.get("conn_id") or DEFAULT_CONN[kind]
    if not isinstance(conn_id, str) or not CONN_ID_RE.fullmatch(conn_id):
        raise NotifyConfigError(f"{where}: conn_id must name an Airflow connection, got {shown_value(conn_id)}")
    events = item.get("events", list(EVENTS))
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, Sequence) or not events or set(events) - set(EVENTS):
        raise NotifyConfigError(f"{where}: 'events' must be a non-empty list drawn from {list(EVENTS)}, got "
                                f"{shown_value(events)}")
    target = Target(kind, conn_id, events=frozenset(events))
    if kind == "email":
        to = item.get("to")
        to = [to] if isinstance(to, str) else to
        if not isinstance(to, Sequence) or not to:
            raise NotifyConfigError(f"{where}: an email target needs 'to', a list of addresses")
        sender = item.get("from")
        return Target(kind, conn_id, to=tuple(_address(a, f"{where}.to") for a in to), events=target.events,
                      sender=_address(sender, f"{where}.from") if sender is not None else None)
    if kind == "slack":
        channel = item.get("channel")
        if not isinstance(channel, str) or not channel.strip() or any(c.isspace() for c in channel):
            raise NotifyConfigError(f"{where}: a slack target needs 'channel', e.g. '#s3ops', got {shown_value(channel)}")
        return Target(kind, conn_id, channel=channel, events=target.events)
    if kind == "webhook":
        endpoint = item.get("endpoint")
        if endpoint is not None and (not isinstance(endpoint, str) or "://" in endpoint or "?" in endpoint
                                     or _has_control(endpoint)):
            # no query string: a token there would be logged with every message; put it in the connection
            raise NotifyConfigError(f"{where}: 'endpoint' is a path below the connection's host, without a query "
                                    f"(a token belongs in the connection), got {shown_value(endpoint)}")
        return Target(kind, conn_id, endpoint=endpoint, events=target.events)
    return target


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not EMAIL_RE.fullmatch(value.strip()):
        raise NotifyConfigError(f"{where}: {shown_value(value)} is not an e-mail address")
    return value.strip()


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


# Text hygiene -------------------------------------------------------------------------------------
def clean(value: Any, limit: int = LINE_MAX) -> str:
    """One line of untrusted text: control and format characters shown as ``\\xNN``/``\\uNNNN``, capped."""
    out = []
    for c in str(value):
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            out.append(repr(c)[1:-1] if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(error: Any) -> str:
    """The first non-empty line of an error (``Type: message`` for an exception), cleaned."""
    if isinstance(error, BaseException):
        message = str(error).strip()
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:
        text = str(error or "").strip() or "unknown error"
    line = next((ln for ln in text.splitlines() if ln.strip()), text)
    return clean(line.strip())


def slack_escape(text: str) -> str:
    """Slack mrkdwn control characters (its documented escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def human_bytes(n: Any) -> str:
    """A size for people (the project's one formatter); ``? B`` for a value that is not a number."""
    try:
        return format_size(int(n))
    except (TypeError, ValueError):
        return "? B"


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


# Links --------------------------------------------------------------------------------------------
def required_actions_link(base_url: str | None, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The run's Required Actions page for ``task_id`` (Airflow's own URL layout; ids are quoted, which
    Airflow's ``generate_link_to_ui`` does not do). Relative when no base URL is configured."""
    path = (f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
            f"/required_actions?map_index={int(map_index)}")
    return f"{base_url.rstrip('/')}{path}" if base_url else path


def run_link(base_url: str | None, dag_id: str, run_id: str, task_id: str | None = None) -> str:
    path = f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    if task_id:
        path += f"/tasks/{quote(task_id, safe='')}"
    return f"{base_url.rstrip('/')}{path}" if base_url else path


# Messages -----------------------------------------------------------------------------------------
def _render(event: str, subject: str, heading: str, rows: list[tuple[str, str]], bullets: list[str],
            link_label: str, link: str, data: dict[str, Any]) -> Message:
    subject = clean(subject, SUBJECT_MAX)
    text_lines = [heading, ""] + [f"{k}: {v}" for k, v in rows]
    if bullets:
        text_lines += [""] + [f"  - {b}" for b in bullets]
    text_lines += ["", f"{link_label}: {link}"]
    esc = html.escape
    html_body = (
        f"<p><b>{esc(heading)}</b></p><table>"
        + "".join(f"<tr><th align=left>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        + "</table>"
        + ("<ul>" + "".join(f"<li><code>{esc(b)}</code></li>" for b in bullets) + "</ul>" if bullets else "")
        + f'<p><a href="{esc(link, quote=True)}">{esc(link_label)}</a><br>{esc(link)}</p>'
    )
    slack = "\n".join([f"*{slack_escape(heading)}*"] + [f"{slack_escape(k)}: {slack_escape(v)}" for k, v in rows]
                      + ["• `" + slack_escape(b.replace("`", "'")) + "`" for b in bullets]
                      + [f"<{link}|{slack_escape(link_label)}>"])
    return Message(event, subject, "\n".join(text_lines), html_body, slack, {"event": event, "subject": subject,
                                                                            "link": link, **data})


def approval_message(*, dag_id: str, run_id: str, summary: Mapping[str, Any] | None, limits: Mapping[str, Any],
                     link: str, unread: str | None = None) -> Message:
    """Approval needed: the plan's headline, counts, bytes, the guard limits and the Required Actions link.

    ``summary`` is ``plan.json``; None (with ``unread`` saying why) when it could not be read: the request
    still goes out, saying so instead of showing counts it does not know (never "0 objects"). Fields of an
    unexpected type are left out, never an error: the message only announces the request."""
    if summary is None:
        return _unread_approval_message(dag_id=dag_id, run_id=run_id, limits=limits, link=link,
                                        unread=unread or "plan.json could not be read")
    bucket = clean(summary.get("bucket") or limits.get("bucket") or "?", 100)
    count, nbytes = _int(summary.get("delete_count")), _int(summary.get("delete_bytes"))
    headline = clean(summary.get("headline") or f"delete {count} objects from s3://{bucket}")
    rows = [("DAG", clean(dag_id)), ("Run", clean(run_id)), ("Bucket", bucket), ("Headline", headline),
            ("Delete", f"{count} objects, {human_bytes(nbytes)} ({nbytes} bytes)"),
            ("Scanned", f"{_int(summary.get('scanned_count'))} objects, "
                        f"{human_bytes(summary.get('scanned_bytes'))}")]
    by_reason = summary.get("by_reason")
    for reason, slot in sorted((by_reason if isinstance(by_reason, Mapping) else {}).items(), key=lambda kv: str(kv[0])):
        if isinstance(slot, Mapping):
            rows.append((f"  {clean(reason, 60)}", f"{_int(slot.get('count'))} objects, "
                                                    f"{human_bytes(slot.get('bytes'))}"))
    shown = _limits_shown(limits)
    rows.append(("Guard limits", ", ".join(f"{k}={v}" for k, v in shown.items()) or "none"))
    samples = summary.get("samples")
    samples = [clean(s, 300) for s in (samples if isinstance(samples, (list, tuple)) else [])[:SAMPLES_MAX]]
    return _render(
        APPROVAL, f"[s3ops] approval needed: {dag_id}: {headline}", f"Approval needed: {headline}", rows,
        samples, "Approve or reject in Required Actions", link,
        {"dag_id": dag_id, "run_id": run_id, "bucket": bucket, "headline": headline, "delete_count": count,
         "delete_bytes": nbytes, "limits": shown},
    )


def _limits_shown(limits: Mapping[str, Any]) -> dict[str, Any]:
    return {k: limits.get(k) for k in ("max_delete_count", "max_delete_fraction") if limits.get(k) is not None}


def _unread_approval_message(*, dag_id: str, run_id: str, limits: Mapping[str, Any], link: str,
                             unread: str) -> Message:
    """The approval request's message when the plan summary could not be read: no counts (unknown), why, and
    where the request shows the plan itself."""
    bucket = clean(limits.get("bucket") or "?", 100)
    why = clean(unread)
    headline = "a deletion plan waits for approval (its summary could not be read for this message)"
    shown = _limits_shown(limits)
    rows = [("DAG", clean(dag_id)), ("Run", clean(run_id)), ("Bucket", bucket), ("Headline", headline),
            ("Plan summary", f"could not be read: {why}; the request in Required Actions shows the plan"),
            ("Guard limits", ", ".join(f"{k}={v}" for k, v in shown.items()) or "none")]
    return _render(
        APPROVAL, f"[s3ops] approval needed: {dag_id}: {headline}", f"Approval needed: {headline}", rows, [],
        "Approve or reject in Required Actions", link,
        {"dag_id": dag_id, "run_id": run_id, "bucket": bucket, "headline": headline, "delete_count": None,
         "delete_bytes": None, "limits": shown, "summary_unread": why},
    )


def failure_message(*, dag_id: str, run_id: str, task_id: str, error: Any, link: str,
                    map_index: int = -1, try_number: int | None = None) -> Message:
    """A failed task of an s3ops run: DAG, run, task and the error's first line."""
    line = first_line(error)
    task = f"{task_id}[{map_index}]" if map_index is not None and map_index >= 0 else task_id
    rows = [("DAG", clean(dag_id)), ("Run", clean(run_id)), ("Task", clean(task)), ("Error", line)]
    if try_number:
        rows.append(("Try", str(try_number)))
    return _render(
        FAILURE, f"[s3ops] failed: {dag_id}.{task}: {line}", f"{dag_id} failed in task {task}", rows, [],
        "Open the run", link, {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index,
                                "error": line},
    )


def settings_variable(dag_id: str) -> str:
    """The deployment-settings Variable of a DAG: ``s3_upload`` → ``s3ops_upload``."""
    return "s3ops_" + dag_id.removeprefix("s3ops_").removeprefix("s3_")


#: a report mark dated up to this far ahead of this worker's clock counts as sent now (another worker's clock
#: a little ahead); one dated further ahead (a clock far off, a hand-written mark) mutes nothing
CLOCK_SKEW_S = 60.0


def should_send(message: Message, last_sent: float | None, now: float, repeat_after_s: float) -> bool:
    """Approval requests always go out; a failure of the same kind as one sent less than ``repeat_after_s``
    ago does not (see :func:`dedupe_key`)."""
    if message.event != FAILURE or last_sent is None:
        return True
    return not (-CLOCK_SKEW_S <= now - last_sent < repeat_after_s)


#: a date or time (a run id holds one)
_WHEN = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
#: a count: a number standing alone before a lower-case word ("12 file(s)", "3 of 5 chunks"), not part of a
#: name ("web-1", "v2"), a status in brackets or before one ("(403)", "500 (InternalError)", "2006 (HY000)")
#: or a number with a unit glued on
_COUNT = re.compile(r"(?<![\w.\-/:])\d[\d,]*(?= [a-z])")
#: the word before a number that makes it a status or a code, not a count: "error 404 not found", "HTTP/1.1 503
#: slow down", "status 500 internal error", "exit 2 ...", "errno 28 no space left" ("Error: 3 files" is a count)
_STATUS_WORD = re.compile(r"(?:https?(?:/[\d.]+)?|errno|error|err|status|code|exit|signal|sqlstate)[=#]?", re.I)
#: an HTTP reason phrase after a number from 100 to 599 makes it a status too: "got 403 forbidden"
_REASON = re.compile(r" (?:not found|forbidden|unauthori[sz]ed|bad request|bad gateway|conflict|gone|internal|"
                     r"service unavailable|gateway time-?out|too many requests|precondition failed|slow ?down|"
                     r"not implemented|method not allowed|request time-?out|moved|redirect)\b", re.I)


def _is_status(line: str, match: re.Match[str]) -> bool:
    """Is the number ``match`` found in ``line`` a status or a code (kept in the duplicate key), not a count?"""
    before = line[:match.start()].rstrip().rsplit(None, 1)
    if before and _STATUS_WORD.fullmatch(before[-1]):
        return True
    digits = match.group().replace(",", "")
    return len(digits) == 3 and 100 <= int(digits) <= 599 and _REASON.match(line, match.end()) is not None


def failure_kind(error_line: str) -> str:
    """The error line with its counts, dates and times replaced by ``#``: what stays the same while one
    outage lasts. The upload's "12 file(s) failed" becomes "13 file(s) failed" a minute later, and a run id
    or a time in a message changes with every run; neither makes it a different failure. Other numbers are
    kept: bucket ``web-1`` and ``web-2``, a 403 and a 500 are different failures, and so are "error 404 not
    found" and "error 500 internal error" (a status written like a count: after a status word such as
    ``error``, ``HTTP``, ``status``, ``code``, or before an HTTP reason phrase)."""
    line = _WHEN.sub("#", error_line)
    return _COUNT.sub(lambda m: m.group() if _is_status(line, m) else "#", line)


def dedupe_key(message: Message) -> str:
    """Failures of the same kind (same DAG, task and :func:`failure_kind` of the first error line) share a
    key: a minutely DAG failing the same way is reported once per window, not every minute. The message
    itself keeps the numbers."""
    d = message.data
    basis = "\0".join([*(str(d.get(k)) for k in ("event", "dag_id", "task_id")), failure_kind(str(d.get("error")))])
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:32]
