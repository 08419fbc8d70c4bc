"""s3_deploy_cleanup: keep the newest N deployment folders under a prefix, or prune by age keeping at least Y."""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task

from include.dag_defaults import dag_args, params_of
from include.deletion.airflow import add_deletion_tasks
from include.deploy_cleanup import tasks as deploy_cleanup_tasks

DOC = """
### S3 deploy cleanup

Deletes old deployment folders (`<prefix><deployment>/…`, any depth) from a bucket.
A deployment's time is the newest `LastModified` among its objects (ties broken by name).

- `keep` = N: deployments outside the newest N are candidates;
- `older_than_days` = X: deployments older than X days at the run's logical time are candidates;
  with both set, a candidate must satisfy both;
- `min_keep` (≥ 1): the newest Y are never deleted; `protect`: names or globs never deleted;
- objects directly under the prefix are never touched.

`plan` (lists the prefix, writes the plan and `deployments.jsonl` to the artifact store) → `guard`
(`max_delete_count`) → `approve` (a human, unless `approval` is `auto`) → `delete` (one task per plan
chunk; a deployment whose newest object changed since planning is skipped) → `audit` (`audit.json`, also after a failed task;
the run fails after recording if any key could not be deleted or a task failed). `dry_run`: plan, guard and audit only.

**Which targets.** A run with a `bucket` (typed in the form, in its conf, or the Variable's `bucket`)
cleans that one target. A run without one — a scheduled run, daily — cleans every target listed in the
Variable `s3ops_deploy_cleanup` (`targets`: a list of `{bucket, prefix, keep, older_than_days, min_keep,
protect, source}`): `targets` → `dispatch` starts one run of this DAG per target (mapped), each with its own plan,
guard, approval request and audit; the dispatching run's own `plan` and gate are skipped.

**Settings.** A value typed in the form > key of the Variable `s3ops_deploy_cleanup` > the built-in
default. A Variable value its schema refuses, or a bad target, fails `targets` once; a one-target run whose
settings the planner refuses (no `prefix`, neither `keep` nor `older_than_days`, a `protect` pattern that
can never match) fails `plan` once. Either before anything is listed, naming the setting.

Outputs: `<artifact root>/s3_deploy_cleanup/<run_id>/`. See docs/configuration.md and docs/deploy_cleanup.md.
"""


@dag(dag_id="s3_deploy_cleanup", schedule="@daily",
     # one run per target, each waiting for its approval, plus the dispatching run and the next day's
     **dag_args(max_active_runs=deploy_cleanup_tasks.MAX_ACTIVE_RUNS, tags=["s3", "deletion"], doc_md=DOC,
                params=params_of(deploy_cleanup_tasks.SETTINGS)))
def s3_deploy_cleanup():
    @task
    def targets() -> list[dict]:
        """Resolve and check the settings; the conf of one run per target, or [] when this run has a bucket."""
        return deploy_cleanup_tasks.targets(get_current_context())

    @task.short_circuit
    def has_bucket() -> bool:
        """This run cleans one target itself; otherwise skip its plan and gate (dispatch did the work)."""
        return deploy_cleanup_tasks.has_bucket(get_current_context())

    @task
    def plan() -> dict:
        """List the deployments, decide, and write the plan to the artifact store."""
        return deploy_cleanup_tasks.plan(get_current_context())

    confs = targets()
    TriggerDagRunOperator.partial(
        task_id="dispatch", trigger_dag_id="s3_deploy_cleanup", logical_date=None,
        trigger_run_id="{{ run_id }}__target{{ ti.map_index }}",
        # a run already under that name was not started by this dispatch (anyone who may trigger can create one
        # through the REST API ahead of the daily run, even dated to start years later): fail, naming it, rather
        # than skip the target silently and leave it to that run's conf
        skip_when_already_exists=False,
    ).expand(conf=confs)
    summary = plan()
    confs >> has_bucket() >> summary
    add_deletion_tasks(summary, recheck=deploy_cleanup_tasks.recheck)


s3_deploy_cleanup()
