"""s3_deploy_cleanup: keep the newest N deployment folders under a prefix, or prune by age keeping at least Y."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import Param, dag, get_current_context, task

from include.dag_defaults import DEFAULT_ARGS, approval_gate_params, aws_conn_param
from include.deletion.airflow import add_deletion_tasks

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
chunk; a deployment whose newest object changed since planning is skipped) → `audit` (`audit.json`;
the run fails after recording if any key could not be deleted). `dry_run`: plan, guard and audit only.

Outputs: `<artifact root>/s3_deploy_cleanup/<run_id>/`. See docs/deploy_cleanup.md.
"""


@dag(
    dag_id="s3_deploy_cleanup",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=2,  # a newer run can start while an older plan waits for approval, and supersede it
    tags=["s3ops", "s3", "deletion"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
    params={
        "bucket": Param(type="string", minLength=3, title="Bucket",
                        description="Bucket that holds the deployment folders."),
        "prefix": Param("", type="string", pattern="^$|/$", title="Prefix",
                        description="Folder holding the deployments, ending with '/' (e.g. deploys/); "
                                    "empty = the bucket root. Objects directly under it are never touched."),
        "keep": Param(None, type=["null", "integer"], minimum=0, title="Keep newest N",
                      description="Every deployment except the newest N is a candidate. Empty = no count limit "
                                  "(then set older_than_days)."),
        "older_than_days": Param(None, type=["null", "number"], minimum=0, title="Older than (days)",
                                 description="Only deployments older than this many days (at the run's logical "
                                             "time) are candidates. With keep, both must hold."),
        "min_keep": Param(1, type="integer", minimum=1, title="Always keep newest",
                          description="The newest min_keep deployments are never deleted, whatever else is set."),
        "protect": Param([], type="array", items={"type": "string", "minLength": 1}, title="Protect",
                         description="Deployment names or globs (release-1.*) that are never deleted."),
        "approval": Param("auto", type="string", enum=["required", "auto"], title="Approval",
                          description="required: a human approves the plan (Browse → Required Actions). "
                                      "auto: delete without asking when the plan is within the guards."),
        **approval_gate_params(),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Plan, guard and audit only: nothing is deleted."),
        "max_delete_count": Param(10000, type="integer", minimum=0, title="Max objects to delete",
                                  description="Refuse the whole run (nothing deleted) if the plan deletes more "
                                              "objects (or versions) than this."),
        "include_versions": Param(False, type="boolean", title="Include versions",
                                  description="Also delete every noncurrent version and delete marker in the "
                                              "deleted deployments (versioned buckets)."),
        "aws_conn_id": aws_conn_param(),
    },
)
def s3_deploy_cleanup():
    @task
    def plan() -> dict:
        """Check the params, list the deployments, decide, and write the plan to the artifact store."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.aws.client import client_from_connection
        from include.deletion.airflow import run_dir_of
        from include.deploy_cleanup import plan as deploy_cleanup

        ctx = get_current_context()
        params = ctx["params"]
        try:
            settings = deploy_cleanup.settings_from_params(params)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc  # a bad param is not worth a retry
        now = ctx.get("logical_date") or ctx["dag_run"].run_after
        client = client_from_connection(params["aws_conn_id"], mode="adaptive")
        return deploy_cleanup.plan_cleanup(client, params["bucket"], settings, run_dir_of(ctx), now)

    add_deletion_tasks(plan(), recheck="include.deploy_cleanup.plan:make_recheck")


s3_deploy_cleanup()
