"""What every s3ops DAG shares: ownership, retries with exponential backoff, params and settings, and
the notifications (a failure callback in the default args; the approval request's HITL notifier).

Imported by the DAG files at parse time, so it stays tiny: no I/O, nothing heavy at import. Settings follow
:mod:`include.core.settings` (params > the DAG's Variable ``s3ops_<feature>`` > built-in defaults):
:func:`params_of` builds the trigger form from a DAG's settings; :func:`resolve_run_settings` (the first
task of a run) reads the Variable, merges, validates and writes ``settings.json`` to the run's artifact
folder; :func:`saved_run_settings` gives every later task exactly those values. Where the notifications
go is read when one is sent (the ``notifications`` setting of the run, else of the DAG's Variable, see
:mod:`include.core.notify`), never at parse time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from airflow.sdk import BaseNotifier, Param
from airflow.sdk.exceptions import AirflowFailException

from include.core.settings import SETTINGS_FILE, Resolved, Settings, SettingsError, loads_variable

log = logging.getLogger(__name__)

# A failure identical to one reported less than this long ago (same DAG, task, first error line) is logged
# but not sent again: a minutely DAG failing the same way mails once every 6 hours, not 360 times.
FAILURE_REPEAT_AFTER = timedelta(hours=6)
#: how long a webhook target may take to answer
WEBHOOK_TIMEOUT_SECONDS = 30

T = TypeVar("T")


def _best_effort(what: str, action: Callable[[], T], fallback: T) -> T:
    """``action()``, or ``fallback`` when it fails in any way, logged in one line naming ``what``.

    For the artifact reads and writes of a notification: s3fs lets botocore's connection and credential errors
    (``EndpointConnectionError``, ``NoCredentialsError``) through untranslated, and an outage of the store must
    not keep the failure it causes from being reported."""
    try:
        return action()
    except Exception as exc:  # noqa: BLE001 - see above: any error of the store, whatever its class
        log.warning("could not %s: %s: %s", what, type(exc).__name__, str(exc).strip().split("\n")[0][:300])
        return fallback


def deployment_setting(dag_id: str, key: str, default: Any = None) -> Any:
    """One key of the DAG's deployment-settings Variable ``s3ops_<dag>`` (a JSON object); ``default``
    when the Variable or the key is unset. A Variable that is not a JSON object raises ``ValueError``
    naming it."""
    from airflow.sdk import Variable

    from include.core.notify import settings_variable

    name = settings_variable(dag_id)
    raw = Variable.get(name, default=None)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    value = loads_variable(raw, name) if isinstance(raw, str) else raw  # a SettingsError is a ValueError
    if not isinstance(value, dict):
        raise ValueError(f"the Airflow Variable {name!r} must be a JSON object, got {type(value).__name__}")
    found = value.get(key)
    return default if found is None else found


def run_values(dag_id: str, run_id: str) -> dict[str, Any]:
    """The settings this run resolved (``{"values": {...}}`` in its artifact folder), or ``{}``."""
    from include.core import artifacts

    def read() -> Any:
        path = artifacts.run_dir(dag_id, run_id) / SETTINGS_FILE
        return artifacts.read_json(path).get("values") if artifacts.exists(path) else None

    values = _best_effort(f"read the settings of run {run_id!r} ({SETTINGS_FILE})", read, None)
    return values if isinstance(values, dict) else {}


def notification_targets(dag_id: str, run_id: str | None = None) -> list[Any]:
    """The parsed ``notifications`` of this run's resolved settings, else of the DAG's deployment-settings
    Variable ([] when unset)."""
    from include.core.notify import SETTING, parse_targets, settings_variable

    resolved = run_values(dag_id, run_id).get(SETTING) if run_id else None
    if resolved is not None:
        return parse_targets(resolved, source=f"the run's setting {SETTING!r} ({SETTINGS_FILE})")
    return parse_targets(deployment_setting(dag_id, SETTING),
                         source=f"key {SETTING!r} of the Airflow Variable {settings_variable(dag_id)!r}")


#: ``<root>/_targets/<dag_id>.json``: the notification targets the DAG's last run resolved. When its Variable
#: breaks (invalid JSON, a bad target), that run fails in its first task and the failure still goes to them.
TARGETS_DIR = "_targets"


def _targets_file(dag_id: str) -> Any:
    from include.core import artifacts

    return artifacts.artifact_root() / TARGETS_DIR / f"{dag_id}.json"


def _remember_targets(dag_id: str, resolved: Resolved) -> None:
    """Keep the targets this run resolved, for :func:`remembered_targets` (written only when they change)."""
    from include.core import artifacts
    from include.core.notify import SETTING

    if SETTING not in resolved:
        return
    path = _targets_file(dag_id)
    value = resolved[SETTING]
    try:
        if not artifacts.exists(path) or artifacts.read_json(path).get(SETTING) != value:
            artifacts.write_json(path, {SETTING: value})
    except (OSError, ValueError) as exc:
        log.warning("could not keep the notification targets in %s: %s", path, exc)


def remembered_targets(dag_id: str) -> list[Any]:
    """The targets the DAG's last run resolved ([] when none were kept, or they no longer parse)."""
    from include.core import artifacts
    from include.core.notify import SETTING, parse_targets

    def read() -> list[Any]:
        path = _targets_file(dag_id)
        return parse_targets(artifacts.read_json(path).get(SETTING), source=str(path)) if artifacts.exists(path) else []

    return _best_effort(f"read the notification targets the last run of {dag_id} resolved", read, [])


