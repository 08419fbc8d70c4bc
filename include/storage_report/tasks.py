"""The Airflow side of the storage report: what each task of ``s3_storage_report`` does.

The DAG file only wires these. Everything bulky goes to the run's artifact folder
(``<root>/s3_storage_report/<run_id>/``): ``buckets.json`` (list_buckets), ``report.json``
(aggregate), ``report.csv|.html|.txt`` (publish). XCom carries shard descriptors (key *ranges*, never
key lists), per-range totals and small summaries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from include.core import artifacts
from include.core.times import logical_now
from include.storage_report import inventory
from include.storage_report import render as report_render
from include.storage_report import summarize as storage_report
from include.storage_report.pricing import load_prices
from include.storage_report.settings import SETTINGS

log = logging.getLogger(__name__)

DAG_ID = SETTINGS.dag_id


def _fail(message: str) -> Exception:
    """A task failure without retries: the message is the whole story."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _run_dir(run_id: str) -> Any:
    return artifacts.run_dir(DAG_ID, run_id)


class Clients:
    """One client per (service, region), from the run's AWS connection."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._made: dict[tuple[str, str], Any] = {}

    def s3(self, region: str | None) -> Any:
        from include.aws.client import client_from_connection

        key = ("s3", region or "us-east-1")
        if key not in self._made:
            self._made[key] = client_from_connection(self.conn_id, region_name=key[1], mode="adaptive")
        return self._made[key]

    def cloudwatch(self, region: str | None) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        key = ("cloudwatch", region or "us-east-1")
        if key not in self._made:
            hook = AwsBaseHook(aws_conn_id=self.conn_id, client_type="cloudwatch")
            self._made[key] = hook.get_client_type(region_name=key[1])
        return self._made[key]


def _as_bucket_error(context: Any) -> storage_report.ErrorText:
    """How a failed request of one bucket ends this try of the task. A 4xx is that bucket's error at once
    (a retry would get the same answer). A 5xx, a dropped connection or an answer botocore cannot parse
    raises, so that Airflow retries the task with backoff; on its last try it too becomes that bucket's
    error, so the report still comes out with every other bucket (``fail_on_bucket_error`` then fails the
    run after publishing), as the command line does."""
    ti = context["ti"]
    last_try = ti.try_number > ti.max_tries  # Airflow's own test: no retry is left
    return storage_report.final_bucket_error if last_try else storage_report.bucket_error


def _settings(context: Any) -> Any:
    """The settings ``list_buckets`` resolved for this run (``settings.json``)."""
    from include.dag_defaults import saved_run_settings

    return saved_run_settings(context)


def list_buckets(context: Any) -> dict[str, Any]:
    """Resolve the run's settings; visible buckets matching ``buckets``/``regions``, with creation date and
    region → buckets.json."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from include.aws.client import S3AccessError, check_access
    from include.dag_defaults import resolve_run_settings

    params, run_id = resolve_run_settings(SETTINGS, context), context["run_id"]

    try:  # an unknown connection would silently fall back to the host's default credentials
        BaseHook.get_connection(params["aws_conn_id"])
    except AirflowNotFoundException:
        raise _fail(f"Airflow connection {params['aws_conn_id']!r} is not defined: create it or set aws_conn_id") from None
    clients = Clients(params["aws_conn_id"])
    client = clients.s3("us-east-1")  # CreationDate with us-east-1 semantics
    try:
        check_access(client)
    except S3AccessError as exc:
        raise _fail(f"{exc} (connection {params['aws_conn_id']!r})") from None
    buckets = storage_report.list_buckets(client, params["buckets"], params["regions"],
                                          as_bucket_error=_as_bucket_error(context))
    artifacts.write_json(_run_dir(run_id) / "buckets.json", buckets)
    unreadable = [b["name"] for b in buckets if b["error"]]
    log.info("%d buckets to report (%d unreadable: %s)", len(buckets), len(unreadable), ", ".join(unreadable) or "-")
    return {"bucket_count": len(buckets), "unreadable": len(unreadable)}


