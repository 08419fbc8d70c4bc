"""s3ops_housekeeping: keep the artifact store bounded (prune old run folders, keep audits longer, index)."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import Param, dag, get_current_context, task

from include.dag_defaults import DEFAULT_ARGS

DOC_MD = """
### Keep the artifact store bounded

Daily, for every DAG folder under the artifact root (local or `s3://`):

- run folders whose newest file is older than `artifact_retention_days` (default **30**) are removed;
  a run that deleted something keeps `audit.json` and `plan.json` until `audit_retention_days`
  (default **400**), then goes too;
- the run index the S3 Ops pages read (`<root>/_index/`) loses the same runs; runs written before the
  index existed are indexed; days before yesterday are rolled up into one file per day.

Both settings are read per DAG from its deployment-settings Variable (`s3ops_upload`, `s3ops_retention`, …),
then from this DAG's Variable `s3ops_housekeeping`, then the defaults. A value that is not a whole number
of days from 1 to 36500 fails the run naming the key and the Variable. `dry_run` reports without removing.
See `docs/configuration.md`.
"""


@dag(
    dag_id="s3ops_housekeeping",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"dry_run": Param(False, type="boolean", title="Dry run",
                             description="Report what would be removed; remove nothing.")},
    doc_md=DOC_MD,
    tags=["s3ops", "housekeeping"],
)
def s3ops_housekeeping() -> None:
    @task
    def prune() -> dict:
        """Prune every DAG's run folders and index by its retention settings; returns the counts."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.core.artifacts import artifact_root
        from include.core.housekeeping import RetentionSettingError, dag_folders, housekeep, retention_from
        from include.core.notify import settings_variable
        from include.dag_defaults import deployment_setting

        context = get_current_context()
        now = context.get("logical_date") or context["dag_run"].run_after
        root = artifact_root()
        own = "s3ops_housekeeping"
        retention = {}
        try:
            fallback = retention_from(deployment_setting(own, "artifact_retention_days"),
                                      deployment_setting(own, "audit_retention_days"), f"the Airflow Variable {own!r}")
            for dag_id in dag_folders(root):
                retention[dag_id] = retention_from(
                    deployment_setting(dag_id, "artifact_retention_days", fallback.artifact_days),
                    deployment_setting(dag_id, "audit_retention_days", fallback.audit_days),
                    f"the Airflow Variable {settings_variable(dag_id)!r}")
        except (RetentionSettingError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from exc  # a retry reads the same setting
        report = housekeep(root, retention, now=now, dry_run=bool(context["params"]["dry_run"]))
        return {"dags": {d["dag_id"]: {k: v for k, v in d.items() if k != "dag_id"} for d in report["dags"]},
                **{k: v for k, v in report.items() if k != "dags"}}

    prune()


s3ops_housekeeping()
