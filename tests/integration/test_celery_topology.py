"""Scale-out proof without Docker: the docker compose topology (PostgreSQL, Redis, CeleryExecutor,
scheduler, dag-processor, api-server, two Celery workers) as local processes."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.celery_topology import CeleryTopology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROBE_DAG = textwrap.dedent(
    '''
    """Probe: a mapped task over shards, like the storage report's summarize_shard."""
    import time
    from datetime import datetime

    from airflow.sdk import dag, task


    @dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["probe"])
    def topology_probe():
        @task
        def plan_shards() -> list[int]:
            return list(range(8))

        @task
        def summarize_shard(shard: int) -> int:
            time.sleep(2)
            return shard * shard

        @task
        def aggregate(parts) -> int:
            return sum(parts)

        aggregate(summarize_shard.expand(shard=plan_shards()))


    topology_probe()
    '''
)


def test_mapped_tasks_spread_over_two_celery_workers(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "topology_probe.py").write_text(PROBE_DAG)
    with CeleryTopology(dags_folder=dags) as topo:
        run = topo.run("topology_probe", {}, run_id="probe-1")
        tis = topo.task_instances("topology_probe", "probe-1")
        assert run["state"] == "success", topo.logs()
        shards = [ti for ti in tis if ti["task_id"] == "summarize_shard"]
        assert len(shards) == 8
        hosts = Counter(ti["hostname"] for ti in shards)
        assert set(hosts) == {"w1", "w2"}, hosts
