"""The S3 client made from an Airflow connection (include.aws.client.client_from_connection): what the
connection's config_kwargs may change, and a clear error when they cannot be botocore's Config (no server:
the client is only made)."""

from __future__ import annotations

import json

import pytest

from include.aws.client import client_from_connection


def _connection(monkeypatch, conn_id: str, config_kwargs) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "aws", "login": "AKIAEXAMPLEKEY", "password": "example-secret-key",
        "extra": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9",
                  "config_kwargs": config_kwargs}}))


@pytest.mark.parametrize("config_kwargs", [{"endpoint_url": "http://127.0.0.1:9"}, "retries=3", ["proxies"],
                                           {"retries": {"mode": "no-such-mode"}}])
def test_config_kwargs_that_are_not_a_botocore_config_fail_in_one_line_naming_the_connection(
        monkeypatch, config_kwargs):
    """The hook's own config had replaced the connection's config_kwargs whole, so these were never read; read
    now, they raised botocore's or Python's own error (``Got unexpected keyword argument 'endpoint_url'``,
    ``'str' object has no attribute 'get'``), naming neither the connection nor the fix, in every pipeline."""
    _connection(monkeypatch, "aws_odd", config_kwargs)
    with pytest.raises(ValueError, match=r"^the Airflow connection 'aws_odd' cannot be read as an AWS connection "
                                         r"\(.+\): its extra config_kwargs .* fix or remove them$"):
        client_from_connection("aws_odd")


def test_config_kwargs_apply_under_the_projects_retries_timeouts_pool_and_addressing(monkeypatch):
    _connection(monkeypatch, "aws_tuned", {
        "retries": {"total_max_attempts": 1}, "s3": {"addressing_style": "virtual"}, "max_pool_connections": 2,
        "connect_timeout": 600, "read_timeout": 1, "proxies": {"http": "http://proxy.example.com:3128"}})
    config = client_from_connection("aws_tuned", pool=77).meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 10}
    assert config.s3 == {"addressing_style": "path"}
    assert (config.max_pool_connections, config.connect_timeout, config.read_timeout) == (77, 10, 120)
    assert config.proxies == {"http": "http://proxy.example.com:3128"}  # theirs, where the project sets nothing