def _base_url() -> str | None:
    try:
        from airflow.configuration import conf

        return conf.get("api", "base_url", fallback=None) or None
    except Exception:  # noqa: BLE001 - no configuration: links stay relative
        return None


def provider_notifier(target: Any, message: Any) -> BaseNotifier:
    """The provider's notifier for one target, carrying an already rendered message.

    Template rendering is switched off on the instance: the message quotes S3 keys and error texts, and
    ``{{ … }}`` in a key must be shown, not evaluated as Jinja.
    """
    notifier: BaseNotifier
    if target.kind == "email":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifier = SmtpNotifier(to=list(target.to), from_email=target.sender, subject=message.subject,
                                html_content=message.html, smtp_conn_id=target.conn_id)
    elif target.kind == "slack":
        from airflow.providers.slack.notifications.slack import SlackNotifier

        notifier = SlackNotifier(slack_conn_id=target.conn_id, channel=target.channel, text=message.slack)
    elif target.kind == "slack_webhook":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        notifier = SlackWebhookNotifier(slack_webhook_conn_id=target.conn_id, text=message.slack)
    elif target.kind == "webhook":
        from airflow.providers.http.notifications.http import HttpNotifier

        # a bounded wait: an endpoint that never answers must not hold the task (and the targets after it)
        notifier = HttpNotifier(http_conn_id=target.conn_id, endpoint=target.endpoint, json=message.data,
                                extra_options={"timeout": WEBHOOK_TIMEOUT_SECONDS})
    else:
        raise ValueError(f"unknown notification target type {target.kind!r}")
    notifier.template_fields = ()
    return notifier


def send(message: Any, targets: list[Any], context: Any) -> int:
    """Send ``message`` to every target that wants its event; returns how many were sent. A target
    that fails is logged and the others still get it (a notification never fails the task)."""
    sent = 0
    for target in targets:
        if not target.wants(message.event):
            continue
        try:
            provider_notifier(target, message)(context)
            sent += 1
            log.info("notified %s target %s (%s): %s", target.kind, target.conn_id,
                     ", ".join(target.to) or target.channel or target.endpoint or "-", message.subject)
        except Exception:  # one broken channel must not hide the message from the others
            log.exception("could not send the %s notification to %s target %s", message.event, target.kind,
                          target.conn_id)
    return sent


def _marks_folder() -> Any:
    from include.core import artifacts
    from include.core.housekeeping import NOTIFICATIONS_DIR

    return artifacts.artifact_root() / NOTIFICATIONS_DIR


def _report_mark(message: Any, generation: int) -> Any:
    """``<root>/_notifications/<dedupe key>.<generation>.json``: one report of a failure (0, 1, 2, … in turn)."""
    from include.core.notify import dedupe_key

    return _marks_folder() / f"{dedupe_key(message)}.{generation}.json"


def _generations(message: Any) -> set[int]:
    """The generations of the report marks of this failure there are now (empty: never reported, or forgotten
    by housekeeping). An error of the store itself is raised."""
    import re

    from include.core import artifacts
    from include.core.notify import dedupe_key

    name = re.compile(re.escape(dedupe_key(message)) + r"\.(\d{1,18})\.json")
    return {int(m.group(1)) for n in artifacts.names_in(_marks_folder()) if (m := name.fullmatch(n))}


