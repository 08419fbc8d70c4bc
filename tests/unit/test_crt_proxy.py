"""The proxy check of the CRT client (include.aws.crt.proxy_problem): what it says names the proxy, never its
user or password, whatever characters the password holds (no server: botocore's client is only made)."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.config import Config

from include.aws.crt import proxy_problem

URL = "https://s3.example.com/bucket"


def _client(proxy: str):
    session = botocore.session.Session()
    return session.create_client("s3", region_name="us-east-1", endpoint_url="https://s3.example.com",
                                 aws_access_key_id="k", aws_secret_access_key="s",
                                 config=Config(proxies={"https": proxy}))


@pytest.fixture(autouse=True)
def _no_proxy_in_the_environment(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("password", ["Zq#Wk77", "Zq?Wk77", "Zq/Wk77", "Zq@Wk77", "Zq:Wk77", "31/4159", "Zq/8:Wk7"])
def test_a_password_in_the_proxy_url_is_never_shown_whatever_it_holds(password):
    """A password left unencoded (``#``, ``?``, ``/`` end the host part of a URL) made urlsplit take part of it
    for the host or the port: the refusal showed it, or ``.port`` raised ``ValueError`` quoting it, and
    either went to the task log and the failure mail."""
    problem = proxy_problem(_client(f"http://Usr:{password}@proxy.example.com:8080"), URL)
    assert problem is not None
    assert "through the proxy http://proxy.example.com:8080," in problem
    for part in ("Usr", "usr", "Zq", "zq", "Wk7", "wk7", "31", "4159"):
        assert part not in problem, part


def test_the_same_proxy_in_the_environment_passes_whatever_its_password_holds(monkeypatch):
    proxy = "http://user:se#cret@proxy.example.com:8080"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    assert proxy_problem(_client(proxy), URL) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://other:pw@proxy.example.com:3129")  # another port: another proxy
    problem = proxy_problem(_client(proxy), URL)
    assert problem is not None and "where HTTPS_PROXY names another" in problem and "pw" not in problem
    assert "cret" not in problem and "user" not in problem
