"""S3 client construction and the few S3 calls every pipeline shares.

Clients always use botocore's retry modes with enough attempts that throttling (503 SlowDown) and
dropped connections are retried, not fatal: 10 in all, or AWS's own ``AWS_MAX_ATTEMPTS`` where it is
set. In Airflow, credentials come from a connection (``aws_default`` unless overridden); on the command
line, from a profile or the environment.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from botocore.config import Config

from include.core.errors import error_code

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from botocore.config import _RetryDict
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef

log = logging.getLogger(__name__)

#: ``standard`` for ordinary work; ``adaptive`` (client-side rate limiting) for heavy listing.
RetryMode = Literal["standard", "adaptive"]
RETRY_MODES: tuple[RetryMode, ...] = ("standard", "adaptive")


DEFAULT_MAX_ATTEMPTS = 10


def _max_attempts() -> int:
    """AWS's own ``AWS_MAX_ATTEMPTS`` (attempts in all, the first one included) when set, else
    ``DEFAULT_MAX_ATTEMPTS``; read when a client is made, so a bad value is the caller's one-line error."""
    raw = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    if not raw:
        return DEFAULT_MAX_ATTEMPTS
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValueError(f"AWS_MAX_ATTEMPTS must be a whole number of attempts, 1 or more (the first one "
                         f"included), not {raw!r}: fix or unset it")
    return int(raw)
DELETE_BATCH = 1000  # DeleteObjects' limit per request


class S3AccessError(RuntimeError):
    """Credentials are missing or wrong, or the endpoint is unreachable: one clear line for the user."""


def client_config(mode: str = "standard", max_attempts: int | None = None, pool: int = 32) -> Config:
    if mode not in RETRY_MODES:
        raise ValueError(f"retry mode {mode!r} is not one of {RETRY_MODES}")
    attempts = _max_attempts() if max_attempts is None else max_attempts
    retries: _RetryDict = {"mode": mode, "total_max_attempts": attempts}  # total, first try included
    return Config(
        retries=retries,
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=pool,
        s3={"addressing_style": "path"},
    )


def client_from_connection(
    conn_id: str = "aws_default", *, region_name: str | None = None, mode: str = "standard", pool: int = 32
) -> S3Client:
    """A boto3 S3 client from an Airflow connection (its ``endpoint_url`` extra is honoured, and its
    ``config_kwargs``: ``proxies`` and the like, under this project's retries, timeouts, pool and addressing).
    A config given to the hook replaces the connection's ``config_kwargs`` whole: its proxies were dropped."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from botocore.exceptions import BotoCoreError

    config = client_config(mode, pool=pool)
    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    try:  # the connection's config_kwargs become botocore's Config here (a key it does not know: TypeError)
        theirs = hook.config
    except (TypeError, ValueError, AttributeError, BotoCoreError) as exc:
        raise ValueError(f"the Airflow connection {conn_id!r} cannot be read as an AWS connection ({exc}): its "
                         "extra config_kwargs must be an object of botocore Config options (endpoint_url and "
                         "region_name belong in the extra itself): fix or remove them") from None
    return hook.get_client_type(region_name=region_name, config=theirs.merge(config))


def client_from_args(
    *, profile: str | None = None, endpoint_url: str | None = None, region_name: str | None = None,
    mode: str = "standard", pool: int = 32, max_attempts: int | None = None, session: Any = None,
) -> S3Client:
    """An S3 client for the command line (no Airflow needed). ``session``: a session from
    :func:`cli_session` to make it from (its loaded service model makes a second client cheap); by default
    a new one."""
    if session is None:
        session = cli_session(profile)
    return cast("S3Client", session.create_client("s3", region_name=region_name, endpoint_url=endpoint_url,
                                                  config=client_config(mode, max_attempts, pool=pool)))


def cli_session(profile: str | None = None, region_name: str | None = None) -> Any:
    """A botocore session for a profile (or the environment), in ``region_name`` if given (credential
    providers that call STS use it). botocore's own, not boto3's: nothing here uses what boto3 adds, and
    importing boto3 costs every command ~50 ms of CPU."""
    import botocore.session

    session = botocore.session.Session(profile=profile)
    if region_name:
        session.set_config_variable("region", region_name)
    return session


def access_problem(exc: BaseException) -> str | None:
    """One line for a failed request that means the credentials are missing or wrong, or the endpoint is
    unreachable; None for any other failure."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return ("no AWS credentials found: set the Airflow connection (aws_default or the run's aws_conn_id), "
                "or AWS_PROFILE / AWS_ACCESS_KEY_ID for the command line")
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach the S3 endpoint {exc.kwargs.get('endpoint_url')}: is it up?"
    code = error_code(exc) or "?"
    if not isinstance(exc, ClientError):
        return None
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        return f"S3 refused the credentials ({code}): check the connection's login/password"
    if code in ("AccessDenied", "403"):  # the credentials are known to S3; they lack this permission
        operation = getattr(exc, "operation_name", "the request")
        message = exc.response.get("Error", {}).get("Message") or "Access Denied"
        return (f"S3 refused {operation} ({code}: {message}): the credentials lack the permission for it "
                f"({_PERMISSIONS.get(operation, 'the IAM action of that request')}), or are wrong")
    return None