def plan_shards(context: Any) -> list[dict[str, Any]]:
    """Shard descriptors for ``summarize_shard``: never more than ``[core] max_map_length``."""
    from airflow.sdk import conf

    params, run_id = _settings(context), context["run_id"]
    buckets = artifacts.read_json(_run_dir(run_id) / "buckets.json")
    clients = Clients(params["aws_conn_id"])
    max_shards = conf.getint("core", "max_map_length")
    as_bucket_error = _as_bucket_error(context)
    if params["source"] == "inventory":
        planned = inventory.plan(clients.s3, buckets, max_shards=max_shards, include_versions=params["include_versions"],
                                 fallback=params["inventory_fallback"],
                                 listing_plan=partial(storage_report.plan, threshold=params["shard_objects"],
                                                      parts_per_bucket=params["shard_parts"],
                                                      include_versions=params["include_versions"],
                                                      as_bucket_error=as_bucket_error),
                                 as_bucket_error=as_bucket_error)
    else:
        planned = storage_report.plan(clients.s3, buckets, max_shards=max_shards, source=params["source"],
                                      threshold=params["shard_objects"], parts_per_bucket=params["shard_parts"],
                                      include_versions=params["include_versions"], as_bucket_error=as_bucket_error)
    parts = sum(len(s["parts"]) for s in planned)
    log.info("%d shards (%d key ranges) over %d buckets, limit %d", len(planned), parts, len(buckets), max_shards)
    return [dict(s) for s in planned]


def summarize_shard(context: Any, shard: dict[str, Any]) -> list[dict[str, Any]]:
    """Totals of every key range in ``shard`` (or its buckets' CloudWatch metrics)."""
    params = _settings(context)
    now = logical_now(context)
    clients = Clients(params["aws_conn_id"])
    as_bucket_error = _as_bucket_error(context)
    results = []
    for part in shard["parts"]:
        if params["source"] == "cloudwatch":
            result = storage_report.summarize_cloudwatch(clients.cloudwatch(part["region"]), part["bucket"], now,
                                                         storage_classes=params["storage_classes"],
                                                         as_bucket_error=as_bucket_error)
        else:  # a listing key range or a group of inventory data files
            result = inventory.summarize_any_part(clients.s3(part["region"]), part,
                                                  include_versions=params["include_versions"],
                                                  storage_classes=params["storage_classes"],
                                                  as_bucket_error=as_bucket_error)
        results.append(result)
    return results


def aggregate(context: Any, shard_results: Iterable[list[dict[str, Any]]]) -> dict[str, Any]:
    """Merge every range's totals per bucket, price them → report.json; returns the totals."""
    params, run_id = _settings(context), context["run_id"]
    buckets = artifacts.read_json(_run_dir(run_id) / "buckets.json")
    results = [r for shard in shard_results or () for r in shard or ()]
    try:
        prices = load_prices(params["pricing"])
    except ValueError as exc:
        raise _fail(str(exc)) from None
    report = storage_report.build_report(
        buckets, results, prices=prices, size_unit=params["size_unit"], source=params["source"],
        include_versions=params["include_versions"], generated_at=datetime.now(UTC),
        date_format=params["date_format"], show_time=params["show_time"], patterns=params["buckets"],
        regions=params["regions"],
    )
    path = _run_dir(run_id) / "report.json"
    artifacts.write_json(path, report)
    return {**report["totals"], "report_uri": artifacts.uri(path)}


def publish(context: Any) -> dict[str, Any]:
    """report.csv, report.html and report.txt next to report.json; the table goes to the log too.
    With ``fail_on_bucket_error`` the run fails afterwards if any bucket could not be read."""
    params, run_id = _settings(context), context["run_id"]
    folder = _run_dir(run_id)
    report = artifacts.read_json(folder / "report.json")
    table = report_render.render_table(report)
    artifacts.write_text(folder / "report.txt", table)
    artifacts.write_text(folder / "report.csv", report_render.render_csv(report))
    artifacts.write_text(folder / "report.html", report_render.render_html(report))
    log.info("storage report\n%s", table)
    totals = report["totals"]
    failed = [f"{b['name']} ({b['error']})" for b in report["buckets"] if b["error"]]
    if failed and params["fail_on_bucket_error"]:
        raise _fail(f"{len(failed)} bucket(s) could not be read (report published): {'; '.join(failed)}")
    return {"report_uri": artifacts.uri(folder / "report.json"), "bucket_count": totals["bucket_count"],
            "object_count": totals["object_count"], "total_bytes": totals["total_bytes"]}
