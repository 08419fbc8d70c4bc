"""PutObject of a local file through AWS's Common Runtime S3 client (``awscrt``), configured from botocore.

The CRT client is what the AWS CLI v2 and Mountpoint for S3 use: native code for HTTP, TLS, SigV4
signing, retries (5xx, SlowDown, dropped connections: up to 5 retries with exponential backoff),
parallel multipart upload above a threshold (AbortMultipartUpload when it fails) and bounded buffer
memory. This module writes none of that; it only tells the CRT client what botocore already knows:

- the bucket's URL (scheme, host, path prefix), from a presigned URL botocore builds for the bucket
  (so endpoint rules, ``endpoint_url`` and the addressing style stay botocore's decision);
- the signing region, and the credentials through s3transfer's maintained CRT credentials wrapper
  (refreshable credentials keep refreshing);
- how to verify TLS, as botocore resolved it (:func:`tls_verify_of`): the CA bundle of the Airflow
  connection's ``verify`` extra, the profile's ``ca_bundle`` or ``AWS_CA_BUNDLE``, else certifi's (what
  botocore trusts, not the system's store), or no verification.

A request header ``x-amz-checksum-crc64nvme`` is the whole object's checksum: a single PUT carries
it, and a multipart upload sends it with ``x-amz-checksum-type: FULL_OBJECT`` on
CompleteMultipartUpload, where S3 checks it against every byte it received. ``If-None-Match`` is
forwarded to the PUT or to CompleteMultipartUpload alike.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's smallest part (but the last)
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")
_CRT_THREAD = threading.local()


@dataclass(frozen=True)
class Answer:
    """S3's answer to one upload: the HTTP status, the final response's headers (lower-case names), and
    for an error the S3 error code and message (or the CRT's own error when no response came back)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    code: str = ""
    message: str = ""

    @property
    def error(self) -> str:
        return f"{self.code}: {self.message}".strip(": ") if self.code or self.message else f"HTTP {self.status}"


@dataclass(frozen=True)
class BucketURL:
    """Where botocore sends requests for a bucket: ``https://b.s3.eu-west-1.amazonaws.com/`` or ``http://127.0.0.1:9000/b/``."""

    scheme: str
    host: str  # the Host header, with the port when there is one
    path: str  # ends with "/"; the key (percent-encoded like botocore does) follows

    @classmethod
    def of(cls, client: Any, bucket: str) -> BucketURL:
        probe = "s3ops-probe"
        url = urlsplit(client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": probe}, ExpiresIn=60))
        if not url.path.endswith("/" + probe):
            raise ValueError(f"cannot tell the URL of bucket {bucket!r} from {url.scheme}://{url.netloc}{url.path}")
        return cls(url.scheme, url.netloc, url.path[: -len(probe)])

    def target(self, key: str) -> str:
        return self.path + quote(key, safe="/~")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"


def credentials_from_connection(conn_id: str) -> Any:
    """The botocore credentials of an Airflow AWS connection (refreshable ones keep refreshing)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type="s3").get_session().get_credentials()


def credentials_from_args(*, profile: str | None = None) -> Any:
    """The botocore credentials of a profile or the environment (the command line)."""
    from include.aws.client import cli_session

    return cli_session(profile).get_credentials()


def crt_credentials(credentials: Any) -> Any:
    """The CRT credentials provider for botocore credentials. Static ones are handed over once; refreshable
    ones (assumed roles, SSO, instance profiles) go through s3transfer's maintained wrapper, which asks
    botocore on every request (a call into Python per request: not worth paying for keys that never change)."""
    from awscrt.auth import AwsCredentialsProvider
    from botocore.credentials import Credentials

    if type(credentials) is Credentials:  # exactly the static class: any subclass may refresh
        frozen = credentials.get_frozen_credentials()
        if frozen.access_key and frozen.secret_key:  # the CRT refuses an empty key: each request says so instead
            return AwsCredentialsProvider.new_static(frozen.access_key, frozen.secret_key, frozen.token)
    from s3transfer.crt import BotocoreCRTCredentialsWrapper  # only here: importing s3transfer costs ~15 ms

    return BotocoreCRTCredentialsWrapper(credentials).to_crt_credentials_provider()


class CrtPutter:
    """One CRT S3 client per bucket and process, shared by every thread (it is thread-safe)."""

    def __init__(self, client: Any, credentials: Any, bucket: str, *, part_size: int, threshold: int,
                 throughput_gbps: float, memory_limit: int | None = None) -> None:
        from awscrt.io import ClientTlsContext, TlsContextOptions
        from awscrt.s3 import S3Client, S3RequestTlsMode

        self.bucket = BucketURL.of(client, bucket)
        if problem := proxy_problem(client, self.bucket.url):
            raise ValueError(problem)
        self.pid = os.getpid()  # its threads are this process's: a forked child cannot use it
        region = signing_region(client)
        tls_options = None
        if self.bucket.scheme == "https":
            ctx = TlsContextOptions()
            verify = tls_verify_of(client)
            if verify is False:  # as the botocore client does (verify=False): the deployment chose it
                ctx.verify_peer = False
            else:
                folder = os.path.isdir(verify)
                ctx.override_default_trust_store_from_path(ca_dirpath=verify if folder else None,
                                                           ca_filepath=None if folder else verify)
            tls_options = ClientTlsContext(ctx).new_connection_options()
        self.client = S3Client(
            bootstrap=_bootstrap(), region=region,
            credential_provider=crt_credentials(credentials),
            tls_mode=S3RequestTlsMode.ENABLED if self.bucket.scheme == "https" else S3RequestTlsMode.DISABLED,
            tls_connection_options=tls_options, part_size=max(part_size, MIN_PART),
            multipart_upload_threshold=max(threshold, MIN_PART), throughput_target_gbps=throughput_gbps,
            memory_limit=memory_limit,
        )

    def start(self, key: str, path: str, size: int, *, crc64nvme: str, if_none_match: bool,
              done: Callable[[Answer], None], progress: Callable[[int], None] | None = None) -> Any:
        """Start uploading ``path`` to ``key`` (one PUT, or a parallel multipart upload from the threshold on)
        and return the request at once (``cancel()`` ends it: ``done`` then gets a status 0 answer); ``done``
        gets S3's final answer, on a CRT thread. Never raises for an S3 or network error: it is in the
        answer. ``progress`` (bytes sent since its last call, on a CRT thread) is a call into Python per
        report: worth it for big files only."""
        if os.getpid() != self.pid:  # the request would wait for ever on threads the fork left behind
            raise RuntimeError(f"this CRT client was made in process {self.pid}, before a fork: make a new one "
                               f"in process {os.getpid()}")
        from awscrt.http import HttpHeaders, HttpRequest
        from awscrt.s3 import S3RequestType

        headers = HttpHeaders([("Host", self.bucket.host), ("Content-Length", str(size)),
                               ("Content-Type", "application/octet-stream"), ("x-amz-checksum-crc64nvme", crc64nvme)])
        if if_none_match:
            headers.add("If-None-Match", "*")
        got: dict[str, Any] = {}

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            keep_thread_state()
            got["status"], got["headers"] = status_code, headers

        def on_done(error: BaseException | None = None, status_code: int | None = None,
                    error_headers: list[tuple[str, str]] | None = None, error_body: bytes | None = None,
                    **_: Any) -> None:
            try:
                keep_thread_state()
                if error is None:
                    answer = Answer(int(got.get("status", 200)), {k.lower(): v for k, v in got.get("headers", [])})
                else:
                    answer = _failure(error, status_code, error_headers, error_body)
            except Exception as exc:  # noqa: BLE001 - an answer must arrive whatever happened: the caller waits for it
                answer = Answer(0, {}, type(exc).__name__, str(exc))
            done(answer)

        return self.client.make_request(
            type=S3RequestType.PUT_OBJECT, request=HttpRequest("PUT", self.bucket.target(key), headers),
            send_filepath=path, on_headers=on_headers, on_done=on_done,
            on_progress=None if progress is None else functools.partial(_progressed, progress),
        )

    def put_file(self, key: str, path: str, size: int, *, crc64nvme: str, if_none_match: bool) -> Answer:
        """:meth:`start` and wait for the answer."""
        answers: queue.SimpleQueue[Answer] = queue.SimpleQueue()
        self.start(key, path, size, crc64nvme=crc64nvme, if_none_match=if_none_match, done=answers.put)
        return answers.get()


#: the environment variables the CRT's native code reads a proxy from, per scheme (and NO_PROXY); the first
#: set wins, lower case before upper case, as in botocore (urllib's getproxies): both checked with awscrt 0.38
PROXY_VARIABLES = {"https": ("https_proxy", "HTTPS_PROXY"), "http": ("http_proxy", "HTTP_PROXY")}


def proxy_problem(client: Any, url: str) -> str | None:
    """Why the CRT client would not reach ``url`` the way the botocore ``client`` does, or None.

    awscrt's S3Client (0.38) takes no proxy option: its signature has none. Its native code reads
    ``HTTP_PROXY``/``HTTPS_PROXY`` (and ``NO_PROXY``) from the environment, as botocore does. So a proxy in
    the environment reaches both clients, while one in the connection's ``config_kwargs`` (``proxies``) reaches
    botocore alone: the uploads would go around it (or fail to connect), so that is refused, naming the fix.
    botocore keeps its proxies in its endpoint's HTTP session (not public): read defensively."""
    config: Any = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_proxy_config", None)
    wanted = config.proxy_url_for(url) if hasattr(config, "proxy_url_for") else None
    if not wanted:
        return None
    scheme = urlsplit(url).scheme
    names = PROXY_VARIABLES.get(scheme, PROXY_VARIABLES["https"])
    found = next((n for n in names if os.environ.get(n)), None)
    if found and _proxy_address(os.environ[found]) == _proxy_address(wanted):
        return None
    return (f"the connection sends {scheme} requests to the bucket through the proxy {_proxy_address(wanted)}, which "
            f"the CRT client that uploads cannot be given (awscrt reads a proxy only from the environment"
            f"{f', where {found} names another' if found else ''}): set {names[1]} in the workers' environment "
            "instead (both clients use it) and remove proxies from the connection's config_kwargs")


def _proxy_address(url: str) -> str:
    """A proxy URL as compared and shown: with a scheme (botocore adds http:// to a bare host:port), without
    a user or password (never shown) or a trailing slash. The user and password end at the last ``@``: a
    password left unencoded with a ``#``, ``?`` or ``/`` in it ends a URL's host part for urlsplit, which then
    took part of the password for the host or the port (shown, or quoted by the ``ValueError`` of ``.port``)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "http", url.strip()
    address = re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0]  # no user, password, path or query
    parts = urlsplit(f"{scheme}://{address}")
    try:
        port = parts.port
    except ValueError:  # not a number: shown as written (it is past the password)
        return f"{scheme.lower()}://{address.lower()}"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def signing_region(client: Any) -> str:
    """The region the CRT client signs uploads for: the botocore ``client``'s (us-east-1 when it has none)."""
    return client.meta.region_name or "us-east-1"


def tls_verify_of(client: Any) -> Literal[False] | str:
    """How the botocore ``client`` verifies TLS: False (not at all) or the path of the CA bundle it trusts, as
    botocore resolved the ``verify`` it was made with (an Airflow connection's ``verify`` extra), the
    profile's ``ca_bundle``, ``AWS_CA_BUNDLE`` and ``REQUESTS_CA_BUNDLE``, and with none of them certifi's
    bundle (``botocore.httpsession.get_cert_path``). The CRT client must trust exactly that: with only
    ``AWS_CA_BUNDLE`` it refused an endpoint behind a private CA given in the connection, while botocore's
    HeadBucket passed, and every upload failed; left to the system's trust store it could refuse (or accept)
    what botocore accepts (or refuses). botocore keeps the value in its endpoint's HTTP session (not
    public), so it is read defensively, with the environment when it cannot be."""
    from botocore.httpsession import get_cert_path

    verify = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_verify", None)
    if not isinstance(verify, bool | str) or verify == "":
        verify = os.environ.get("AWS_CA_BUNDLE") or os.environ.get("REQUESTS_CA_BUNDLE") or True
    if verify is False:
        return False
    return verify if isinstance(verify, str) else str(get_cert_path(True))  # get_cert_path(True): certifi's


@functools.cache
def _bootstrap() -> Any:
    """The process's CRT event-loop group (one thread per core) and DNS resolver, shared by every
    :class:`CrtPutter`: no threads started per client, and the Python thread states they keep
    (:func:`keep_thread_state`) are as many as the cores. The threads then live as long as the process.
    (Unlocked: two threads making the first client at the same instant could make one group each.)"""
    from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup

    group = EventLoopGroup()
    return ClientBootstrap(group, DefaultHostResolver(group))


# A forked child gets the group but not its threads (a request on them would wait for ever): it makes its own.
os.register_at_fork(after_in_child=_bootstrap.cache_clear)


def keep_thread_state() -> None:
    """Keep the calling CRT thread's Python thread state for the thread's life (once per thread, then free).

    awscrt enters Python from its own threads through ``PyGILState_Ensure``/``Release``: four times per request
    (headers, progress, finish, shutdown). Those threads are not Python's, so every Ensure created a thread state
    and every Release destroyed it (an mmap and munmap of its frame stack, the runtime's lock): ~10 % of the
    upload's CPU on small files. One Ensure left outstanding keeps the state, as CPython's C-API documentation
    advises for foreign threads that call in repeatedly (python/cpython#146219); awscrt has no option for it.
    The state of a finished thread is freed with the interpreter, as a daemon thread's is. Only an
    optimisation: where ctypes cannot do it, nothing is kept and nothing fails. (To re-check when Python
    3.14 is allowed: finalisation changes again; PEP 788's ``PyThreadState_Ensure`` is the proper API.)"""
    if getattr(_CRT_THREAD, "kept", False):  # lives in the thread state: set only once it is kept
        return
    _CRT_THREAD.kept = True  # tried once per thread, whatever happens
    with contextlib.suppress(Exception):  # no ctypes (a build without libffi), another interpreter
        import ctypes

        ctypes.pythonapi.PyGILState_Ensure()


def _progressed(progress: Callable[[int], None], sent: int) -> None:
    keep_thread_state()
    progress(sent)


def _failure(exc: BaseException, status_code: int | None, error_headers: list[tuple[str, str]] | None,
             error_body: bytes | None) -> Answer:
    """An S3 error response (status, code, message), or the CRT's error when none came back (status 0)."""
    status = int(status_code or 0)
    body = error_body or b""
    headers = {k.lower(): v for k, v in (error_headers or [])}
    code = _CODE.search(body)
    message = _MESSAGE.search(body)
    if status:
        return Answer(status, headers, code[1].decode(errors="replace") if code else "",
                      message[1].decode(errors="replace") if message else "")
    return Answer(0, {}, str(getattr(exc, "name", type(exc).__name__)), str(getattr(exc, "message", exc)))
