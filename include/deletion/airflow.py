"""The Airflow wiring every deleting DAG shares: ``guard`` → ``approve`` → ``delete`` (mapped) → ``audit``.

A DAG writes its plan with :class:`include.deletion.plan.PlanWriter` in a ``plan`` task that returns the plan
summary, then calls :func:`add_deletion_tasks` with that summary and its policy's re-check::

    summary = plan()
    add_deletion_tasks(summary, recheck=deploy_cleanup_tasks.recheck)

The run's settings (``settings.json``, written by the run's first task: see
:func:`include.dag_defaults.resolve_run_settings`) must hold ``bucket``, ``aws_conn_id``, ``approval``
(``required`` | ``auto``), ``dry_run`` and ``max_delete_count``; ``max_delete_fraction`` is used when
present. Every task here reads them from that file, never from the params (which may be empty: the
Variable and the defaults decide then).

- ``guard`` fails the run (nothing deleted) when a safety limit is broken; it hands ``delete`` the chunk
  names, or none on a dry run, so a dry run is plan → guard → audit.
- ``approve`` is Airflow's :class:`ApprovalOperator` showing the plan summary; its HITL notifier sends the
  request to the DAG's ``notifications`` targets (:class:`include.dag_defaults.DeploymentNotifier`). It is skipped when
  ``approval`` is ``auto`` or on a dry run. Reject (or no answer within ``approval_timeout``) skips
  ``delete``: nothing is deleted and the run succeeds with outcome ``rejected`` in the audit.
- ``delete`` runs once per plan chunk and refuses unless the plan exists, the guard passed and the
  plan was approved or ``approval`` is ``auto`` (defence in depth: marking ``approve`` successful by hand
  is not an approval). It re-checks the chunk with the policy's re-check right before deleting.
- ``audit`` writes ``audit.json``, returns its summary and fails the run, after recording, when keys
  could not be deleted.

This module is imported when DAG files are parsed: heavy imports stay inside the task functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException

from include.core.units import format_size
from include.dag_defaults import DeploymentNotifier
from include.deletion.recheck import RecheckContext, RecheckFactory

log = logging.getLogger(__name__)

PLAN, GUARD, APPROVE, DELETE, AUDIT = "plan", "guard", "approve", "delete", "audit"
APPROVAL_CHOICES = ("required", "auto")
MAX_MAP_LENGTH_DEFAULT = 1024
ANSWER_KEY = "answer"


class DeleteRefused(RuntimeError):
    """The delete task found a precondition missing (no plan, guard not passed, not approved).

    ``verdict`` is the approval verdict when that was the reason (``rejected``, ``dry_run``, ``no_answer``).
    """

    def __init__(self, message: str, verdict: str = "") -> None:
        super().__init__(message)
        self.verdict = verdict




def approval_verdict(params: Mapping[str, Any], approval_result: Mapping[str, Any] | None) -> str:
    """``"dry_run"``, ``"auto"``, ``"approved"``, ``"rejected"`` or ``"no_answer"`` for this run."""
    if params.get("dry_run"):
        return "dry_run"
    approval = params.get("approval")
    if approval not in APPROVAL_CHOICES:
        raise DeleteRefused(f"approval must be one of {APPROVAL_CHOICES}, got {approval!r}")
    if approval == "auto":
        return "auto"
    if not approval_result or not approval_result.get("chosen_options"):
        return "no_answer"
    return "approved" if list(approval_result["chosen_options"]) == [ApprovalOperator.APPROVE] else "rejected"


def authorize_delete(
    *, plan: Mapping[str, Any] | None, summary: Mapping[str, Any], chunk: str | None, guard_passed: Any,
    guard_plan_id: Any, params: Mapping[str, Any], approval_result: Mapping[str, Any] | None,
) -> str:
    """Raise :class:`DeleteRefused` unless this chunk (or, with ``chunk=None``, this plan) may be
    deleted; return the approval verdict."""
    if plan is None:
        raise DeleteRefused("no plan.json for this run: nothing may be deleted without a written plan")
    if plan.get("plan_id") != summary.get("plan_id") or guard_plan_id != plan.get("plan_id"):
        raise DeleteRefused("plan.json is not the plan the guard checked (was the plan task re-run?): "
                            "clear guard, approve and delete too")
    if chunk is not None and chunk not in plan.get("chunks", []):
        raise DeleteRefused(f"chunk {chunk!r} is not part of the plan")
    if guard_passed is not True:
        raise DeleteRefused("the guard did not pass for this plan")
    verdict = approval_verdict(params, approval_result)
    if verdict not in ("auto", "approved"):
        raise DeleteRefused(f"deletion needs approval (approval={params.get('approval')!r}) and got: {verdict}; "
                            "answer the 'approve' task in Browse → Required Actions", verdict)
    return verdict


def approval_body(summary: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The Markdown the approver reads: what, how much, why, examples and where the full plan is."""
    lines = []
    if summary.get("headline"):
        lines += [str(summary["headline"]), ""]
    lines += [
        f"Delete **{summary.get('delete_count', 0)} objects** ({format_size(int(summary.get('delete_bytes', 0)))}) "
        f"from bucket `{params.get('bucket')}`; {summary.get('scanned_count', 0)} objects were scanned.",
        "", "| reason | objects | bytes |", "| --- | ---: | ---: |",
    ]
    for reason, slot in (summary.get("by_reason") or {}).items():
        lines.append(f"| {reason} | {slot['count']} | {format_size(int(slot['bytes']))} |")
    samples = summary.get("samples") or []
    if samples:
        lines += ["", f"First {len(samples)} keys:", ""] + [f"- `{k}`" for k in samples]
    lines += ["", f"Full plan: `{summary.get('plan_uri')}` ({len(summary.get('chunks') or [])} chunks).",
              "Every key is re-checked right before it is deleted; Reject deletes nothing."]
    return "\n".join(lines)


