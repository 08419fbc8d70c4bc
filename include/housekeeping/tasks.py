"""The Airflow side of ``s3ops_housekeeping``: the ``prune`` task (the pruning itself is
:mod:`include.core.housekeeping`, no Airflow). The DAG file only wires it."""

from __future__ import annotations

from typing import Any

from include.core.times import logical_now
from include.housekeeping.settings import SETTINGS


def prune(context: Any) -> dict[str, Any]:
    """Prune every DAG's run folders and index by its retention settings; returns the counts.

    This DAG's settings are resolved first, as every DAG's first task does (the whole Variable checked,
    ``settings.json`` written, the notification targets kept for when the Variable breaks); each other
    DAG's retention keys are read from its own Variable, falling back to these."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.core.artifacts import artifact_root
    from include.core.housekeeping import RetentionSettingError, dag_folders, housekeep, retention_from
    from include.core.notify import settings_variable
    from include.dag_defaults import deployment_setting, resolve_run_settings

    resolved = resolve_run_settings(SETTINGS, context)
    now = logical_now(context)
    root = artifact_root()
    # checked against the schema already; retention_from keeps audits at least as long as artifacts
    fallback = retention_from(resolved["artifact_retention_days"], resolved["audit_retention_days"],
                              f"the Airflow Variable {SETTINGS.variable!r}")
    retention = {SETTINGS.dag_id: fallback}
    broken: dict[str, str] = {}
    for dag_id in dag_folders(root):
        if dag_id == SETTINGS.dag_id:
            continue
        try:
            retention[dag_id] = retention_from(
                deployment_setting(dag_id, "artifact_retention_days", fallback.artifact_days),
                deployment_setting(dag_id, "audit_retention_days", fallback.audit_days),
                f"the Airflow Variable {settings_variable(dag_id)!r}")
        except (RetentionSettingError, ValueError) as exc:  # that DAG is skipped; the others are pruned
            broken[dag_id] = str(exc)
    report = housekeep(root, retention, now=now, dry_run=bool(resolved["dry_run"]), skip=set(broken))
    if broken:
        raise AirflowFailException("not pruned: " + "; ".join(f"{d}: {why}" for d, why in broken.items()))
    return {"dags": {d["dag_id"]: {k: v for k, v in d.items() if k != "dag_id"} for d in report["dags"]},
            **{k: v for k, v in report.items() if k != "dags"}}
