"""The Airflow wiring every deleting DAG shares: ``guard`` → ``approve`` → ``delete`` (mapped) → ``audit``.

A DAG writes its plan with :class:`include.deletion.plan.PlanWriter` in a ``plan`` task that returns the plan
summary, then calls :func:`add_deletion_tasks` with that summary and its policy's re-check::

    summary = plan()
    add_deletion_tasks(summary, recheck=deploy_cleanup_tasks.recheck)

The run's settings (``settings.json``, written by the run's first task: see
:func:`include.dag_defaults.resolve_run_settings`) must hold ``bucket``, ``aws_conn_id``, ``approval``
(``required`` | ``auto``), ``dry_run`` and ``max_delete_count``; ``max_delete_fraction``, ``approvers``,
``separate_approver`` and ``approval_timeout_hours`` are used when present (:mod:`include.deletion.settings`).
Every task here reads them from that file, never from the params (which may be empty: the Variable and the
defaults decide then).

- ``guard`` fails the run (nothing deleted) when a safety limit is broken and writes ``guard.json`` (the
  plan id, its verdict with any refusals, and the digest of ``plan.json`` it checked); it hands ``delete``
  the chunk names, or none on a dry run, so a dry run is plan → guard → audit.
- ``approve`` (:class:`PlanApprovalOperator`) shows the plan read from the artifact store, escaped, to the
  ``approvers`` (HITL ``assigned_users``), supersedes older waiting plans of the same target, waits
  deferred on :class:`include.deletion.trigger.PlanApprovalTrigger` (which also closes the request, with
  Reject and no responder, once a newer plan supersedes it), and when it resumes reads its own HITL record
  (who, what, when) and writes ``approval.json``; its HITL notifier sends the request to the DAG's
  ``notifications`` targets (:class:`include.dag_defaults.DeploymentNotifier`). Skipped when
  ``approval`` is ``auto`` or on a dry run. Reject, expiry or supersession skip ``delete`` (nothing deleted,
  the run succeeds); an approval from a user who may not approve fails the run.
- ``delete`` runs once per plan chunk and refuses unless the plan exists, passes the guards again, matches
  the digests the guard and the approver saw, and ``approval.json`` says approved (or ``approval`` is
  ``auto``). Nothing is read from XCom: a task marked successful by hand or a written XCom is not an
  approval. It re-checks the chunk with the policy's re-check right before deleting.
- ``audit`` writes ``audit.json`` with the verdict, who approved, when and the plan digest, returns its
  summary and fails the run, after recording, when keys could not be deleted. It also runs once every task
  before it is done when one failed for good (a delete chunk, the purge, the guard, approve): the audit then
  records what was deleted and the failed tasks, and fails the run.

See :mod:`include.deletion.approval` for why the evidence travels through the artifact store.
This module is imported when DAG files are parsed: heavy imports stay inside the task functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException

from include.core.artifacts import TASK_RESULTS_DIR
from include.dag_defaults import DeploymentNotifier
from include.deletion.approval import DeleteRefused, approval_body
from include.deletion.recheck import RecheckContext, RecheckFactory

log = logging.getLogger(__name__)

PLAN, GUARD, APPROVE, DELETE, AUDIT = "plan", "guard", "approve", "delete", "audit"
APPROVAL_CHOICES = ("required", "auto")
MAX_MAP_LENGTH_DEFAULT = 1024
#: the default wait for an answer: below a daily schedule's interval, so a request expires before the next run
APPROVAL_TIMEOUT_DEFAULT = timedelta(hours=20)

__all__ = ["DeleteRefused", "PlanApprovalOperator", "add_deletion_tasks", "approval_body",
           "authorized", "plan_run_dir", "run_dir_of"]




def target_of(params: Mapping[str, Any]) -> dict[str, str]:
    """What a plan is about, to tell which waiting plans a newer one supersedes."""
    return {"bucket": str(params.get("bucket") or ""),
            "prefix": str(params.get("key_prefix", params.get("prefix")) or "")}


def triggering_user(context: Any) -> str | None:
    """The user who triggered the run (None for scheduled runs and backfills started by the scheduler)."""
    return getattr(context.get("dag_run"), "triggering_user_name", None) or None


def _hitl_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """The approval request's own record (who answered, what, when), as Airflow hands it to the resumed task.

    Airflow core builds this event from the HITL detail row (``HITLDetail.as_resume_event_payload``, in the
    REST API's response handler and in the scheduler's timeout sweep) and stores it in the task instance's
    ``next_kwargs``, which no public API writes. The task cannot re-read the row itself: the worker's
    supervisor in task-sdk 1.3.2 does not serve ``GetHITLDetailResponse`` (only the triggerer does), and the
    execution API's HITL route is scoped to the calling task instance (``ti:self``).
    """
    user = event.get("responded_by_user")
    if user is not None and not isinstance(user, Mapping):
        user = {"id": getattr(user, "id", ""), "name": getattr(user, "name", "")}
    at: Any = event.get("responded_at")
    return {
        "response_received": bool(event.get("chosen_options")),
        "chosen_options": list(event.get("chosen_options") or []),
        "responded_by_user": {"id": str(user.get("id") or ""), "name": str(user.get("name") or "")} if user else None,
        "responded_at": at.isoformat() if hasattr(at, "isoformat") else (str(at) if at else None),
    }


class PlanApprovalOperator(ApprovalOperator):
    """:class:`ApprovalOperator` for a deletion plan: shows the plan (from the artifact store, escaped) to
    the approvers, and records the verdict from its own HITL record in ``approval.json``.

    Skipped on auto-approval or a dry run. ``approval_timeout_hours`` (a param) overrides
    ``response_timeout``; at the timeout the trigger applies the default (Reject, no responder) and the
    verdict is ``expired``. When a newer run supersedes the plan, the trigger closes the request the same
    way and the verdict is ``superseded``. The task waits in the ``deferred`` state, on the triggerer.
    """

    def __init__(self, *, plan_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id
        self.asked_plan_id: Any = None

    def execute(self, context: Any) -> Any:
        from airflow.sdk import Param
        from airflow.sdk.definitions.param import ParamsDict
        from airflow.sdk.exceptions import AirflowFailException

        from include.core import artifacts
        from include.core.text import shown
        from include.dag_defaults import saved_run_settings
        from include.deletion import approval as gate
        from include.deletion.plan import read_plan

        params, ti = saved_run_settings(context), context["ti"]
        if params.get("dry_run"):
            raise AirflowSkipException("dry run: nothing will be deleted, no approval needed")
        if params.get("approval") == "auto":
            raise AirflowSkipException("approval=auto: the plan is within the guards, deleting without a human")
        run_dir = run_dir_of(context)
        require_no_deletions(context, "asking again")  # approval.json is the record of what was approved
        plan = read_plan(run_dir)  # what the approver sees comes from the artifact, not from an XCom
        require_plans_settings(plan, params)  # the approvers asked, the limits shown: the plan's own, or nothing
        digests = gate.plan_digests(run_dir, plan.get("chunks") or [])
        # nobody is asked about a plan delete would refuse anyway (a guard marked successful by hand)
        try:
            guard = gate.read_optional(run_dir / gate.GUARD_FILE)
        except ValueError:  # not JSON: no verdict of the guard's, as delete would find too
            guard = None
        if unguarded := gate.not_passed_by_guard(guard, plan, digests["plan_file_digest"]):
            raise AirflowFailException(f"nobody is asked: {unguarded}")
        triggered_by = triggering_user(context)
        separate = params.get("separate_approver") is not False  # unset (None) keeps the safe default
        try:
            approvers = gate.clean_approvers(params.get("approvers"))
            users = gate.assigned_users(approvers, separate_approver=separate, triggered_by=triggered_by)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        hours = params.get("approval_timeout_hours")
        if hours:
            self.response_timeout = timedelta(hours=float(hours))
        asked_at = datetime.now(UTC)
        timeout_at = (asked_at + self.response_timeout).isoformat(timespec="seconds") if self.response_timeout else ""
        target = target_of(params)
        request = {"plan_id": plan.get("plan_id"), **digests, "target": target, "asked_at": asked_at.isoformat(),
                   "timeout_at": timeout_at, "approvers": approvers, "assigned_users": users,
                   "separate_approver": separate, "triggered_by": triggered_by, "try_number": ti.try_number}
        for stale in (run_dir / gate.APPROVAL_FILE, run_dir / gate.SUPERSEDED_FILE, run_dir / gate.NOTIFIED_FILE):
            if artifacts.exists(stale):  # a new request (a retry, a cleared task) voids any earlier answer or close
                stale.unlink()
        artifacts.write_json(run_dir / gate.REQUEST_FILE, request)
        superseded, winner = gate.supersede_waiting(run_dir.parent, run_id=ti.run_id, request=request,
                                                    now=datetime.now(UTC))
        if superseded:
            log.info("the waiting plans of runs %s (same target %s) are closed in favour of run %s's request",
                     superseded, target, winner or ti.run_id)
        if winner is not None:  # nobody is asked: no request in Required Actions, no notification
            log.info("run %s asked for the same target in the same instant, after this run: its request waits, "
                     "this one is closed before anyone is asked", winner)
            return self.execute_complete(context, {"superseded_by": winner, "asked": False})
        self.assigned_users = users or None
        # the form's one field, filled in: the answer names back the plan it was given for (answered_another_plan)
        self.params = ParamsDict({gate.PLAN_DIGEST_FIELD: Param(
            digests["plan_digest"], type="string", title="Plan digest (leave as shown)",
            description="The plan this request shows. An approval holds only for it: an answer from a page "
                        "loaded before the run planned again names another plan and deletes nothing.")})
        self.subject = (f"{ti.dag_id}: approve deleting the planned objects from "
                        f"s3://{shown(params.get('bucket') or '')}?")
        self.body = approval_body(plan, params, plan_digest=digests["plan_digest"], timeout_at=timeout_at,
                                  superseded=superseded, triggered_by=triggered_by)
        self.asked_plan_id = plan.get("plan_id")  # what the notifier records whom the request reached for
        self._ask(context, asked_at=asked_at)

    def _ask(self, context: Any, *, asked_at: datetime) -> None:
        """Write the HITL request and wait for it: :meth:`HITLOperator.execute` as the provider runs it before
        Airflow 3.3 (defer to a trigger), not as on 3.3 (park in ``awaiting_input``, where nothing of ours runs
        until a person or the timeout answers), so that :class:`PlanApprovalTrigger` can also close the request
        when a newer plan supersedes this one. Airflow's REST API resumes a deferred HITL task on an answer just
        as it resumes an ``awaiting_input`` one; the timeout is applied by the trigger."""
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        from include.deletion.trigger import PlanApprovalTrigger

        ti = context["task_instance"]
        upsert_hitl_detail(ti_id=ti.id, options=self.options, subject=self.subject, body=self.body,
                           defaults=self.defaults, multiple=self.multiple, params=self.serialized_params,
                           assigned_users=self.assigned_users)
        timeout_at = asked_at + self.response_timeout if self.response_timeout else None
        self.hitl_summary_extra["timeout_datetime"] = timeout_at.isoformat() if timeout_at else None
        log.info("waiting for an answer, a newer plan of the same target or the timeout (%s)", timeout_at)
        for notifier in self.notifiers:
            notifier(context)
        self.defer(
            trigger=PlanApprovalTrigger(ti_id=ti.id, options=self.options, defaults=self.defaults,
                                        params=self.serialized_params, multiple=self.multiple,
                                        timeout_datetime=timeout_at, dag_id=ti.dag_id, run_id=ti.run_id,
                                        asked_at=asked_at.isoformat()),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from include.core import artifacts
        from include.deletion import approval as gate

        ti = context["ti"]
        run_dir = run_dir_of(context)
        request = gate.read_optional(run_dir / gate.REQUEST_FILE) or {}
        if "error" in event:
            record: dict[str, Any] = {"error": event.get("error")}
            verdict, reason = ((gate.EXPIRED, "the approval request timed out") if event.get("error_type") == "timeout"
                               else (gate.REFUSED, f"the approval request failed: {event.get('error')}"))
        else:
            record = _hitl_record(event)  # the request's own record as Airflow resumed us with it, never an XCom
            verdict, reason = gate.judge(record, approvers=list(request.get("approvers") or []),
                                         separate_approver=bool(request.get("separate_approver", True)),
                                         triggered_by=request.get("triggered_by"))
            if verdict == "no_answer":
                verdict, reason = gate.REFUSED, "resumed without an answer in the approval request's record"
        superseded = gate.read_optional(run_dir / gate.SUPERSEDED_FILE)
        if superseded is not None and gate.closes(superseded, request or None):  # the marker decides, not the event
            by = superseded.get("superseded_by")
            verdict, reason = gate.SUPERSEDED, (
                f"superseded by run {by!r}, which asked for the same target in the same instant: nobody was asked"
                if event.get("asked") is False else
                f"superseded by run {by!r}: the request was closed without an answer (Reject, no responder)"
                if event.get("superseded_by") else f"superseded by run {by!r} before it was answered ({reason})")
        given = event.get("params_input")
        answered_for = given.get(gate.PLAN_DIGEST_FIELD) if isinstance(given, Mapping) else None
        if verdict == gate.APPROVED and (other := gate.answered_another_plan(given, request)):
            verdict, reason = gate.REFUSED, other
        if verdict == gate.APPROVED:
            now = gate.plan_digests(run_dir, list((request.get("chunk_digests") or {}).keys()))
            if not request or now["plan_digest"] != request.get("plan_digest"):
                verdict, reason = gate.REFUSED, "the plan changed while the approval request waited: nothing deleted"
        approval = {
            "verdict": verdict, "reason": reason, "responded_by": record.get("responded_by_user"),
            "responded_at": record.get("responded_at"), "chosen_options": record.get("chosen_options"),
            "answered_plan_digest": answered_for if isinstance(answered_for, str) else None,
            "plan_id": request.get("plan_id"), "plan_digest": request.get("plan_digest"),
            "plan_file_digest": request.get("plan_file_digest"), "chunk_digests": request.get("chunk_digests"),
            "asked_at": request.get("asked_at"), "triggered_by": request.get("triggered_by"),
            "approvers": request.get("approvers"), "try_number": ti.try_number,
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        artifacts.write_json(run_dir / gate.APPROVAL_FILE, approval)
        log.info("approval verdict: %s (%s)", verdict, reason)
        if verdict == gate.APPROVED:
            return {"verdict": verdict, "responded_by": approval["responded_by"], "plan_digest": approval["plan_digest"]}
        if verdict == gate.REFUSED:
            raise AirflowFailException(f"{reason}; nothing was deleted")
        # rejected, expired, superseded: a decision, not an error: delete is skipped, audit records it
        skipped = [t for t in context["task"].get_direct_relatives(upstream=False) if not t.is_teardown]
        if skipped:
            self.skip(ti=ti, tasks=skipped)
        return {"verdict": verdict, "responded_by": approval["responded_by"]}


def require_plans_settings(plan: Any, params: Any) -> None:
    """Fail the task (no retry helps) when the run's settings are not those its plan was made with."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.deletion import approval as gate

    changed = gate.settings_changed(plan, params)
    if changed:
        raise AirflowFailException(f"the run's settings are not those its plan was made with ({changed}): clear "
                                   "the run's first task and everything after it to plan again")


