"""The approval gate's evidence, its verdict and the text the approver reads. No Airflow imports.

Evidence of approval is the approval request's own record (Airflow's Human-in-the-loop detail of the
``approve`` task instance: who answered, what, when), never an XCom or a task state, which any user with
task-instance edit rights can write through the REST API.

Why files in the artifact store: Airflow's execution API lets a task read only its *own* HITL detail (the
route ``/execution/hitlDetails/{ti_id}`` requires the JWT scope ``ti:self``, see
``airflow/api_fastapi/execution_api/routes/hitl.py``), so ``delete`` cannot read ``approve``'s record.
``approve`` therefore takes its own record when it resumes (Airflow core builds the resume event from the
HITL row: ``HITLDetail.as_resume_event_payload``) and writes what it found to ``approval.json`` in the run's
artifact folder, which no Airflow API user can write. ``delete``,
``purge_job_rows`` and ``audit`` read that file and re-derive every other precondition from the plan
artifact. A task instance marked successful by hand never resumes, so it writes no ``approval.json``.

Files in ``<root>/<dag_id>/<run_id>/``:

- ``guard.json``: the guard's verdict on the plan (``passed``, and its ``refusals`` when it refused) and the
  SHA-256 of ``plan.json`` it checked;
- ``approval_request.json``: what the approver was asked (plan id and digests, target, who may answer,
  who triggered the run, when it expires);
- ``approval.json``: the verdict read from the HITL record (``approved``, ``rejected``, ``expired``,
  ``superseded`` or ``refused``), who answered, when, and the digest of the plan they saw;
- ``superseded.json``: written by a newer run of the same DAG and target while this run's request waited
  (or by this run, giving way to a request asked in the same instant: :func:`supersede_waiting`);
  it names that request (``request_asked_at``) and closes no later request of the run (:func:`closes`).

The approval text escapes everything that comes from S3, MySQL or a param (keys, deployment names,
bucket, headline): it is shown inside fenced code blocks, one value per line, with control, format,
separator and combining characters written as ``\\uXXXX`` escapes, so no key can add Markdown (a fake
"reviewed" line, an image, a link) or hide a character from the approver. No library does this for the
Markdown the Airflow UI renders, hence the few lines here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from include.core import artifacts
from include.core.text import shown
from include.core.times import parse_time
from include.core.units import format_size

GUARD_FILE = "guard.json"
REQUEST_FILE = "approval_request.json"
APPROVAL_FILE = "approval.json"
SUPERSEDED_FILE = "superseded.json"
#: how many of the notification targets that want approval requests the request reached (the notifier's record)
NOTIFIED_FILE = artifacts.NOTIFIED_FILE

APPROVE, REJECT = "Approve", "Reject"
#: verdicts an answered (or closed) request can have; only ``approved`` lets anything be deleted
APPROVED, REJECTED, EXPIRED, SUPERSEDED, REFUSED = "approved", "rejected", "expired", "superseded", "refused"
#: verdicts after which the run deletes nothing and still succeeds (a decision, not an error)
QUIET_VERDICTS = (REJECTED, EXPIRED, SUPERSEDED)


class DeleteRefused(RuntimeError):
    """A precondition of a delete is missing. ``verdict`` names the approval verdict when that was the
    reason (``rejected``, ``expired``, ``superseded``, ``dry_run``, ``no_answer``, ``refused``)."""

    def __init__(self, message: str, verdict: str = "") -> None:
        super().__init__(message)
        self.verdict = verdict


# Digests ------------------------------------------------------------------------------------------
def bytes_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: what :func:`file_digest` gives for a file holding it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Any) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def plan_digests(run_dir: Any, chunks: Iterable[str]) -> dict[str, Any]:
    """The digests that pin a plan: ``plan.json``'s, each chunk's, and one over all of them."""
    from include.deletion.plan import PLAN_DIR, PLAN_FILE

    plan_file = file_digest(run_dir / PLAN_FILE)
    per_chunk = {chunk: file_digest(run_dir / PLAN_DIR / f"{chunk}.jsonl") for chunk in chunks}
    whole = hashlib.sha256("\n".join([plan_file, *(f"{c} {d}" for c, d in per_chunk.items())]).encode())
    return {"plan_digest": "sha256:" + whole.hexdigest(), "plan_file_digest": plan_file, "chunk_digests": per_chunk}


# Who may answer -----------------------------------------------------------------------------------
def clean_approvers(approvers: Any) -> list[str]:
    """The ``approvers`` setting as a list of user ids (empty: any user allowed to answer)."""
    if approvers in (None, ""):
        return []
    if isinstance(approvers, str):
        approvers = [approvers]
    if not isinstance(approvers, list | tuple) or not all(isinstance(a, str) and a.strip() for a in approvers):
        raise ValueError(f"approvers must be a list of Airflow user ids, got {approvers!r}")
    return list(dict.fromkeys(a.strip() for a in approvers))


def assigned_users(approvers: list[str], *, separate_approver: bool, triggered_by: str | None) -> list[dict[str, str]]:
    """The HITL ``assigned_users`` (Airflow refuses an answer from anyone else with 403).

    With ``separate_approver`` the user who triggered the run is left out. Empty means "anyone allowed to
    answer"; a self-approval is then refused when the answer comes back (:func:`judge`).
    """
    users = [a for a in approvers if not (separate_approver and triggered_by and a == triggered_by)]
    if approvers and not users:
        raise ValueError(
            f"nobody may approve this run: approvers is {approvers} and {triggered_by!r} triggered it while "
            "separate_approver is on; add another approver or let a schedule (or another user) trigger the run")
    return [{"id": u, "name": u} for u in users]


def _user(record: Mapping[str, Any]) -> dict[str, str] | None:
    user = record.get("responded_by_user") or record.get("responded_by")
    if not user:
        return None
    if not isinstance(user, Mapping):
        user = {"id": getattr(user, "id", ""), "name": getattr(user, "name", "")}
    return {"id": str(user.get("id") or ""), "name": str(user.get("name") or "")}


#: the request's one form field: the digest of the plan it shows, which an answer must name back
PLAN_DIGEST_FIELD = "plan_digest"


def answered_another_plan(params_input: Any, request: Mapping[str, Any]) -> str | None:
    """Why an Approve does not hold for the request waiting now, or None when it names the plan that request
    shows. Airflow routes an answer to whatever request of the task waits when it arrives, not to the one
    the approver read: a page loaded before the run planned again would otherwise approve the new plan. The
    form sends back the digest it showed; a REST client must send the one it read (``params_input``)."""
    given = params_input.get(PLAN_DIGEST_FIELD) if isinstance(params_input, Mapping) else None
    expected = request.get("plan_digest")
    if expected and given == expected:
        return None
    if not given:
        return (f"the answer did not name the plan it approves ({PLAN_DIGEST_FIELD} is missing from params_input): "
                f"send back the {PLAN_DIGEST_FIELD} the request shows; nothing deleted")
    return (f"the answer names plan {shown(str(given))[:80]}, not the plan this request shows ({expected}): it was "
            "given for an earlier request of the run (a page loaded before the run planned again); nothing deleted")


def judge(
    record: Mapping[str, Any], *, approvers: list[str], separate_approver: bool, triggered_by: str | None,
) -> tuple[str, str]:
    """The verdict of an answered HITL record and why: ``(verdict, reason)``.

    ``record`` has ``response_received``, ``chosen_options``, ``responded_by_user`` ({id, name}, None when
    Airflow applied the default at the timeout) and ``responded_at``.
    """
    chosen = list(record.get("chosen_options") or [])
    if not record.get("response_received") or not chosen:
        return "no_answer", "nobody answered the approval request"
    user = _user(record)
    if user is None:
        return EXPIRED, f"nobody answered within the approval timeout (Airflow applied {chosen})"
    who = user["name"] or user["id"]
    if chosen != [APPROVE]:
        return REJECTED, f"rejected by {who}"
    if approvers and not {user["id"], user["name"]} & set(approvers):
        return REFUSED, f"approval by {who!r} refused: not in approvers {approvers}"
    if separate_approver and triggered_by and triggered_by in (user["id"], user["name"]):
        return REFUSED, (f"self-approval refused: {who!r} triggered this run and separate_approver is on; another "
                         "user must approve (clear the 'approve' task to ask again)")
    return APPROVED, f"approved by {who}"


# Files --------------------------------------------------------------------------------------------
def read_optional(path: Any) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file; ValueError when it holds anything
    else (a file edited by hand)."""
    if not artifacts.exists(path):
        return None
    data = artifacts.read_json(path)
    if not isinstance(data, Mapping):
        raise ValueError(f"{artifacts.uri(path)} holds {type(data).__name__}, not a JSON object")
    return dict(data)


