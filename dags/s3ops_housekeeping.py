"""s3ops_housekeeping: keep the artifact store bounded (prune old run folders, keep audits longer, index)."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from include.dag_defaults import dag_args, params_of
from include.housekeeping import tasks as housekeeping_tasks

DOC_MD = """
### Keep the artifact store bounded

Daily, for the folder of every s3ops DAG under the artifact root (local or `s3://`; any other folder
there is kept and listed in the result, `foreign_folders_kept`):

- run folders whose newest file is older than `artifact_retention_days` (default **30**) are removed;
  a run that deleted something keeps `audit.json` and `plan.json` until `audit_retention_days`
  (default **400**), then goes too;
- the run index the S3 Ops pages read (`<root>/_index/`) loses the same runs; runs written before the
  index existed are indexed; days before yesterday are rolled up into one file per day.

Both settings are read per DAG from its deployment-settings Variable (`s3ops_upload`, `s3ops_retention`, …),
then from this DAG's Variable `s3ops_housekeeping`, then the defaults. A value that is not a whole number
of days from 1 to 36500 fails the run naming the key and the Variable (that DAG's folder is left
alone, the others are pruned). `s3ops_housekeeping` is checked
whole, like every DAG's Variable: an unknown key (a typo) fails the run naming it, before anything is
removed. `dry_run` reports without removing. See `docs/configuration.md`.
"""


@dag(
    dag_id="s3ops_housekeeping",
    schedule="@daily",
    **dag_args(
        tags=["housekeeping"],
        doc_md=DOC_MD,
        params=params_of(housekeeping_tasks.SETTINGS),
    ),
)
def s3ops_housekeeping() -> None:
    @task
    def prune() -> dict:
        """Prune every DAG's run folders and index by its retention settings; returns the counts."""
        return housekeeping_tasks.prune(get_current_context())

    prune()


s3ops_housekeeping()