def _mark_bytes(path: Any) -> bytes | None:
    """The report mark at ``path`` as stored, None when there is none. An error of the store itself is raised."""
    from include.core import artifacts

    try:
        return artifacts.read_bytes(path)
    except FileNotFoundError:
        return None


def _mark(path: Any) -> dict[str, Any] | None:
    """The report mark at ``path``, or None when there is none or it does not read as one (edited by hand).
    An error of the store itself is raised."""
    import json

    data = _mark_bytes(path)
    try:
        mark = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return mark if isinstance(mark, dict) else None


def _sent_at(data: bytes | None) -> float | None:
    """When the failure marked by ``data`` was claimed; None when there is no mark or it does not read as one."""
    import json

    try:
        return float(json.loads(data or b"")["sent_at"])
    except (KeyError, ValueError, TypeError):
        return None


#: how often a claim starts again when housekeeping forgot the chain under it; then it sends unclaimed
CLAIM_ATTEMPTS = 3


def _claim_report(message: Any) -> tuple[bool, Any]:
    """Whether to send this failure, and the claim to release if it then reaches no target (None: none taken).

    The reports of one failure (:func:`include.core.notify.dedupe_key`) are a chain of marks, generation 0, 1,
    2, …. A failure is sent when the newest mark is older than FAILURE_REPEAT_AFTER (or there is none), by the
    task that creates the next generation: an atomic create (:func:`include.core.artifacts.create_exclusive`),
    so of the tasks that read the same newest mark, one creates the next and sends, the others lose and stand
    back; one that read an older mark loses too (the next generation was created since: a report under way).
    No clock slots: tasks failing together on either side of any boundary send one message, and the window
    runs from the last report. When the store cannot tell, the failure is sent: a repeated message beats a
    lost one.

    Housekeeping forgets marks older than two days, the newest too, at any moment: a task that read mark n
    before it went and one that found no mark after would create n + 1 and 0, different names, and both send.
    So a claim of n + 1 holds only if mark n is still the very mark it read (same bytes: a new chain's 0 is not
    the 0 read); otherwise it is withdrawn and taken again, contending on the same name as every task that
    found the chain gone. A claim of 0 needs no such check: whoever found no mark listed after mark n went,
    so after any n + 1 whose check found n still there."""
    import json
    import time
    import uuid

    from include.core import artifacts
    from include.core.notify import should_send

    window = FAILURE_REPEAT_AFTER.total_seconds()

    def claim() -> tuple[bool, Any]:
        for _ in range(CLAIM_ATTEMPTS):
            last = max(_generations(message), default=None)
            read = None if last is None else _mark_bytes(_report_mark(message, last))
            now = time.time()  # after the read: a mark written meanwhile is not "from the future"
            if not should_send(message, _sent_at(read), now, window):
                return False, None
            path = _report_mark(message, 0 if last is None else last + 1)
            token = uuid.uuid4().hex  # a retried conditional PUT whose first try landed answers 412: ours all the same
            mark = json.dumps({"sent_at": now, "subject": message.subject, "token": token}).encode()
            if not (artifacts.create_exclusive(path, mark) or _holds_token(path, token)):
                return False, None
            if last is None or (read is not None and _mark_bytes(_report_mark(message, last)) == read):
                return True, path
            log.info("the report marks of this failure were forgotten while it was claimed: claiming it again")
            artifacts.remove(path)
        return True, None

    return _best_effort("tell whether this failure was reported lately (it is sent)", claim, (True, None))


def _holds_token(path: Any, token: str) -> bool:
    """Is the mark at ``path`` this claim's own? One being written by another task (created, not yet written:
    empty) or unreadable is not: that task sends."""
    try:
        mark = _mark(path)
    except OSError:
        return False
    return mark is not None and mark.get("token") == token


def _release_claim(path: Any) -> None:
    """Drop the claim of a failure that reached no target: the next one is sent, not held back a window."""
    from include.core import artifacts

    _best_effort(f"release {path} (the failure may be held back until it expires)", lambda: artifacts.remove(path),
                 None)


