"""The fast PUT path: its SigV4 signature is botocore's, its URL is botocore's, and it stands aside
whenever only botocore will do (no server needed: nothing here leaves the process)."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from include.aws.client import client_from_args
from include.upload.fast_put import FastPut, bucket_target, sign_v4

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: any request that did leave would fail
BODY = b"berlin,2026-11-22T08:00:00Z,21.5\n" * 10


def botocore_authorization(url: str, headers: dict[str, str], creds: Credentials, region: str,
                           moment: datetime, monkeypatch: pytest.MonkeyPatch) -> str:
    request = AWSRequest(method="PUT", url=url, data=BODY, headers=headers)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: moment)
    S3SigV4Auth(creds, "s3", region).add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("key", ["berlin/2026/11/22/08/05-temp.dat", "odd name/with+plus/ü=é~x.dat"])
@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
def test_signature_equals_botocores(key, token, monkeypatch):
    moment = datetime(2026, 11, 22, 8, 5, 7, tzinfo=timezone.utc)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    sha = hashlib.sha256(BODY)
    path = "/my-bucket/" + quote(key, safe="/~")
    headers = {
        "host": "127.0.0.1:9000", "content-md5": base64.b64encode(hashlib.md5(BODY).digest()).decode(),
        "x-amz-checksum-sha256": base64.b64encode(sha.digest()).decode(), "x-amz-sdk-checksum-algorithm": "SHA256",
        "if-none-match": "*", "x-amz-content-sha256": sha.hexdigest(), "x-amz-date": amz_date,
    }
    if token:
        headers["x-amz-security-token"] = token
    ours = sign_v4("PUT", path, headers, sha.hexdigest(), access_key=creds.access_key, secret_key=creds.secret_key,
                   region="eu-central-1", service="s3", amz_date=amz_date)
    theirs = botocore_authorization(f"http://127.0.0.1:9000{path}", headers, creds, "eu-central-1", moment, monkeypatch)
    assert ours == theirs


def test_signing_key_is_cached_per_day_and_scope():
    cache: dict[Any, bytes] = {}
    args = {"access_key": "AK", "secret_key": "SK", "region": "us-east-1", "service": "s3"}
    one = sign_v4("PUT", "/b/k", {"host": "h"}, "e3b0", amz_date="20261122T000000Z", key_cache=cache, **args)
    assert len(cache) == 1
    assert sign_v4("PUT", "/b/k", {"host": "h"}, "e3b0", amz_date="20261122T000000Z", key_cache=cache, **args) == one
    sign_v4("PUT", "/b/k", {"host": "h"}, "e3b0", amz_date="20261123T000000Z", key_cache=cache, **args)
    assert len(cache) == 2


def test_bucket_target_is_botocores_url_without_sending_anything():
    client = client_from_args(endpoint_url=UNREACHABLE, region_name="eu-central-1")
    target = bucket_target(client, "my-bucket")
    assert target is not None
    assert (target.url, target.region, target.service) == (f"{UNREACHABLE}/my-bucket", "eu-central-1", "s3")


def test_bucket_target_follows_virtual_hosted_addressing():
    client = boto3.session.Session(aws_access_key_id="AK", aws_secret_access_key="SK").client(
        "s3", region_name="eu-west-1", config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 0}))
    target = bucket_target(client, "my-bucket")
    assert target is not None and target.url == "https://my-bucket.s3.eu-west-1.amazonaws.com/"
    fast = FastPut.for_bucket(client, "my-bucket")
    assert fast is not None and (fast.host_header, fast.port, fast.base_path) == ("my-bucket.s3.eu-west-1.amazonaws.com", 443, "")


def test_no_fast_path_for_unsigned_clients_or_when_turned_off(monkeypatch):
    unsigned = boto3.session.Session().client("s3", endpoint_url=UNREACHABLE, region_name="us-east-1",
                                              config=Config(signature_version=UNSIGNED))
    assert FastPut.for_bucket(unsigned, "b") is None
    signed = client_from_args(endpoint_url=UNREACHABLE, region_name="us-east-1")
    assert FastPut.for_bucket(signed, "b") is not None
    monkeypatch.setenv("S3OPS_FAST_PUT", "0")
    assert FastPut.for_bucket(signed, "b") is None


def test_no_fast_path_through_a_proxy(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    client = client_from_args(endpoint_url="http://s3.example.internal:9000", region_name="us-east-1")
    assert FastPut.for_bucket(client, "b") is None


def test_a_failed_attempt_is_no_answer_so_botocore_sends_it_again():
    fast = FastPut.for_bucket(client_from_args(endpoint_url=UNREACHABLE, region_name="us-east-1"), "b")
    assert fast is not None
    sha = hashlib.sha256(BODY).digest()
    md5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()
    assert fast.put("k.dat", BODY, md5_b64=md5, sha256=sha, if_none_match=True) is None


class ScriptedServer:
    """A local HTTP server that answers each request on a connection with the next scripted response
    (raw bytes; ``None`` closes the connection without answering). Records the requests it read."""

    def __init__(self, script: list[bytes | None], close_after: int | None = None) -> None:
        import socket
        import threading

        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_after = close_after  # close each connection after this many answers
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, conn: Any) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def _serve(self) -> None:
        while self.script:
            conn, _ = self.listener.accept()
            self.connections += 1
            answered = 0
            with conn:
                while self.script:
                    request = self._read_request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    reply = self.script.pop(0)
                    if reply is None:
                        break
                    conn.sendall(reply)
                    answered += 1
                    if self.close_after and answered >= self.close_after:
                        break

    def fast_put(self) -> FastPut:
        client = client_from_args(endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1")
        fast = FastPut.for_bucket(client, "b")
        assert fast is not None
        return fast


OK = (b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nx-amz-checksum-sha256: c2hh\r\nContent-Length: 0\r\n\r\n")


def put(fast: FastPut, key: str = "k.dat") -> Any:
    return fast.put(key, BODY, md5_b64="bWQ1", sha256=hashlib.sha256(BODY).digest(), if_none_match=True)


def test_keep_alive_connection_is_reused_and_the_echo_returned():
    server = ScriptedServer([OK, OK])
    fast = server.fast_put()
    first, second = put(fast, "a.dat"), put(fast, "b.dat")
    assert first.status == second.status == 200
    assert first.response == {"ETag": '"abc"', "ChecksumSHA256": "c2hh"}
    assert server.connections == 1
    request = server.requests[0]
    assert request.startswith(b"PUT /b/a.dat HTTP/1.1\r\n") and request.endswith(BODY)
    assert b"if-none-match: *\r\n" in request and b"authorization: AWS4-HMAC-SHA256 Credential=" in request


def test_a_keep_alive_connection_closed_by_the_server_is_retried_once_on_a_new_one():
    server = ScriptedServer([OK, None, OK])  # the second request finds its connection closed
    fast = server.fast_put()
    assert put(fast, "a.dat").status == 200
    assert put(fast, "b.dat").status == 200
    assert server.connections == 2 and [r.split(b" ")[1] for r in server.requests] == [b"/b/a.dat", b"/b/b.dat", b"/b/b.dat"]


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # framing it does not handle
    b"HTTP/1.1 200 OK\r\n\r\n",  # no Content-Length
    b"garbage\r\n\r\n",
])
def test_anything_unusual_is_no_answer(reply):
    server = ScriptedServer([reply])
    assert put(server.fast_put()) is None


def test_errors_are_answers_with_their_status_and_the_body_is_consumed():
    throttled = b"HTTP/1.1 503 Slow Down\r\nContent-Length: 12\r\n\r\n<Error/>    "
    server = ScriptedServer([throttled, OK])
    fast = server.fast_put()
    assert put(fast).status == 503
    assert put(fast).status == 200 and server.connections == 1  # the 503's body did not poison the connection