def run_dir_of(context: Any) -> Any:
    """This run's artifact folder, ``<root>/<dag_id>/<run_id>/``."""
    from include.core import artifacts

    ti = context["ti"]
    return artifacts.run_dir(ti.dag_id, ti.run_id)


FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
#: states the scheduler starts a task from again only once the task's upstream tasks are done
RETRYING = frozenset({"up_for_retry", "up_for_reschedule"})
#: a running task cleared: its process is being stopped (then None; with its worker gone, up_for_retry after
#: Airflow's heartbeat timeout, 300 s by default)
STOPPING = "restarting"
STOP_WAIT = timedelta(minutes=6)


def plan_run_dir(context: Any, *, stop_wait: timedelta = STOP_WAIT, poll: float = 2.0) -> Any:
    """The run folder a plan task writes its new plan into (:func:`run_dir_of`), once no task after it in
    this run is underway: running, queued, waiting for an answer, or about to start again. A new plan then
    would replace the one they work on, and move a record of deletions to ``earlier/``
    (:func:`include.deletion.plan.keep_earlier_record`) while a delete still writes its chunk's progress
    there. Tasks being stopped (the plan cleared with its downstream tasks) are waited for, up to
    ``stop_wait``; any other busy task fails the plan task (no retry), naming it."""
    import time

    from airflow.sdk.exceptions import AirflowFailException

    task = context["task"]
    deadline, said = time.monotonic() + stop_wait.total_seconds(), ""
    while busy := _busy_after(task, run_task_states(context)):
        if any(state != STOPPING for _, state in busy) or time.monotonic() >= deadline:
            shown = ", ".join(f"{name} is {state}" for name, state in busy)
            raise AirflowFailException(
                f"{task.task_id}: not planning again while tasks after it in this run are underway ({shown}): "
                f"a new plan would replace the one they work on. Nothing was changed. Wait until they finish "
                f"and clear {task.task_id} again, or clear {task.task_id} with its downstream tasks (that stops "
                f"them; what they deleted stays recorded)")
        if said != (waiting := ", ".join(name for name, _ in busy)):
            log.info("waiting for %s to stop before planning again", said := waiting)
        time.sleep(poll)
    return run_dir_of(context)