def _plan_summary(dag_id: str, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """``plan.json`` of the run for the approval request's message, and None, or None and why it could not
    be read. Best effort: the message only announces the request, which shows the plan itself, so any error
    of the store (s3fs lets botocore's ``EndpointConnectionError`` through untranslated) is logged and named
    in the message, never raised: it failed the approve task after its request was written."""
    from include.core import artifacts

    def read() -> tuple[dict[str, Any] | None, str | None]:
        path = artifacts.run_dir(dag_id, run_id) / artifacts.PLAN_FILE
        if not artifacts.exists(path):
            return None, f"{artifacts.PLAN_FILE} is missing"
        plan = artifacts.read_json(path)
        if not isinstance(plan, dict):
            return None, f"{artifacts.PLAN_FILE} is not a JSON object"
        return plan, None

    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - any error of the store, whatever its class (see above)
        why = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        log.warning("could not read the plan summary for the approval request's message: %s", why)
        return None, why


def _approval_message(dag_id: str, run_id: str, link: str) -> tuple[Any, Any]:
    """The approval request's message and the plan id it announces (None when unknown), from ``plan.json``
    (which the approval pins, not the plan task's XCom: anyone with task-instance edit rights can write
    that one), under the settings the plan was made with. A summary that cannot be read or shown gives the
    message saying so: the request goes out all the same."""
    from include.core import notify

    summary, unread = _plan_summary(dag_id, run_id)
    pinned = (summary or {}).get("settings")
    values = pinned if isinstance(pinned, dict) else run_values(dag_id, run_id)
    limits = {k: values.get(k) for k in ("bucket", "max_delete_count", "max_delete_fraction")}
    plan_id = (summary or {}).get("plan_id")
    try:
        return notify.approval_message(dag_id=dag_id, run_id=run_id, summary=summary, limits=limits, link=link,
                                       unread=unread), plan_id
    except Exception as exc:  # noqa: BLE001 - a plan.json nobody expected must not stop the request's message
        why = f"it could not be shown: {type(exc).__name__}: {str(exc).strip()[:200]}"
        log.warning("the plan summary of the approval request's message %s", why)
        return notify.approval_message(dag_id=dag_id, run_id=run_id, summary=None, limits=limits, link=link,
                                       unread=why), plan_id


def _record_approval_notice(dag_id: str, run_id: str, plan_id: Any, sent: int, wanted: int) -> None:
    """Record how many of the ``wanted`` targets the approval request of ``plan_id`` reached: a request that
    reached nobody (SMTP down, a webhook refusing) and then expires fails the run's audit, instead of passing
    for a decision nobody made (:func:`include.deletion.approval.reached_nobody`). Best effort."""
    import time

    from include.core import artifacts

    if sent == 0 and wanted:
        log.error("the approval request reached none of its %d notification target(s); it waits in Required "
                  "Actions all the same, and if it expires unanswered the run fails saying so", wanted)
    _best_effort("record whom the approval request reached", lambda: artifacts.write_json(
        artifacts.run_dir(dag_id, run_id) / artifacts.NOTIFIED_FILE,
        {"plan_id": plan_id, "sent": sent, "wanted": wanted, "at": time.time()}), None)


class AlreadyReported(AirflowFailException):
    """Fails a task, and so its run, for a failure that another task of the run has already reported (the
    audit of a run whose delete failed): :class:`DeploymentNotifier` sends no second notification."""


class DeploymentNotifier(BaseNotifier):
    """Airflow notifier that sends an s3ops message to the DAG's configured targets.

    ``DeploymentNotifier("failure")`` is every task's ``on_failure_callback``: DAG, run, task and the
    error's first line. ``DeploymentNotifier("approval")`` is the approval task's HITL notifier: the plan's
    headline, counts, bytes, guard limits and the Required Actions link. Targets are read when it fires.
    """

    template_fields = ()

    def __init__(self, event: str) -> None:
        super().__init__()
        from include.core.notify import EVENTS

        if event not in EVENTS:
            raise ValueError(f"event must be one of {EVENTS}, got {event!r}")
        self.event = event

    def notify(self, context: Any) -> None:
        from include.core import notify

        if isinstance(context.get("exception"), AlreadyReported):
            log.info("no failure notification: %s", context["exception"])
            return
        ti = context["ti"]
        dag_id, run_id = ti.dag_id, ti.run_id
        try:
            targets = notification_targets(dag_id, run_id)
        except ValueError as exc:
            if self.event == notify.APPROVAL:
                # the approval task fails naming the setting (no retry reads it differently): nothing is
                # deleted unannounced
                raise AirflowFailException(str(exc)) from exc
            targets = remembered_targets(dag_id)
            if not targets:
                log.error("no failure notification sent: %s", exc)
                return
            log.error("%s: the failure goes to the targets the DAG's last run resolved", exc)
        if not targets:
            log.info("no notification targets configured (key 'notifications' of Variable %r)",
                     notify.settings_variable(dag_id))
            return
        claim = None  # the failure's report mark, once this task claimed it
        map_index = getattr(ti, "map_index", -1)
        map_index = -1 if map_index is None else map_index
        plan_id = None
        if self.event == notify.APPROVAL:
            message, plan_id = _approval_message(
                dag_id, run_id, notify.required_actions_link(_base_url(), dag_id, run_id, ti.task_id, map_index))
        else:
            error = context.get("exception") or "the task failed without an exception (killed, timed out or " \
                                                 "marked failed)"
            message = notify.failure_message(
                dag_id=dag_id, run_id=run_id, task_id=ti.task_id, error=error, map_index=map_index,
                try_number=getattr(ti, "try_number", None),
                link=notify.run_link(_base_url(), dag_id, run_id, ti.task_id))
            sending, claim = _claim_report(message)
            if not sending:
                log.info("not sent again (the same failure was reported, or is being reported by another task, "
                         "less than %s ago): %s", FAILURE_REPEAT_AFTER, message.subject)
                return
        sent = send(message, targets, context)
        if not sent and claim is not None:
            _release_claim(claim)
        if self.event == notify.APPROVAL:
            # the plan the request asks about (PlanApprovalOperator.asked_plan_id), not only the summary's: an
            # unreadable summary must not keep a request that reached nobody from failing its run at expiry
            plan_id = getattr(context.get("task"), "asked_plan_id", None) or plan_id
            _record_approval_notice(dag_id, run_id, plan_id, sent,
                                    sum(1 for t in targets if t.wants(message.event)))


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "s3ops",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": [DeploymentNotifier("failure")],
}