def supersede_waiting(dag_dir: Any, *, run_id: str, request: Mapping[str, Any], now: datetime) -> tuple[list[str], str | None]:
    """What a run does right after writing its ``request``: return the runs whose waiting requests of the
    target it closed (asked earlier), and the run that closes this one (:func:`asked_together_later`; None:
    this request waits). The earlier ones are closed in favour of whichever request waits now."""
    target, asked_at = request.get("target") or {}, str(request.get("asked_at", ""))
    winner = asked_together_later(dag_dir, run_id=run_id, target=target, asked_at=asked_at, now=now)
    superseded = supersede_older(dag_dir, run_id=run_id, target=target, asked_at=asked_at, by=winner)
    if winner is not None:
        mark_superseded(dag_dir / run_id, by=winner, at=asked_at, request=request)
    return superseded, winner


def supersede_older(dag_dir: Any, *, run_id: str, target: Mapping[str, Any], asked_at: str,
                    by: str | None = None) -> list[str]:
    """Mark every other run of this DAG whose request for the same ``target`` still waits (no
    ``approval.json``) and was asked earlier as superseded by ``by`` (the run whose request waits now:
    ``run_id``, unless :func:`asked_together_later` found that one); return their run ids. A marker left
    from an earlier request of a run (its ``approve`` asked again since) does not count as closing the
    request that waits now: it is replaced. Requests are ordered by ``asked_at``, then run id."""
    mine = (asked_at, run_id)
    done: list[str] = []
    for folder, request in _waiting_requests(dag_dir, run_id=run_id, target=target):
        if (str(request.get("asked_at", "")), folder.name) < mine:
            mark_superseded(folder, by=by or run_id, at=asked_at, request=request)
            done.append(folder.name)
    return sorted(done)


