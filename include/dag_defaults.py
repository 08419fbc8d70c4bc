"""What every s3ops DAG shares: ownership, retries with exponential backoff, params and settings.

Imported by the DAG files at parse time, so it stays tiny: no I/O, nothing heavy. Settings follow
:mod:`include.core.settings` (params > the DAG's Variable ``s3ops_<feature>`` > built-in defaults):
:func:`params_of` builds the trigger form from a DAG's settings; :func:`resolve_run_settings` (the first
task of a run) reads the Variable, merges, validates and writes ``settings.json`` to the run's artifact
folder; :func:`saved_run_settings` gives every later task exactly those values.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import Param

from include.core.settings import SETTINGS_FILE, Resolved, Settings, SettingsError

log = logging.getLogger(__name__)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "s3ops",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def params_of(settings: Settings) -> dict[str, Param]:
    """The trigger form: one Param per form setting, default null (= the deployment setting)."""
    return {name: Param(**spec) for name, spec in settings.param_specs().items()}


def _run_dir(context: Any) -> Any:
    from include.core import artifacts

    ti = context["ti"]
    return artifacts.run_dir(ti.dag_id, ti.run_id)


def resolve_run_settings(settings: Settings, context: Any) -> Resolved:
    """Merge this run's params with the Variable and the defaults, validate, record ``settings.json``.

    A bad or missing setting fails the task without retries (no retry fixes it), naming the setting and
    where its value came from."""
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import AirflowFailException

    from include.core import artifacts

    try:
        resolved = settings.resolve(context["params"], Variable.get(settings.variable, default=None))
    except SettingsError as exc:
        raise AirflowFailException(f"{settings.dag_id}: {exc}") from None
    artifacts.write_json(_run_dir(context) / SETTINGS_FILE, resolved.to_json())
    log.info("settings: %s", resolved.describe())
    return resolved


def saved_run_settings(context: Any) -> Resolved:
    """The settings the run's first task resolved (``settings.json`` in the run's artifact folder)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.core import artifacts

    path = _run_dir(context) / SETTINGS_FILE
    if not artifacts.exists(path):
        raise AirflowFailException(f"{artifacts.uri(path)} is missing: clear the run's first task so it resolves "
                                   "the settings again")
    return Resolved.from_json(artifacts.read_json(path))