# No catchup: a new deployment runs from its next schedule on, whatever this date.
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def dag_args(*, tags: list[str], doc_md: str, params: dict[str, Param], max_active_runs: int = 1) -> dict[str, Any]:
    """The ``@dag`` arguments every s3ops DAG shares (start date, no catchup, the default args, the
    ``s3ops`` tag); each DAG file names only what is its own, its schedule first."""
    return {"start_date": START_DATE, "catchup": False, "max_active_runs": max_active_runs,
            "tags": ["s3ops", *tags], "doc_md": doc_md, "default_args": DEFAULT_ARGS, "params": params}


def params_of(settings: Settings) -> dict[str, Param]:
    """The trigger form: one Param per form setting, default null (= the deployment setting)."""
    return {name: Param(**spec) for name, spec in settings.param_specs().items()}


def _run_dir(context: Any) -> Any:
    from include.core import artifacts

    ti = context["ti"]
    return artifacts.run_dir(ti.dag_id, ti.run_id)


def resolve_run_settings(settings: Settings, context: Any) -> Resolved:
    """Merge this run's params with the Variable and the defaults, validate, record ``settings.json``.

    A bad or missing setting fails the task without retries (no retry fixes it), naming the setting and
    where its value came from."""
    from airflow.sdk import Variable

    from include.core import artifacts

    try:
        resolved = settings.resolve(context["params"], Variable.get(settings.variable, default=None))
    except SettingsError as exc:
        raise AirflowFailException(f"{settings.dag_id}: {exc}") from None
    artifacts.write_json(_run_dir(context) / SETTINGS_FILE, resolved.to_json())
    _remember_targets(settings.dag_id, resolved)
    log.info("settings: %s", resolved.describe())
    return resolved


def saved_run_settings(context: Any) -> Resolved:
    """The settings the run's first task resolved (``settings.json`` in the run's artifact folder)."""
    from include.core import artifacts

    path = _run_dir(context) / SETTINGS_FILE
    if not artifacts.exists(path):
        raise AirflowFailException(f"{artifacts.uri(path)} is missing: clear the run's first task so it resolves "
                                   "the settings again")
    return Resolved.from_json(artifacts.read_json(path))