def _busy_after(task: Any, states: Mapping[str, str]) -> list[tuple[str, str]]:
    """The tasks after ``task`` (by name as in :func:`run_task_states`) that are not finished and may run
    without it: a task waiting to retry whose upstream tasks are not all done (cleared with the plan) waits
    for the new plan, as a task never started does."""
    dag = task.get_dag()
    after = task.get_flat_relative_ids(upstream=False)

    def task_of(name: str) -> str:
        return name if name in dag.task_dict else _in_order(name)[0]

    by_task: dict[str, list[str]] = {}
    for name, state in states.items():
        by_task.setdefault(task_of(name), []).append(state)

    def done(task_id: str) -> bool:
        return bool(by_task.get(task_id)) and all(state in FINISHED for state in by_task[task_id])

    busy = [(name, state) for name, state in states.items()
            if task_of(name) in after and state != "None" and state not in FINISHED
            and not (state in RETRYING and not all(done(up) for up in dag.task_dict[task_of(name)].upstream_task_ids))]
    return sorted(busy, key=lambda b: _in_order(b[0]))


def _max_map_length() -> int:
    try:
        from airflow.configuration import conf

        return conf.getint("core", "max_map_length", fallback=MAX_MAP_LENGTH_DEFAULT)
    except Exception:  # noqa: BLE001 - outside a configured Airflow, use Airflow's default
        return MAX_MAP_LENGTH_DEFAULT