class PlanApprovalOperator(ApprovalOperator):
    """:class:`ApprovalOperator` that shows the plan summary and is skipped on auto-approval or a dry run."""

    def __init__(self, *, plan_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id

    def execute(self, context: Any) -> Any:
        from include.dag_defaults import saved_run_settings

        params = saved_run_settings(context)
        if params.get("dry_run"):
            raise AirflowSkipException("dry run: nothing will be deleted, no approval needed")
        if params.get("approval") == "auto":
            raise AirflowSkipException("approval=auto: the plan is within the guards, deleting without a human")
        summary = context["ti"].xcom_pull(task_ids=self.plan_task_id) or {}
        self.subject = f"{context['dag'].dag_id}: approve deleting the planned objects from s3://{params['bucket']}?"
        self.body = approval_body(summary, params)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        # On Reject the operator skips downstream by raising, so its return value never reaches XCom:
        # record the answer first, under a key of its own, for delete's and audit's checks.
        if "error" not in event:
            context["ti"].xcom_push(key=ANSWER_KEY, value=list(event.get("chosen_options") or []))
        return super().execute_complete(context, event)


def approval_answer(ti: Any) -> dict[str, Any] | None:
    """The human's answer recorded by ``approve`` (None when nobody answered or it was skipped)."""
    chosen = ti.xcom_pull(task_ids=APPROVE, key=ANSWER_KEY)
    return {"chosen_options": chosen} if chosen else None


def run_dir_of(context: Any) -> Any:
    """This run's artifact folder, ``<root>/<dag_id>/<run_id>/``."""
    from include.core import artifacts

    ti = context["ti"]
    return artifacts.run_dir(ti.dag_id, ti.run_id)


def _max_map_length() -> int:
    try:
        from airflow.configuration import conf

        return conf.getint("core", "max_map_length", fallback=MAX_MAP_LENGTH_DEFAULT)
    except Exception:  # noqa: BLE001 - outside a configured Airflow, use Airflow's default
        return MAX_MAP_LENGTH_DEFAULT


def require_authorized(context: Any, chunk: str | None = None, *, plan_task_id: str = PLAN) -> str:
    """The delete task's preconditions, reusable by policy tasks that also delete (e.g. purging rows).

    Returns the verdict (``auto`` or ``approved``). A Reject or a dry run skips the calling task (nothing
    to do, not an error); any other missing precondition fails it without retries.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from include.core import artifacts
    from include.dag_defaults import saved_run_settings
    from include.deletion.plan import PLAN_FILE, read_plan

    ti = context["ti"]
    run_dir = run_dir_of(context)
    plan = read_plan(run_dir) if artifacts.exists(run_dir / PLAN_FILE) else None
    summary = ti.xcom_pull(task_ids=plan_task_id) or {}
    try:
        return authorize_delete(
            plan=plan, summary=summary, chunk=chunk,
            guard_passed=ti.xcom_pull(task_ids=GUARD, key="passed"),
            guard_plan_id=ti.xcom_pull(task_ids=GUARD, key="plan_id"),
            params=saved_run_settings(context), approval_result=approval_answer(ti),
        )
    except DeleteRefused as exc:
        if exc.verdict in ("rejected", "dry_run"):
            raise AirflowSkipException(f"nothing deleted: {exc.verdict}") from exc
        raise AirflowFailException(str(exc)) from exc


def add_deletion_tasks(
    summary: Any, *, recheck: RecheckFactory | None, before_audit: Callable[[], Any] | None = None,
    approval_timeout: timedelta = timedelta(days=3), delete_concurrency: int = 4,
) -> dict[str, Any]:
    """Add ``guard`` → ``approve`` → ``delete`` (mapped over chunks) → ``audit`` after the plan task.

    ``summary`` is the plan task's output (:meth:`PlanWriter.close`). ``recheck`` names the policy's
    re-check factory (a function, called with a :class:`RecheckContext` in each delete task).
    ``before_audit()`` may add a task between ``delete`` and ``audit`` (its trigger rule should be
    ``none_failed``, since ``delete`` is skipped on a dry run or reject); its return value is recorded in
    the audit under its task id. Returns the tasks by id.
    """
    plan_task_id = summary.operator.task_id

    @task(task_id=GUARD)
    def guard(plan_summary: dict[str, Any]) -> list[str]:
        """Refuse (fail, nothing deleted) when the plan breaks a safety limit; return the chunks to delete."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from include.dag_defaults import saved_run_settings
        from include.deletion.plan import GuardRefused, check_guards, read_plan

        context = get_current_context()
        params = saved_run_settings(context)
        plan = read_plan(run_dir_of(context))
        if plan.get("plan_id") != plan_summary.get("plan_id"):
            raise AirflowFailException("plan.json does not match the plan task's summary: clear the plan task "
                                       "and everything after it")
        chunks = list(plan_summary.get("chunks") or [])
        limit = _max_map_length()
        refusals = [f"the plan has {len(chunks)} chunks, more than Airflow's max_map_length={limit}"] \
            if len(chunks) > limit else []
        try:
            check_guards(plan_summary, max_delete_count=int(params["max_delete_count"]),
                         max_delete_fraction=params.get("max_delete_fraction"), refusals=refusals)
        except GuardRefused as exc:
            raise AirflowFailException(str(exc)) from exc  # retrying cannot change the verdict
        log.info("guards passed: %d objects in %d chunks", plan_summary.get("delete_count", 0), len(chunks))
        context["ti"].xcom_push(key="plan_id", value=plan_summary["plan_id"])
        context["ti"].xcom_push(key="passed", value=True)
        return [] if params.get("dry_run") else chunks  # a dry run maps delete over nothing

    @task(task_id=DELETE, trigger_rule="none_failed", max_active_tis_per_dagrun=delete_concurrency)
    def delete(chunk: str) -> dict[str, Any]:
        """Re-check one plan chunk and delete it; per-key errors are recorded for the audit."""
        from airflow.sdk import get_current_context

        from include.aws.client import client_from_connection
        from include.dag_defaults import saved_run_settings
        from include.deletion.plan import delete_chunk, read_plan

        context = get_current_context()
        params = saved_run_settings(context)
        verdict = require_authorized(context, chunk, plan_task_id=plan_task_id)
        log.info("chunk %s authorised (%s)", chunk, verdict)
        run_dir = run_dir_of(context)
        client = client_from_connection(params["aws_conn_id"])
        check = recheck(RecheckContext(client, params["bucket"], params, read_plan(run_dir), run_dir)) \
            if recheck else None
        return delete_chunk(client, params["bucket"], run_dir, chunk, recheck=check, dry_run=False)

    @task(task_id=AUDIT, trigger_rule="none_failed")
    def audit(extra_task_ids: list[str]) -> dict[str, Any]:
        """Write audit.json and return its summary; fail, after recording, if keys were not deleted."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from include.dag_defaults import saved_run_settings
        from include.deletion.plan import write_audit

        context = get_current_context()
        params, ti = saved_run_settings(context), context["ti"]
        verdict = approval_verdict(params, approval_answer(ti))
        plan_summary = ti.xcom_pull(task_ids=plan_task_id) or {}
        outcome = {"dry_run": "dry_run", "rejected": "rejected", "no_answer": "not_approved"}.get(verdict)
        if outcome is None:
            outcome = "nothing_to_delete" if not plan_summary.get("chunks") else "deleted"
        extra: dict[str, Any] = {"outcome": outcome, "approval": verdict, "dry_run": bool(params.get("dry_run")),
                                 "bucket": params.get("bucket")}
        for task_id in extra_task_ids:
            extra[task_id] = ti.xcom_pull(task_ids=task_id)
        result = write_audit(run_dir_of(context), extra=extra)
        log.info("audit: %s", {k: result[k] for k in ("outcome", "deleted_count", "deleted_bytes",
                                                        "error_count", "skipped_count")})
        # AirflowFailException: retrying the audit cannot delete anything; clearing delete can
        if result["error_count"]:
            raise AirflowFailException(
                f"{result['error_count']} keys could not be deleted (recorded in {result['audit_uri']}); fix the "
                "cause, then clear this run's delete and audit tasks: only what is left is sent again")
        if outcome == "deleted" and result["chunks_missing"]:
            raise AirflowFailException(f"plan chunks {result['chunks_missing']} were approved but not deleted")
        return result

    guarded = guard(summary)
    approve = PlanApprovalOperator(
        task_id=APPROVE, plan_task_id=plan_task_id,
        subject="{{ dag.dag_id }}: approve deleting the planned objects?",  # execute() names the bucket
        body="(the plan summary is shown when the task runs)", defaults=ApprovalOperator.REJECT,
        response_timeout=approval_timeout,
        # tells the DAG's notification targets (deployment setting) that this plan waits for a human
        notifiers=[DeploymentNotifier("approval")],
    )
    deleted = delete.expand(chunk=guarded)
    guarded >> approve >> deleted
    between = before_audit() if before_audit is not None else None
    extra_ids = [between.operator.task_id if hasattr(between, "operator") else between.task_id] if between else []
    audited = audit(extra_ids)
    if between is not None:
        deleted >> between >> audited
    else:
        deleted >> audited
    return {GUARD: guarded, APPROVE: approve, DELETE: deleted, AUDIT: audited}
