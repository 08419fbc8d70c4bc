"""The Airflow side of ``s3_deploy_cleanup``: what its own tasks do (the deletion gate is shared:
:mod:`include.deletion.airflow`). The DAG file only wires these.

A run resolves its settings first (``targets``: params > Variable ``s3ops_deploy_cleanup`` > defaults,
recorded in ``settings.json``). Then:

- a run with a ``bucket`` (typed in the form, in its conf, or the Variable's ``bucket``) cleans that one
  target: ``plan`` → ``guard`` → ``approve`` → ``delete`` → ``audit``;
- a run without one (a scheduled run, with ``targets`` in the Variable) cleans every target: ``dispatch``
  starts one run of this DAG per target (mapped), each with that target in its conf, so every target
  gets its own plan, guard, approval request and audit, on its own run page. The dispatching run's
  ``plan`` and the gate after it are skipped.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from include.core.times import decided_as_of, format_time, logical_now
from include.deploy_cleanup.settings import MAX_TARGETS, SETTINGS, TARGET_KEYS

#: every target's run may wait for its approval at once (deferred: no worker held), with the dispatching
#: run and the next day's, which supersedes a plan still waiting
MAX_ACTIVE_RUNS = MAX_TARGETS + 2

# The planner (and the S3 listing it needs) is imported inside the functions: the DAG file imports this
# module at parse time, which must stay fast.


def recheck(ctx: Any) -> Any:
    """The delete step's re-check: a deployment that changed since planning is kept."""
    from include.deploy_cleanup.plan import make_recheck

    return make_recheck(ctx)


def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(f"{SETTINGS.dag_id}: {message}")  # a bad setting is not worth a retry


def _cleanup_settings(values: Any, what: str) -> Any:
    from include.deploy_cleanup.plan import settings_from_params

    try:
        return settings_from_params(values)
    except ValueError as exc:
        raise _fail(f"{what}: {exc}") from None


def dispatch_confs(resolved: Any, now: datetime) -> list[dict[str, Any]]:
    """The conf of one run per target (empty when this run has a bucket: it cleans only that target).

    A target's conf holds its own keys plus the params this run was given (e.g. ``dry_run``; a target's
    own key wins), and ``now``: this run's time (``now``, the time it decides at), so a target's run, which
    has no logical date of its own and starts later, judges ``older_than_days`` as this run would have (a
    backfill's targets as of its date, not of the day it ran). Every other setting comes from the Variable,
    then the defaults, in the target's run."""
    if resolved["bucket"] is not None:
        if resolved.sources["bucket"] == "variable" and resolved["targets"]:
            raise _fail(f"the Variable {SETTINGS.variable!r} sets both bucket and targets: keep one (bucket = one "
                        "target; targets = a list of them)")
        return []
    if not resolved["targets"]:
        raise _fail(f"nothing to clean: no bucket (param, or key 'bucket' of the Variable {SETTINGS.variable!r}) "
                    "and no targets in that Variable; see docs/configuration.md")
    given = {k: v for k, v in resolved.items() if resolved.sources[k] == "param"}
    confs = []
    for index, target in enumerate(resolved["targets"]):
        _cleanup_settings({**resolved, **target}, f"targets[{index}] (bucket {target['bucket']!r})")  # all checked first
        confs.append({**given, **{k: target[k] for k in TARGET_KEYS if k in target}, "now": format_time(now)})
    return confs


#: the run id ``dispatch`` gives a target's run (the DAG file's ``trigger_run_id``): ``<its run id>__target<N>``
DISPATCHED_RUN_ID = re.compile(r"__target[0-9]+\Z")
#: the run type Airflow gives a run a task started (``TriggerDagRunOperator``); the REST API cannot give it
DISPATCHED_RUN_TYPE = "operator_triggered"


def require_dispatched(run_id: str, run_type: Any) -> None:
    """Refuse a run named as ``dispatch`` names a target's run that ``dispatch`` did not start.

    Anyone who may trigger the DAG can create a run through the REST API with any run id the default
    ``allowed_run_id_pattern`` takes, and a scheduled run's id is known in advance: a run created as
    ``scheduled__<tomorrow>__target0`` made that day's ``dispatch`` skip the target (``skip_when_already_exists``:
    the task ``skipped``, the daily run successful), and the target was cleaned with that user's conf (a dry run,
    another keep or protect) under the name of the deployment's run. Such a run now fails before anything else."""
    kind = str(getattr(run_type, "value", run_type) or "")
    if DISPATCHED_RUN_ID.search(run_id) and kind != DISPATCHED_RUN_TYPE:
        raise _fail(f"run {run_id!r} is named as the daily run's dispatch names a target's run, but it was not "
                    f"started by a dispatch (run type {kind or 'unknown'!r}, not {DISPATCHED_RUN_TYPE!r}): nothing "
                    "is done. A run created under that name (through the REST API) would take the place of the "
                    "target's run, which dispatch then skips; trigger a run under another id")


def targets(context: Any) -> list[dict[str, Any]]:
    """Resolve the run's settings; the confs of the runs to start (one per target), or [] for one target."""
    from include.dag_defaults import resolve_run_settings

    dag_run = context["dag_run"]
    require_dispatched(str(dag_run.run_id), getattr(dag_run, "run_type", None))
    resolved = resolve_run_settings(SETTINGS, context)
    return dispatch_confs(resolved, _decided_as_of(context, resolved))


def _decided_as_of(context: Any, resolved: Any) -> datetime:
    """The run's time: its param ``now``, never later than its logical time, else its logical time."""
    try:
        return decided_as_of(logical_now(context), resolved["now"])
    except ValueError as exc:
        raise _fail(str(exc)) from None


def has_bucket(context: Any) -> bool:
    """True when this run cleans one target itself (False: it dispatched runs, skip the gate)."""
    from include.dag_defaults import saved_run_settings

    return saved_run_settings(context)["bucket"] is not None


def plan(context: Any) -> dict[str, Any]:
    """Check the settings, list the deployments, decide, and write the plan to the artifact store."""
    from include.aws.client import client_from_connection
    from include.dag_defaults import saved_run_settings
    from include.deletion.airflow import plan_run_dir
    from include.deploy_cleanup.plan import plan_cleanup
    from include.inventory.manifest import InventoryError

    run_dir = plan_run_dir(context)
    s = saved_run_settings(context)
    settings = _cleanup_settings(s, "invalid settings")
    now = _decided_as_of(context, s)
    client = client_from_connection(s["aws_conn_id"], mode="adaptive")
    try:
        return plan_cleanup(client, s["bucket"], settings, run_dir, now, run_settings=s)
    except InventoryError as exc:  # no usable inventory, or a damaged one: a retry reads the same files
        raise _fail(f"source inventory: {exc}") from None