#: how far ahead of this worker's clock another worker's may be, for a request it dated
CLOCK_SKEW = timedelta(seconds=60)


def asked_together_later(dag_dir: Any, *, run_id: str, target: Mapping[str, Any], asked_at: str,
                         now: datetime) -> str | None:
    """The run whose waiting request for ``target`` was asked after this run's own yet is written already,
    so asked in the same instant: its request wins and this run's closes (None when there is none).

    Two runs asking at once each write their request before looking for others. The one that looks first
    may miss the other's file and the other sees only an older request, which it leaves alone: both waited.
    Whichever looks last sees the other; when that is the earlier one, it must give way. A real racer's
    request is dated before ``now`` (this worker's clock after writing its own), give or take
    :data:`CLOCK_SKEW`: one dated further ahead (a clock ahead, a stale or hand-written file) closes nothing,
    or a single file would silently close every request of the target until its date."""
    mine, latest = (asked_at, run_id), now + CLOCK_SKEW
    winner: tuple[str, str] | None = None
    for folder, request in _waiting_requests(dag_dir, run_id=run_id, target=target):
        theirs = (str(request.get("asked_at", "")), folder.name)
        if theirs > mine and _dated_by(theirs[0], latest):
            winner = max(winner or theirs, theirs)
    return winner[1] if winner else None


