"""docker-compose.yaml, checked without Docker (CI has no daemon): it parses, everything it references
exists, the environment it gives Airflow is what the code reads and agrees with the services it
points at, and the images are the pinned versions.

The file is read the way ``docker compose`` reads it: YAML with anchors and merge keys, then
``${VAR…}`` interpolated from ``.env.example`` (the documented starting point of ``.env``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_REQUIREMENTS = ROOT / "docker/requirements-airflow.txt"
# Directories whose Python code the deployed containers run (what "the code reads" means here).
CODE_DIRS = ("dags", "include", "plugins", "config")

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker compose reads them (single quotes: literal; double quotes: stripped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


class MissingVariable(LookupError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        value = env.get(name)
        if op in (":-", "-"):
            use_default = value is None or (op == ":-" and value == "")
            return interpolate(arg, env) if use_default else str(value)
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise MissingVariable(f"{name}: {arg}")
            return value
        return value or ""

    return _VAR.sub(sub, text)


def resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(x, env) for x in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    return resolve(raw, env)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    return {name: {} for name in deps} if isinstance(deps, list) else deps


def environment(service: dict[str, Any]) -> dict[str, str]:
    envs = service.get("environment") or {}
    if isinstance(envs, list):
        envs = dict(item.partition("=")[::2] for item in envs)
    return {k: "" if v is None else str(v) for k, v in envs.items()}


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run an Airflow component (scheduler, workers, …) in the s3ops image."""
    return {
        name: svc for name, svc in services.items()
        if environment(svc).get("AIRFLOW__CORE__EXECUTOR") and (svc.get("build") or {}).get("target") == "airflow"
    }


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if m:
            found[m.group(1).lower().replace("_", "-")] = m.group(2)
    return found


# ------------------------------------------------------------------------------------ structure


def test_the_file_parses_and_every_required_variable_has_an_example(raw: dict[str, Any], env: dict[str, str]) -> None:
    required = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text()) if m.group(2) in (":?", "?")}
    assert required, "credentials come from .env: expected ${VAR:?…} references"
    assert required <= set(env), f"missing from .env.example: {sorted(required - set(env))}"
    for name in required:  # and the file still fails loudly without them
        with pytest.raises(MissingVariable, match=name):
            resolve(raw, {k: v for k, v in env.items() if k != name})


def test_every_referenced_service_and_volume_exists(compose: dict[str, Any], services: dict[str, Any]) -> None:
    volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        refs = set(depends_on(svc))
        refs |= {svc["extends"]["service"]} if isinstance(svc.get("extends"), dict) else set()
        refs |= {v.split(":")[0] for v in svc.get("volumes_from", [])}
        refs |= {svc["network_mode"].split(":", 1)[1]} if str(svc.get("network_mode", "")).startswith("service:") else set()
        refs |= {link.split(":")[0] for link in svc.get("links", [])}
        assert refs <= set(services), f"{name} refers to unknown services {sorted(refs - set(services))}"
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in volumes, f"{name} mounts the undeclared volume {source}"


def test_every_dependency_waits_for_health_or_completion(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dep, spec in depends_on(svc).items():
            condition = spec.get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dep, condition)
            target = services[dep]
            if condition == "service_healthy":
                assert target.get("healthcheck", {}).get("test"), f"{name} waits for {dep} to be healthy: no healthcheck"
            else:
                assert is_one_shot(target), f"{name} waits for {dep} to complete, but {dep} restarts"
            # `docker compose up` without a profile must not need a service that only a profile starts
            if not svc.get("profiles"):
                assert not target.get("profiles"), f"{name} (always on) depends on {dep} (profile {target['profiles']})"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    long_running = {n: s for n, s in services.items() if not is_one_shot(s) and "debug" not in s.get("profiles", [])}
    assert {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "airflow-worker", "mysql", "s3"} <= set(long_running)
    for name, svc in long_running.items():
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    one_shots = {n for n, s in services.items() if is_one_shot(s) and "debug" not in s.get("profiles", [])}
    assert one_shots == {"airflow-init", "s3ops-seed"}


def test_the_worker_scales_and_the_demo_is_a_profile(services: dict[str, Any], env: dict[str, str]) -> None:
    worker = services["airflow-worker"]
    assert worker["command"] == "celery worker"
    # N copies of one service: no fixed container name, no host port they would fight over
    assert "container_name" not in worker and "ports" not in worker
    # the worker healthcheck pings the Celery node named after the container
    assert 'celery@${HOSTNAME}' in " ".join(worker["healthcheck"]["test"])
    for demo in ("mysql", "s3", "s3ops-seed"):
        assert services[demo].get("profiles") == ["demo"], demo
    assert env.get("COMPOSE_PROFILES") == "demo", ".env.example should start the self-contained demo"
    assert services["mysql"]["image"].startswith("mysql:8")


# ------------------------------------------------------------------------------- environment