def require_no_deletions(context: Any, what: str) -> None:
    """Fail the task (no retry helps) when this run's folder records deletions
    (:func:`include.deletion.plan.refuse_after_deletions`). A ``before_audit`` task records its result in
    its own folder (``TASK_RESULTS_DIR``), so no task id can name a gate file."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.deletion.plan import AlreadyDeleted, refuse_after_deletions

    try:
        refuse_after_deletions(run_dir_of(context), what)
    except AlreadyDeleted as exc:
        raise AirflowFailException(str(exc)) from None


def record_task_result(context: Any, result: dict[str, Any], plan_id: str | None = None) -> dict[str, Any]:
    """Write a ``before_audit`` task's result to ``<run>/task_results/<task_id>.json`` for the audit, tagged
    with the plan's id (read from plan.json unless given: a task saving progress often has it); returns it.
    (The audit does not read the task's XCom: anyone with task-instance edit rights can write that, and
    audit.json is the permanent record.)"""
    from include.core import artifacts
    from include.deletion.plan import read_plan

    run_dir = run_dir_of(context)
    recorded = {"plan_id": read_plan(run_dir).get("plan_id") if plan_id is None else plan_id, **result}
    artifacts.write_json(run_dir / TASK_RESULTS_DIR / f"{context['ti'].task_id}.json", recorded)
    return recorded


def recorded_task_result(context: Any, plan_id: str) -> dict[str, Any] | None:
    """What :func:`record_task_result` last wrote for the calling task about the plan ``plan_id`` (an earlier
    attempt's), or None (none, another plan's, unreadable)."""
    from include.deletion import approval as gate

    try:
        result = gate.read_optional(run_dir_of(context) / TASK_RESULTS_DIR / f"{context['ti'].task_id}.json")
    except (OSError, ValueError):
        return None
    return result if result is not None and result.get("plan_id") == plan_id else None


def run_task_states(context: Any) -> dict[str, str]:
    """The states of the calling task's run, by task id (a mapped task's as ``<task_id>_<map_index>``), from
    Airflow's execution API."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id) or {}
    return {str(task): str(state) for task, state in states.items()}