def mark_superseded(run_dir: Any, *, by: str, at: str, request: Mapping[str, Any]) -> None:
    """Write the run's ``superseded.json``: ``request`` (the one it names) is closed in favour of run ``by``."""
    artifacts.write_json(run_dir / SUPERSEDED_FILE, {"superseded_by": by, "at": at, "plan_id": request.get("plan_id"),
                                                     "request_asked_at": request.get("asked_at")})


def _dated_by(when: str, latest: datetime) -> bool:
    """Is ``when`` a time no later than ``latest`` (False for anything that is no time)?"""
    try:
        return parse_time(when) <= latest
    except (TypeError, ValueError):
        return False


def _waiting_requests(dag_dir: Any, *, run_id: str, target: Mapping[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``(run folder, request)`` of every other run of the DAG whose request for ``target`` still waits: no
    answer, no marker that closes it. A folder whose files cannot be read is left alone."""
    try:
        children = list(dag_dir.iterdir()) if artifacts.exists(dag_dir) else []
    except OSError:
        return
    for folder in children:
        if folder.name == run_id or not artifacts.exists(folder / REQUEST_FILE):
            continue
        if artifacts.exists(folder / APPROVAL_FILE):
            continue
        try:
            request = artifacts.read_json(folder / REQUEST_FILE)
            marker = read_optional(folder / SUPERSEDED_FILE)
        except (OSError, ValueError):
            continue
        if not isinstance(request, dict) or closes(marker, request) or request.get("target") != dict(target):
            continue
        yield folder, request


def closes(marker: Mapping[str, Any] | None, request: Mapping[str, Any] | None) -> bool:
    """Whether the supersession ``marker`` closes ``request`` (the run's ``approval_request.json``): only the
    request it was written for does. Once ``approve`` asks again (the task cleared, the run planned again),
    the marker of the earlier request closes nothing, or the new request would be closed the moment it was
    asked. When either says nothing of the request (a marker written before markers named it, no request
    file), the marker closes it: the safe side, since a closed request deletes nothing."""
    if marker is None:
        return False
    asked = marker.get("request_asked_at")
    return asked is None or request is None or asked == request.get("asked_at")


# Authorisation ------------------------------------------------------------------------------------
def authorize(
    *, plan: Mapping[str, Any] | None, params: Mapping[str, Any], chunk: str | None, plan_file_digest: str | None,
    chunk_digest: str | None, guard: Mapping[str, Any] | None, approval: Mapping[str, Any] | None,
    superseded: Mapping[str, Any] | None, max_map_length: int, request: Mapping[str, Any] | None = None,
) -> str:
    """Raise :class:`DeleteRefused` unless this chunk (or, with ``chunk=None``, this plan) may be deleted;
    return the verdict (``auto`` or ``approved``). Every input is read from the artifact store or the
    run's params, none from XCom."""
    from include.deletion.plan import guard_violations

    if plan is None:
        raise DeleteRefused("no plan.json for this run: nothing may be deleted without a written plan")
    changed = settings_changed(plan, params)
    if changed:
        raise DeleteRefused(f"the run's settings are not those its plan was made with ({changed}): nothing is "
                            "deleted; clear the run's first task and everything after it to plan again", REFUSED)
    if chunk is not None and chunk not in plan.get("chunks", []):
        raise DeleteRefused(f"chunk {chunk!r} is not part of the plan")
    if params.get("dry_run"):
        raise DeleteRefused("dry run: nothing is deleted", "dry_run")
    mode = params.get("approval")
    if mode not in ("required", "auto"):
        raise DeleteRefused(f"approval must be 'required' or 'auto', got {mode!r}")
    chunks = list(plan.get("chunks") or [])
    refusals = [f"the plan has {len(chunks)} chunks, more than Airflow's max_map_length={max_map_length}"] \
        if len(chunks) > max_map_length else []
    violations = guard_violations(dict(plan), max_delete_count=int(params["max_delete_count"]),
                                  max_delete_fraction=params.get("max_delete_fraction"), refusals=refusals)
    if violations:
        raise DeleteRefused("the plan does not pass the guards: " + "; ".join(violations))
    if unguarded := not_passed_by_guard(guard, plan, plan_file_digest):
        raise DeleteRefused(f"nothing is deleted: {unguarded}")
    superseded, approval = this_plans(plan, superseded, approval, auto=mode == "auto", request=request)
    if superseded:
        raise DeleteRefused(f"this plan was superseded by run {superseded.get('superseded_by')!r}: nothing of it "
                            "is deleted", SUPERSEDED)
    if mode == "auto" and approval is None:
        return "auto"
    if approval is None:
        raise DeleteRefused(
            "deletion needs approval (approval='required') and no approval is recorded: nobody answered the "
            "'approve' task's request for this plan (a task marked successful by hand or an XCom written through "
            "the API is not an approval); answer it in Browse → Required Actions", "no_answer")
    verdict = str(approval.get("verdict"))
    if verdict != APPROVED:
        raise DeleteRefused(f"the approval request was answered: {verdict} ({approval.get('reason')})", verdict)
    if approval.get("plan_id") != plan.get("plan_id") or approval.get("plan_file_digest") != plan_file_digest:
        raise DeleteRefused("the approval was given for another plan (plan.json changed after it was approved): "
                            "nothing is deleted; clear the run's plan task to plan and ask again", REFUSED)
    if chunk is not None and (approval.get("chunk_digests") or {}).get(chunk) != chunk_digest:
        raise DeleteRefused(f"plan chunk {chunk} changed after it was approved: nothing of it is deleted", REFUSED)
    return APPROVED


def this_plans(plan: Mapping[str, Any], superseded: Mapping[str, Any] | None, approval: Mapping[str, Any] | None,
               *, auto: bool, request: Mapping[str, Any] | None = None,
               ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """The supersession marker and approval record that are about ``plan`` (and, for the marker, about the
    run's current approval ``request``: :func:`closes`). With ``approval: auto`` nobody is asked, so
    ``approve`` never clears an earlier plan's answer: one recorded for another plan of the run (before the
    run was cleared and planned again) says nothing about this one. (With ``required``, ``approve`` clears
    it before asking, and a record for another plan is refused.)"""
    plan_id = plan.get("plan_id")
    if superseded is not None and (superseded.get("plan_id") not in (None, plan_id) or not closes(superseded, request)):
        superseded = None
    if auto and approval is not None and approval.get("plan_id") != plan_id:
        approval = None
    return superseded, approval


def settings_changed(plan: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    """Why the run's settings (``settings.json``, rewritten whenever the run's first task runs again) are
    not those ``plan.json`` records (:class:`include.deletion.plan.PlanWriter`), or None when they are.
    The guard and the approval pin plan.json, so its settings are the ones that were checked and approved:
    a Variable edited and the first task cleared afterwards (``approval: auto``, another bucket,
    connection or database) must not apply to a plan someone approved, rejected or never saw."""
    pinned = plan.get("settings")
    if not isinstance(pinned, Mapping):
        return "plan.json does not record them: a plan written before they were pinned"

    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    keys = sorted(k for k in set(pinned) | set(params) if canonical(pinned.get(k)) != canonical(params.get(k)))
    return f"changed since: {', '.join(keys)}" if keys else None


def verdict_of(params: Mapping[str, Any], approval: Mapping[str, Any] | None,
               superseded: Mapping[str, Any] | None, plan: Mapping[str, Any] | None = None) -> str:
    """The run's approval verdict for the audit (never raises)."""
    if params.get("dry_run"):
        return "dry_run"
    if plan is not None:
        superseded, approval = this_plans(plan, superseded, approval, auto=params.get("approval") == "auto")
    if approval is not None:
        return str(approval.get("verdict"))
    if superseded:
        return SUPERSEDED
    return "auto" if params.get("approval") == "auto" else "no_answer"


def not_passed_by_guard(guard: Mapping[str, Any] | None, plan: Mapping[str, Any],
                        plan_file_digest: str | None) -> str | None:
    """Why ``guard.json`` does not let ``plan`` (whose plan.json has ``plan_file_digest``) through, or None
    when the guard checked exactly it and passed it. A guard task marked successful by hand wrote nothing."""
    if not guard or guard.get("plan_id") != plan.get("plan_id") or guard.get("plan_file_digest") != plan_file_digest:
        return ("the guard did not check this plan (guard.json missing, or plan.json changed since); clear the "
                "run's guard, approve and delete tasks")
    if guard_refused(guard, plan):
        return "the guard refused this plan (guard.json); plan again within the limits"
    return None


def guard_refused(guard: Mapping[str, Any] | None, plan: Mapping[str, Any]) -> bool:
    """Did the guard record that it refused this plan (``guard.json``: ``passed`` false)? A guard.json
    without ``passed`` was written by a version that wrote it only when the guard passed."""
    return guard is not None and guard.get("plan_id") == plan.get("plan_id") and guard.get("passed") is False


def read_notified(run_dir: Any) -> dict[str, Any] | None:
    """The approval notifier's record (``approval_notified.json``), or None when there is none or it does not
    read as one (written by hand): the record only ever turns an expiry into a failure, never an approval."""
    try:
        return read_optional(run_dir / NOTIFIED_FILE)
    except (OSError, ValueError):
        return None


def reached_nobody(notified: Mapping[str, Any] | None, plan: Mapping[str, Any]) -> bool:
    """Did this plan's approval request reach none of the targets that want approval requests
    (``approval_notified.json``: every send failed)? Then an expiry is no one's decision: nobody knew."""
    return (notified is not None and notified.get("plan_id") == plan.get("plan_id")
            and notified.get("sent") == 0 and isinstance(notified.get("wanted"), int) and notified["wanted"] > 0)


def audit_outcome(verdict: str, *, has_chunks: bool, failed: bool, guard_failed: bool, refused: bool) -> str:
    """The audit's ``outcome``: from the approval ``verdict`` (:func:`verdict_of`), unless a task failed.
    A failed guard is ``guard_refused`` only when it refused the plan (``refused``: :func:`guard_refused`);
    failing for another reason (the artifact store unreachable) it is ``failed``, whatever the verdict."""
    if guard_failed:
        return "guard_refused" if refused else "failed"
    outcome = {"dry_run": "dry_run", "rejected": "rejected", "expired": "expired", "superseded": "superseded",
               "refused": "refused", "no_answer": "not_approved"}.get(verdict)
    if outcome is None:
        outcome = "deleted" if has_chunks else "nothing_to_delete"
    return "failed" if failed and outcome in ("deleted", "nothing_to_delete") else outcome


# The text the approver reads ----------------------------------------------------------------------
_SAFE_WORD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def fenced(values: Iterable[Any]) -> str:
    """A fenced code block holding one escaped value per line; the fence is longer than any run of
    backticks inside, so nothing inside can close it."""
    lines = [shown(v) for v in values]
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence + "text", *lines, fence])


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


#: shown elsewhere in the request (the bucket), or not about what is deleted (where the record is kept)
_NOT_LISTED = frozenset({"bucket", "artifact_retention_days", "audit_retention_days"})


def made_with_settings(summary: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """``name = value`` for every setting the plan was made with (its pinned ``settings``, else the run's),
    secrets left out: the approver sees what decided the plan (which table, which connection, which
    prefix), not only its counts. A run's conf may change those, so they must be visible before Approve."""
    from include.core.settings import COMMON, short_json

    secret = {s.name for s in COMMON if s.secret}
    pinned = summary.get("settings")
    values = pinned if isinstance(pinned, Mapping) else params
    return [f"{name} = {short_json(value, 4096)}" for name, value in sorted(values.items())
            if name not in _NOT_LISTED and name not in secret]


def set_by_the_run(summary: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The settings of :func:`made_with_settings` whose value came from the run's conf or trigger form, not from
    the deployment (its Variable or the built-in defaults): ``params.sources`` (:class:`Resolved`) says where
    each came from. Whoever triggered the run chose them; the approver must be able to tell them from the
    deployment's among a dozen values."""
    sources = getattr(params, "sources", None)
    if not isinstance(sources, Mapping):
        return []
    shown_names = {line.split(" = ", 1)[0] for line in made_with_settings(summary, params)}
    return sorted(name for name, source in sources.items()
                  if source == "param" and (name in shown_names or name == "bucket"))


def approval_body(summary: Mapping[str, Any], params: Mapping[str, Any], *, plan_digest: str = "",
                  timeout_at: str = "", superseded: Iterable[str] = (), triggered_by: str | None = None) -> str:
    """The Markdown the approver reads: what, how much, why, examples and where the full plan is.

    Only numbers we computed and fixed words are Markdown; every value from S3, MySQL or a param is in a
    fenced code block (:func:`fenced`)."""
    lines: list[str] = []
    if summary.get("headline"):
        lines += [fenced([summary["headline"]]), ""]
    lines += [
        f"Delete **{_count(summary.get('delete_count'))} objects** ({format_size(_count(summary.get('delete_bytes')))}); "
        f"{_count(summary.get('scanned_count'))} objects were scanned. Bucket:", "",
        fenced([params.get("bucket") or ""]),
        "", "| reason | objects | bytes |", "| --- | ---: | ---: |",
    ]
    for reason, slot in (summary.get("by_reason") or {}).items():
        label = reason if _SAFE_WORD.match(str(reason)) else "(unusual reason: see the plan)"
        slot = slot if isinstance(slot, Mapping) else {}
        lines.append(f"| {label} | {_count(slot.get('count'))} | {format_size(_count(slot.get('bytes')))} |")
    samples = list(summary.get("samples") or [])
    if samples:
        lines += ["", f"First {len(samples)} keys (odd characters shown as escapes):", "", fenced(samples)]
    made_with = made_with_settings(summary, params)
    if made_with:
        lines += ["", "Made with these settings (the delete re-checks under the same ones):", "", fenced(made_with)]
    overridden = set_by_the_run(summary, params)
    if overridden:
        lines += ["", f"**{len(overridden)} of them given by this run's conf or trigger form**, not taken from the "
                      "deployment's Variable or the defaults (a run that the daily run's dispatch started gets its "
                      "target's keys and `now` this way):", "", fenced(overridden)]
    if triggered_by:
        lines += ["", "Run triggered by:", "", fenced([triggered_by])]
    lines += ["", f"Full plan ({len(summary.get('chunks') or [])} chunks):", "", fenced([summary.get("plan_uri") or ""])]
    if plan_digest:
        lines += ["", f"Plan digest `{plan_digest}`: the approval holds for exactly this plan."]
    if timeout_at:
        lines += ["", f"Unanswered by {timeout_at} (UTC), the request expires and nothing is deleted."]
    superseded = list(superseded)
    if superseded:
        lines += ["", f"This plan supersedes {len(superseded)} older waiting plan(s) of the same target:", "",
                  fenced(superseded)]
    lines += ["", "Every key is re-checked right before it is deleted; Reject deletes nothing."]
    return "\n".join(lines)