def test_airflow_runs_on_celery_with_the_services_it_points_at(services: dict[str, Any]) -> None:
    components = airflow_services(services)
    commands = {str(svc.get("command")) for svc in components.values()}
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "celery worker"} <= commands
    pg = environment(services["postgres"])
    for name, svc in components.items():
        e = environment(svc)
        assert e["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        db = urlsplit(e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        backend = urlsplit(e["AIRFLOW__CELERY__RESULT_BACKEND"])
        for url in (db, backend):
            assert (url.hostname, url.username, url.password, url.path.lstrip("/")) == (
                "postgres", pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]), name
        assert db.scheme == "postgresql+psycopg2" and backend.scheme == "db+postgresql"
        assert urlsplit(e["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
        api = urlsplit(e["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert api.hostname == "airflow-apiserver" and api.path == "/execution/"
        assert f"{api.port}" in {p.rsplit(":", 1)[-1] for p in services["airflow-apiserver"]["ports"]}
        for secret in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
            assert e[secret], f"{name}: {secret} must be set (and equal) in every component"
        assert e["PYTHONPATH"] == "/opt/airflow"
        mounts = {m.split(":")[1] for m in svc["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts, name
        assert e["S3OPS_ARTIFACT_ROOT"].startswith("s3://") or any(
            m.split(":")[1] == e["S3OPS_ARTIFACT_ROOT"] and not m.startswith((".", "/")) for m in svc["volumes"]
        ), f"{name}: the artifact root must be a volume every component shares (or s3://)"
    # every component gets the same environment (one anchor), the worker adds only its shutdown switch
    envs = [{k: v for k, v in environment(s).items() if k != "DUMB_INIT_SETSID"} for s in components.values()]
    common = envs[0].keys() & set.intersection(*(set(e) for e in envs))
    assert all(e[k] == envs[0][k] for e in envs for k in common)


def test_every_airflow_setting_exists_and_every_s3ops_variable_is_read_by_the_code(services: dict[str, Any]) -> None:
    from airflow.configuration import conf

    described = conf.configuration_description
    code = "\n".join(p.read_text() for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))
    # names in string literals; a literal ending in "_" is a prefix the code completes (S3OPS_UPLOAD_<PARAM>)
    read_names = set(re.findall(r"[\"'](S3OPS_[A-Z0-9_]+)[\"']", code))
    for name, svc in services.items():
        for key in environment(svc):
            m = re.fullmatch(r"AIRFLOW__([A-Z_]+?)__([A-Z_]+)", key)
            if m:
                section, option = m.group(1).lower(), m.group(2).lower()
                assert option in described.get(section, {}).get("options", {}), f"{name}: {key} is not an Airflow setting"
            elif key.startswith("S3OPS_"):
                assert any(key == lit or (lit.endswith("_") and key.startswith(lit)) for lit in read_names), (
                    f"{name} passes {key}, which no code reads")
    # the containers get dags/, include/, plugins/ and config/ only: nothing there may need scripts/ or tests/
    assert not re.search(r"^\s*(from|import)\s+(scripts|tests)\b", code, flags=re.M)
    e = environment(services["airflow-worker"])
    # what include/core/artifacts.py reads, and the deployment settings (Variables s3ops_<feature>)
    assert {"S3OPS_ARTIFACT_ROOT", "S3OPS_ARTIFACT_CONN_ID", "AIRFLOW_VAR_S3OPS_UPLOAD",
            "AIRFLOW_VAR_S3OPS_STORAGE_REPORT"} <= set(e)
    from include.storage_report.settings import SETTINGS as REPORT
    from include.upload.settings import SETTINGS as UPLOAD

    for settings in (REPORT, UPLOAD):  # the compose file's Variables are valid settings
        settings.parse_variable(re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", e[f"AIRFLOW_VAR_{settings.variable.upper()}"]))


def test_connections_parse_and_point_at_the_demo_services(services: dict[str, Any]) -> None:
    from airflow.models.connection import Connection

    e = environment(services["airflow-worker"])
    aws = Connection.from_json(e["AIRFLOW_CONN_AWS_DEFAULT"], conn_id="aws_default")
    assert aws.conn_type == "aws"
    endpoint = urlsplit(aws.extra_dejson["endpoint_url"])
    assert endpoint.hostname == "s3"
    assert f"{endpoint.port}" in {p.rsplit(":", 1)[-1] for p in services["s3"]["ports"]}
    assert "--port" in DOCKERFILE.read_text() and f'"{endpoint.port}"' in DOCKERFILE.read_text()

    mysql = Connection.from_json(e["AIRFLOW_CONN_MYSQL_DEFAULT"], conn_id="mysql_default")
    server = environment(services["mysql"])
    assert (mysql.conn_type, mysql.host, mysql.port) == ("mysql", "mysql", 3306)
    assert (mysql.login, mysql.password, mysql.schema) == (
        server["MYSQL_USER"], server["MYSQL_PASSWORD"], server["MYSQL_DATABASE"])
    # the seeder writes the same database the connection reads, and only to the demo S3 server
    seed = services["s3ops-seed"]
    seed_env = environment(seed)
    assert seed["entrypoint"] == ["python", "-m", "include.seed"]
    assert seed["command"][seed["command"].index("--endpoint-url") + 1] == "http://s3:5000"
    assert (seed_env["S3OPS_MYSQL_HOST"], seed_env["S3OPS_MYSQL_USER"], seed_env["S3OPS_MYSQL_PASSWORD"],
            seed_env["S3OPS_MYSQL_DATABASE"]) == (mysql.host, mysql.login, mysql.password, mysql.schema)
    upload_dir = seed["command"][seed["command"].index("--upload-dir") + 1]
    assert any(m.endswith(f":{upload_dir}") for m in services["airflow-worker"]["volumes"])


def test_init_migrates_creates_the_admin_and_the_s3_pool(services: dict[str, Any]) -> None:
    from config.airflow_local_settings import S3_POOL

    init = services["airflow-init"]
    e = environment(init)
    assert e["_AIRFLOW_DB_MIGRATE"] == "true" and e["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert e["_AIRFLOW_WWW_USER_PASSWORD"]
    script = "\n".join(init["command"])
    assert re.search(rf"airflow pools set {S3_POOL} \"\d+\"", script), script
    assert "airflow connections get" in script


# ------------------------------------------------------------------------------------- images


def test_images_are_the_pinned_versions(services: dict[str, Any]) -> None:
    lock = pins(ROOT / "requirements.txt")
    dev_lock = pins(ROOT / "requirements-dev.txt")  # moto, the s3server image's server, is a test tool
    dockerfile = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile, flags=re.M)
    assert ("apache/airflow:" + lock["apache-airflow"], "airflow") in bases
    assert f'"moto[server]=={dev_lock["moto"]}"' in dockerfile
    assert f'"awscrt=={lock["awscrt"]}"' in dockerfile  # the server's checksums import it
    added = pins(IMAGE_REQUIREMENTS)
    assert "apache-airflow" not in added, "the image's own Airflow must not be reinstalled"
    assert added and all(lock.get(name) == version for name, version in added.items()), (
        {n: (v, lock.get(n)) for n, v in added.items() if lock.get(n) != v})
    # every provider the project pins itself (requirements.in) is in the image at that version
    assert {n for n in pins(ROOT / "requirements.in") if n.startswith("apache-airflow-providers-")} <= set(added)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in dockerfile  # keeps pip from touching Airflow
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for m in re.finditer(r"^COPY\s+(?:--\S+\s+)*(.+)\s+\S+$", dockerfile, flags=re.M):
        for source in m.group(1).split():
            assert (ROOT / source).is_file(), f"the Dockerfile copies {source}, which is not in the repository"
            assert not any(source == i or source.startswith(i.rstrip("/") + "/") for i in ignored), source
    for name, svc in services.items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image!r}"
    assert services["airflow-worker"]["image"].endswith(":" + lock["apache-airflow"])
    assert services["s3"]["image"].endswith(":" + dev_lock["moto"])


def test_secrets_stay_out_of_git(raw: dict[str, Any]) -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0, ".env must be git-ignored"
    assert not re.search(r"AKIA[0-9A-Z]{16}", ENV_EXAMPLE.read_text() + COMPOSE.read_text())
    # every password and secret comes from .env; the only literal is the demo S3 server's dummy key
    for name, svc in raw["services"].items():
        for key, value in environment(svc).items():
            if re.search(r"PASSWORD|SECRET|FERNET", key) and value != "s3ops-local-secret":
                assert "${" in value, f"{name}: {key} is written in the compose file, not taken from .env"
        assert "${S3OPS_MYSQL_PASSWORD" in environment(svc).get("AIRFLOW_CONN_MYSQL_DEFAULT", "${S3OPS_MYSQL_PASSWORD")


# -------------------------------------------------------------------------- the cluster policy


def test_s3ops_tasks_take_a_slot_of_the_s3_pool() -> None:
    from datetime import datetime

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from config.airflow_local_settings import S3_POOL, task_policy

    with DAG("s3ops_like", schedule=None, start_date=datetime(2026, 1, 1), tags=["s3ops", "s3"]):
        plain = EmptyOperator(task_id="plain")
        chosen = EmptyOperator(task_id="chosen", pool="other")
    with DAG("someone_else", schedule=None, start_date=datetime(2026, 1, 1), tags=["etl"]):
        foreign = EmptyOperator(task_id="foreign")
    for task in (plain, chosen, foreign):
        task_policy(task)
    assert (plain.pool, chosen.pool, foreign.pool) == (S3_POOL, "other", "default_pool")


# ------------------------------------------------------------------------------------ the seeder


def test_the_seeder_finds_the_control_api_only_where_there_is_one(s3_server: Any, s3: Any) -> None:
    from include.seed import control_api
    from scripts.stack import free_port

    control = control_api(s3_server.endpoint_url)
    assert control is not None
    s3.create_bucket(Bucket="compose-seeder-control")
    control("POST", "seed", {"bucket": "compose-seeder-control",
                             "objects": [{"key": "old", "size": 3, "last_modified": "2020-01-02T00:00:00Z"}]})
    head = s3.head_object(Bucket="compose-seeder-control", Key="old")
    assert (head["ContentLength"], head["LastModified"].year) == (3, 2020)
    assert control_api(f"http://127.0.0.1:{free_port()}") is None