#: The IAM action each probe needs, for the message when it is refused.
_PERMISSIONS = {"ListBuckets": "s3:ListAllMyBuckets", "HeadBucket": "s3:ListBucket on the bucket"}


def check_access(client: S3Client, bucket: str | None = None) -> None:
    """Fail fast, in one line, when credentials are missing/wrong or the endpoint is unreachable. With a
    ``bucket``, by HeadBucket on it (what a command on one bucket needs anyway: s3:ListBucket), so a
    least-privileged role without s3:ListAllMyBuckets can run it; else by ListBuckets."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if bucket is not None:
            client.head_bucket(Bucket=bucket)
        else:
            client.list_buckets(MaxBuckets=1)
    except (BotoCoreError, ClientError) as exc:
        problem = access_problem(exc)
        if problem is None and bucket is not None and error_code(exc) in ("404", "NoSuchBucket"):
            problem = f"bucket {bucket!r} does not exist: check --bucket"
        if problem is None:
            raise
        raise S3AccessError(problem) from exc


#: Characters XML 1.0 cannot carry at all (C0 controls but tab/LF/CR, surrogates, U+FFFE/U+FFFF), plus CR,
#: which every XML parser reads back as LF (a key with CR is deleted, but confirmed under another name).
_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(key: str) -> bool:
    """Whether ``key`` survives a trip through an XML body unchanged (DeleteObjects' request and answer)."""
    return _XML_UNSAFE.search(key) is None


def versioning_state(client: S3Client, bucket: str) -> str:
    """``Enabled``, ``Suspended``, ``Disabled`` (never enabled) or ``unknown (<error>)`` when the
    credentials may not ask (GetBucketVersioning is then reported, not guessed)."""
    from botocore.exceptions import ClientError

    try:
        return client.get_bucket_versioning(Bucket=bucket).get("Status") or "Disabled"
    except ClientError as exc:
        err = exc.response.get("Error", {})
        return f"unknown (GetBucketVersioning: {err.get('Code', '?')}: {err.get('Message', '')})"


def head_version(client: S3Client, bucket: str, key: str, version_id: str) -> tuple[str, str]:
    """What version ``version_id`` of ``key`` is now: ``("object", etag)``, ``("delete_marker", "")``,
    ``("gone", "")``, or ``("unknown", why)`` when S3 would not say (no permission, an error)."""
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as exc:
        meta = exc.response.get("ResponseMetadata", {})
        if meta.get("HTTPHeaders", {}).get("x-amz-delete-marker") == "true":  # 405 for a marker's version id
            return "delete_marker", ""
        status = meta.get("HTTPStatusCode")
        if status == 404:
            return "gone", ""
        return "unknown", f"HeadObject: {error_code(exc) or status}"
    return "object", str(head.get("ETag", "")).strip('"')


@dataclass
class DeleteResult:
    """What one delete request did for the ``objects`` it was sent: keys deleted, per-key errors
    (key, version_id, code, message), and the keys sent without a version id for which S3 added a
    delete marker instead (a versioned bucket: the data stays)."""

    deleted: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    objects: list[dict[str, str]] = field(default_factory=list)
    markers_added: list[str] = field(default_factory=list)


def _delete_batch(client: S3Client, bucket: str, items: list[dict[str, str]]) -> DeleteResult:
    """One DeleteObjects request (``items`` all :func:`xml_safe`); ``ETag`` makes a key conditional."""
    # The dicts are ObjectIdentifierTypeDef (Key, optional VersionId/ETag) by construction.
    resp = client.delete_objects(Bucket=bucket, Delete={"Objects": cast("list[ObjectIdentifierTypeDef]", items),
                                                        "Quiet": False})
    deleted = resp.get("Deleted", [])
    return DeleteResult(
        deleted=[d["Key"] for d in deleted],
        markers_added=[d["Key"] for d in deleted if d.get("DeleteMarker") and not d.get("VersionId")],
        errors=[
            {"key": e.get("Key", ""), "version_id": e.get("VersionId", ""), "code": e.get("Code", ""),
             "message": e.get("Message", "")}
            for e in resp.get("Errors", [])
        ],
        requests=1, objects=list(items),
    )


def _delete_one(client: S3Client, bucket: str, obj: dict[str, str]) -> DeleteResult:
    """DeleteObject for a key DeleteObjects' XML cannot carry: the key travels in the URL."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": obj["Key"]}
    if obj.get("VersionId"):
        kwargs["VersionId"] = obj["VersionId"]
    if obj.get("ETag"):
        kwargs["IfMatch"] = obj["ETag"]
    result = DeleteResult(requests=1, objects=[obj])
    try:
        answer = client.delete_object(**kwargs)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error_code(exc) or str(status or "")
        code = {"412": "PreconditionFailed", "404": "NoSuchKey"}.get(code, code)
        result.errors.append({"key": obj["Key"], "version_id": obj.get("VersionId", ""), "code": code,
                              "message": err.get("Message", "")})
    else:
        result.deleted.append(obj["Key"])
        if answer.get("DeleteMarker") and not obj.get("VersionId"):
            result.markers_added.append(obj["Key"])
    return result


def delete_objects(
    client: S3Client, bucket: str, objects: Iterable[dict[str, str]], *, batch: int = DELETE_BATCH
) -> Iterator[DeleteResult]:
    """Delete ``{"Key", ["VersionId"], ["ETag"]}`` objects with DeleteObjects, ``batch`` per request.

    ``ETag`` (as S3 lists it) makes the delete conditional (S3 ``If-Match``): an object rewritten since
    comes back as a ``PreconditionFailed`` error and stays. A key XML 1.0 cannot carry unchanged (a
    control character, CR) would make S3 refuse the whole batch, or answer under another name: such
    keys go one by one with DeleteObject instead (the key in the URL), so they never block the rest.

    Yields one result per request so callers can record progress as it happens. Per-key ``Errors``
    are returned, not raised: one failing key never abandons the rest. An empty input sends nothing.
    """
    if not 1 <= batch <= DELETE_BATCH:
        raise ValueError(f"batch must be 1..{DELETE_BATCH}, got {batch}")
    chunk: list[dict[str, str]] = []
    for obj in objects:
        if not xml_safe(obj["Key"]):
            yield _delete_one(client, bucket, obj)
            continue
        chunk.append(obj)
        if len(chunk) == batch:
            yield _delete_batch(client, bucket, chunk)
            chunk = []
    if chunk:
        yield _delete_batch(client, bucket, chunk)
