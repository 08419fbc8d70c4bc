"""The Airflow side of ``s3ops_housekeeping``: the ``prune`` task (the pruning itself is
:mod:`include.core.housekeeping`, no Airflow). The DAG file only wires it."""

from __future__ import annotations

from typing import Any

from include.core.times import logical_now

OWN_VARIABLE_DAG = "s3ops_housekeeping"


def prune(context: Any) -> dict[str, Any]:
    """Prune every DAG's run folders and index by its retention settings; returns the counts."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.core.artifacts import artifact_root
    from include.core.housekeeping import RetentionSettingError, dag_folders, housekeep, retention_from
    from include.core.notify import settings_variable
    from include.dag_defaults import deployment_setting

    now = logical_now(context)
    root = artifact_root()
    own = OWN_VARIABLE_DAG
    retention = {}
    try:
        fallback = retention_from(deployment_setting(own, "artifact_retention_days"),
                                  deployment_setting(own, "audit_retention_days"), f"the Airflow Variable {own!r}")
    except (RetentionSettingError, ValueError) as exc:
        raise AirflowFailException(str(exc)) from exc  # a retry reads the same setting
    broken: dict[str, str] = {}
    for dag_id in dag_folders(root):
        try:
            retention[dag_id] = retention_from(
                deployment_setting(dag_id, "artifact_retention_days", fallback.artifact_days),
                deployment_setting(dag_id, "audit_retention_days", fallback.audit_days),
                f"the Airflow Variable {settings_variable(dag_id)!r}")
        except (RetentionSettingError, ValueError) as exc:  # that DAG is skipped; the others are pruned
            broken[dag_id] = str(exc)
    report = housekeep(root, retention, now=now, dry_run=bool(context["params"]["dry_run"]), skip=set(broken))
    if broken:
        raise AirflowFailException("not pruned: " + "; ".join(f"{d}: {why}" for d, why in broken.items()))
    return {"dags": {d["dag_id"]: {k: v for k, v in d.items() if k != "dag_id"} for d in report["dags"]},
            **{k: v for k, v in report.items() if k != "dags"}}