def _guard_passed(run_dir: Any) -> bool:
    """Does ``guard.json`` pass the plan in ``run_dir``, byte for byte (:func:`not_passed_by_guard`)?"""
    from include.deletion import approval as gate
    from include.deletion.plan import PLAN_FILE, read_plan

    try:
        return gate.not_passed_by_guard(gate.read_optional(run_dir / gate.GUARD_FILE), read_plan(run_dir),
                                        gate.file_digest(run_dir / PLAN_FILE)) is None
    except (OSError, ValueError):  # unreadable: not known to have been checked
        return False


def unauditable(plan_task_id: str, states: Mapping[str, str], *, has_plan: bool, has_audit: bool,
                deleted: bool, guarded: bool) -> Exception | None:
    """Why the audit must not write ``audit.json`` now (the exception to raise), or None. ``states``: the
    run's (:func:`run_task_states`); the flags: whether the run folder holds a plan, an audit, deletions,
    and whether ``guard.json`` passes the plan there."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.dag_defaults import AlreadyReported

    planning = states.get(plan_task_id, "None")
    if planning not in (*FINISHED, "None"):  # the audit cleared alone while the run plans again
        return AirflowFailException(f"the {plan_task_id} task is {planning}: the plan is being written again, "
                                    "nothing to audit yet; clear audit again once it has ended")
    # An earlier plan's files may be there, not this run's. But a plan written again first moves a record of
    # deletions to earlier/ (keep_earlier_record): deletions still at the top are this plan's, so a plan task
    # marked failed during the deletes does not hide them; an audit already written stays as it is. A guard
    # that passed in this attempt, and whose guard.json passes the plan there, checked that plan: the plan task
    # failing after it (refusing to plan again while that plan was worked on: plan_run_dir) changed nothing.
    # (The task state alone is not enough: a plan cleared alone after the run may rewrite plan.json, then fail.)
    checked = states.get(GUARD) == "success" and guarded
    if planning != "success" and (not has_plan or (not checked and (has_audit or not deleted))):
        return AlreadyReported(f"the {plan_task_id} task ended {planning}: no plan of this attempt, nothing more "
                               "deleted, nothing to audit")
    return None


def _in_order(task: str) -> tuple[str, int]:
    """Sort key for :func:`run_task_states`' names: ``delete_2`` before ``delete_10``."""
    name, _, index = task.rpartition("_")
    return (name, int(index)) if name and index.isascii() and index.isdigit() else (task, -1)


@dataclass(frozen=True)
class Authorized:
    """What :func:`authorized` let through: the verdict, and plan.json and the chunk's items parsed from
    the very bytes whose digests were checked (a plan written again meanwhile cannot slip in)."""

    verdict: str
    plan: dict[str, Any]
    items: list[Any] | None


def authorized(context: Any, chunk: str | None = None) -> Authorized:
    """The delete task's preconditions, reusable by policy tasks that also delete (e.g. purging rows), and
    what they let through: work from ``.plan`` and ``.items``, never from a second read of the files.

    Everything comes from the artifact store and the run's params, nothing from XCom: the plan, the guards
    re-derived from it, ``guard.json`` and ``approval.json`` pinned to its digests. The verdict is ``auto``
    or ``approved``. A reject, expiry, supersession or dry run skips the calling task (nothing to do, not
    an error); any other missing precondition fails it without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.core import artifacts
    from include.dag_defaults import saved_run_settings
    from include.deletion import approval as gate
    from include.deletion.plan import PLAN_DIR, PLAN_FILE, chunk_items, read_chunk_bytes

    run_dir = run_dir_of(context)
    plan_bytes = artifacts.read_bytes(run_dir / PLAN_FILE) if artifacts.exists(run_dir / PLAN_FILE) else None
    parsed = artifacts.parse_json(plan_bytes) if plan_bytes is not None else None
    if parsed is not None and not isinstance(parsed, dict):
        raise AirflowFailException(f"{artifacts.uri(run_dir / PLAN_FILE)} is not a plan (a JSON object): nothing "
                                   "is deleted under it")
    plan = parsed
    chunk_bytes = read_chunk_bytes(run_dir, chunk) if chunk is not None and artifacts.exists(
        run_dir / PLAN_DIR / f"{chunk}.jsonl") else None
    try:
        verdict = gate.authorize(
            plan=plan, params=saved_run_settings(context), chunk=chunk,
            plan_file_digest=gate.bytes_digest(plan_bytes) if plan_bytes is not None else None,
            chunk_digest=gate.bytes_digest(chunk_bytes) if chunk_bytes is not None else None,
            guard=gate.read_optional(run_dir / gate.GUARD_FILE),
            approval=gate.read_optional(run_dir / gate.APPROVAL_FILE),
            superseded=gate.read_optional(run_dir / gate.SUPERSEDED_FILE),
            request=gate.read_optional(run_dir / gate.REQUEST_FILE), max_map_length=_max_map_length(),
        )
    except DeleteRefused as exc:
        if exc.verdict in (*gate.QUIET_VERDICTS, "dry_run"):
            raise AirflowSkipException(f"nothing deleted: {exc}") from exc
        raise AirflowFailException(str(exc)) from exc
    assert plan is not None  # authorize refuses a run without a plan
    return Authorized(verdict, plan, chunk_items(chunk_bytes) if chunk_bytes is not None else None)


def add_deletion_tasks(
    summary: Any, *, recheck: RecheckFactory | None, before_audit: Callable[[], Any] | None = None,
    approval_timeout: timedelta = APPROVAL_TIMEOUT_DEFAULT, delete_concurrency: int = 4,
) -> dict[str, Any]:
    """Add ``guard`` → ``approve`` → ``delete`` (mapped over chunks) → ``audit`` after the plan task.

    ``summary`` is the plan task's output (:meth:`PlanWriter.close`). ``recheck`` names the policy's
    re-check factory (a function, called with a :class:`RecheckContext` in each delete task).
    ``before_audit()`` may add a task between ``delete`` and ``audit`` (its trigger rule should be
    ``none_failed``, since ``delete`` is skipped on a dry run or reject); its return value is recorded in
    the audit under its task id. ``audit`` (``all_done``) waits for ``delete`` too: a task between that
    fails as soon as one chunk fails must not let the audit run while other chunks still delete. ``approval_timeout`` is the default wait for an answer (the param
    ``approval_timeout_hours`` overrides it per run). Returns the tasks by id.
    """
    plan_task_id = summary.operator.task_id

    @task(task_id=GUARD)
    def guard(plan_summary: dict[str, Any]) -> list[str]:
        """Refuse (fail, nothing deleted) when the plan breaks a safety limit; return the chunks to delete."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from include.core import artifacts
        from include.dag_defaults import saved_run_settings
        from include.deletion import approval as gate
        from include.deletion.plan import PLAN_FILE, GuardRefused, check_guards, read_plan

        context = get_current_context()
        params = saved_run_settings(context)
        run_dir = run_dir_of(context)
        if artifacts.exists(run_dir / gate.GUARD_FILE):  # an earlier verdict must not outlive this check
            (run_dir / gate.GUARD_FILE).unlink()
        plan_file_digest = gate.file_digest(run_dir / PLAN_FILE)
        plan = read_plan(run_dir)
        if plan.get("plan_id") != plan_summary.get("plan_id"):
            raise AirflowFailException("plan.json does not match the plan task's summary: clear the plan task "
                                       "and everything after it")
        require_plans_settings(plan, params)
        chunks = list(plan.get("chunks") or [])  # from the artifact, not from the XCom
        limit = _max_map_length()
        refusals = [f"the plan has {len(chunks)} chunks, more than Airflow's max_map_length={limit}"] \
            if len(chunks) > limit else []
        try:
            check_guards(plan, max_delete_count=int(params["max_delete_count"]),
                         max_delete_fraction=params.get("max_delete_fraction"), refusals=refusals)
        except GuardRefused as exc:
            # the audit tells a refusal (a limit, a policy's refusal) from a guard that failed on its own
            artifacts.write_json(run_dir / gate.GUARD_FILE, {"plan_id": plan["plan_id"], "passed": False,
                                                             "refusals": exc.violations,
                                                             "plan_file_digest": plan_file_digest})
            raise AirflowFailException(str(exc)) from exc  # retrying cannot change the verdict
        log.info("guards passed: %d objects in %d chunks", plan.get("delete_count", 0), len(chunks))
        # delete trusts this file (not an XCom): the plan id and the exact plan.json the guard checked
        artifacts.write_json(run_dir / gate.GUARD_FILE, {"plan_id": plan["plan_id"], "passed": True,
                                                         "plan_file_digest": plan_file_digest})
        return [] if params.get("dry_run") else chunks  # a dry run maps delete over nothing

    @task(task_id=DELETE, trigger_rule="none_failed", max_active_tis_per_dagrun=delete_concurrency)
    def delete(chunk: str) -> dict[str, Any]:
        """Re-check one plan chunk and delete it; per-key errors are recorded for the audit."""
        from airflow.sdk import get_current_context

        from include.aws.client import client_from_connection
        from include.deletion.plan import delete_chunk

        context = get_current_context()
        allowed = authorized(context, chunk)
        log.info("chunk %s authorised (%s)", chunk, allowed.verdict)
        run_dir = run_dir_of(context)
        plan = allowed.plan  # authorised: the settings the plan was made, checked and approved with
        params = plan["settings"]
        client = client_from_connection(params["aws_conn_id"])
        try:
            check = recheck(RecheckContext(client, params["bucket"], params, plan, run_dir)) if recheck else None
        except DeleteRefused as exc:  # what the re-check would judge by is not what was planned: no retry helps
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
        return delete_chunk(client, params["bucket"], run_dir, chunk, recheck=check, dry_run=False, plan=plan,
                            items=allowed.items)

    @task(task_id=AUDIT, trigger_rule="all_done")
    def audit(extra_task_ids: list[str]) -> dict[str, Any]:
        """Write audit.json and return its summary, also when a task before it failed for good (what was
        deleted, and which tasks failed); fail, after recording, if keys were not deleted or a task failed."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from include.core import artifacts
        from include.dag_defaults import AlreadyReported, saved_run_settings
        from include.deletion import approval as gate
        from include.deletion.plan import AUDIT_FILE, PLAN_FILE, read_plan, recorded_deletions, write_audit

        context = get_current_context()
        states = run_task_states(context)
        run_dir = run_dir_of(context)
        has_plan = artifacts.exists(run_dir / PLAN_FILE)
        if (refusal := unauditable(plan_task_id, states, has_plan=has_plan,
                                   has_audit=artifacts.exists(run_dir / AUDIT_FILE),
                                   deleted=bool(recorded_deletions(run_dir)),
                                   # read only where it decides: when the plan task did not succeed
                                   guarded=has_plan and states.get(plan_task_id) != "success"
                                   and _guard_passed(run_dir))) is not None:
            raise refusal
        failed = sorted((task for task, state in states.items() if state == "failed" and task != AUDIT), key=_in_order)
        params = saved_run_settings(context)
        plan = read_plan(run_dir)
        # an answer or supersession about an earlier plan of the run: neither this plan's verdict nor approver
        superseded, approval = gate.this_plans(plan, gate.read_optional(run_dir / gate.SUPERSEDED_FILE),
                                               gate.read_optional(run_dir / gate.APPROVAL_FILE), auto=True,
                                               request=gate.read_optional(run_dir / gate.REQUEST_FILE))
        verdict = gate.verdict_of(params, approval, superseded, plan)
        guard_record = gate.read_optional(run_dir / gate.GUARD_FILE)
        refused = gate.guard_refused(guard_record, plan)
        outcome = gate.audit_outcome(verdict, has_chunks=bool(plan.get("chunks")), failed=bool(failed),
                                     guard_failed=GUARD in failed, refused=refused)
        extra: dict[str, Any] = {"outcome": outcome, "approval": verdict, "dry_run": bool(params.get("dry_run")),
                                 "bucket": params.get("bucket")}
        if failed:
            extra["failed_tasks"] = failed
        if refused and guard_record is not None:
            extra["guard_refusals"] = list(guard_record.get("refusals") or [])
        if approval is not None:  # who approved (or rejected), when, and the digest of the plan they saw
            extra["approval_record"] = {k: approval.get(k) for k in (
                "verdict", "reason", "responded_by", "responded_at", "plan_digest", "triggered_by", "asked_at")}
        if superseded is not None:
            extra["superseded_by"] = superseded.get("superseded_by")
        unseen = outcome == "expired" and gate.reached_nobody(gate.read_notified(run_dir), plan)
        if unseen:
            extra["approval_request_reached_nobody"] = True
        plan_id = plan.get("plan_id")
        for task_id in extra_task_ids:  # from its result file (:func:`record_task_result`), not its XCom
            result = gate.read_optional(run_dir / TASK_RESULTS_DIR / f"{task_id}.json")
            extra[task_id] = result if result is not None and result.get("plan_id") == plan_id else None
        result = write_audit(run_dir, extra=extra)
        log.info("audit: %s", {k: result[k] for k in ("outcome", "deleted_count", "deleted_bytes",
                                                        "error_count", "skipped_count")})
        # AirflowFailException: retrying the audit cannot delete anything; clearing delete can
        if result["error_count"]:
            raise AirflowFailException(
                f"{result['error_count']} keys could not be deleted (recorded in {result['audit_uri']}); fix the "
                "cause, then clear this run's delete and audit tasks: only what is left is sent again")
        if failed:
            raise AlreadyReported(f"{', '.join(failed)} failed (its own failure is what is notified); what was deleted "
                                  f"is recorded in {result['audit_uri']}: fix the cause, then clear the failed tasks "
                                  "and audit")
        if unseen:  # nobody decided anything: every notification of the request failed, and nobody looked
            raise AirflowFailException(
                "the approval request expired unanswered, and it reached none of the notification targets (every "
                "send failed when it was asked: the approve task's log says why); nothing was deleted. Fix the "
                "targets (docs/notifications.md), then trigger the run again")
        if outcome == "deleted" and result["chunks_missing"]:
            raise AirflowFailException(f"plan chunks {result['chunks_missing']} were approved but not deleted")
        return result

    guarded = guard(summary)
    approve = PlanApprovalOperator(
        task_id=APPROVE, plan_task_id=plan_task_id,
        subject="{{ dag.dag_id }}: approve deleting the planned objects?",  # execute() names the bucket
        body="(the plan is shown when the task runs)", defaults=ApprovalOperator.REJECT,
        response_timeout=approval_timeout,
        # tells the DAG's notification targets (deployment setting) that this plan waits for a human
        notifiers=[DeploymentNotifier("approval")],
    )
    deleted = delete.expand(chunk=guarded)
    guarded >> approve >> deleted
    between = before_audit() if before_audit is not None else None
    extra_ids = [between.operator.task_id if hasattr(between, "operator") else between.task_id] if between else []
    audited = audit(extra_ids)
    deleted >> audited  # also past the task between: the audit waits for every chunk, failed ones included
    if between is not None:
        deleted >> between >> audited
    return {GUARD: guarded, APPROVE: approve, DELETE: deleted, AUDIT: audited}
