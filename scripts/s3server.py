"""Local S3-protocol server for the demo, tests and benchmarks: moto's server, plus a control API.

It is moto's own WSGI app (the same one ``moto_server`` runs) behind a thin middleware that adds
endpoints under ``/_s3ops/`` which real S3 does not have and tests need:

- ``POST /_s3ops/seed``: write objects straight into moto's backend (~30x faster than HTTP PUTs), with
  an optional ``last_modified`` so tests can build old data without waiting months.
- ``POST /_s3ops/touch``: set ``LastModified`` of existing objects (by key or prefix).
- ``POST /_s3ops/faults``: make the next N matching S3 requests fail (503 SlowDown, 500, or a dropped
  connection), to prove that clients retry; or refuse them (``denied``: 403 AccessDenied; ``conflict``:
  409 ConditionalRequestConflict, S3's answer to a write racing a conditional one on the same key). A fault
  matches an ``operation`` and/or a ``bucket`` (both optional).
- ``GET /_s3ops/stats`` / ``POST /_s3ops/stats/reset``: S3 requests served, by operation.
- ``POST /_s3ops/latency`` ``{"seconds": 0.03}``: every S3 request waits that long before it is
  answered (requests in parallel wait in parallel), so a benchmark sees the round trip a LIST page
  costs on AWS instead of loopback's ~0.1 ms. ``0`` turns it off; ``GET`` says what is set.
- ``POST /_s3ops/regions`` ``{"enforced": true}``: refuse a request signed for another region than its
  bucket's, as S3 does (400 ``AuthorizationHeaderMalformed`` with the bucket's region in
  ``x-amz-bucket-region``; a HEAD gets no body); moto takes any region. Off by default; ``GET`` says which.
- ``POST /_s3ops/listing-index`` ``{"enabled": true}``: answer ListObjectsV2 without a delimiter from a
  sorted index of the bucket's keys (:class:`ListingIndex`). moto sorts the whole bucket on every page
  (~1 s per page at 300,000 keys), which would hide any client's own cost; the index answers a page
  in about a millisecond. Off by default: the tests run against moto's own listing. ``GET`` says which.

and does what AWS documents where moto 5.2.5 does not (flexible checksums, see :class:`Checksums`):

- a ``x-amz-checksum-<algorithm>`` header on PutObject or UploadPart is checked against the body
  (400 ``BadDigest`` on a mismatch; moto stores the value unchecked) and kept with the object (moto
  keeps it only when ``x-amz-sdk-checksum-algorithm`` names the algorithm too);
- a full-object checksum header on CompleteMultipartUpload (``x-amz-checksum-type: FULL_OBJECT``) is
  checked against the parts being joined (400 ``BadDigest``, the upload stays open), and the answer
  carries ``ChecksumCRC64NVME``/``ChecksumType`` as S3's does. moto computes the stored checksum from
  the parts as they are (:func:`one_pass_checksums`): moto 5.2.5 checksummed a second joined
  copy of the object, seconds per GiB that S3 does not spend and only clients asking for a full-object
  checksum paid, and computed CRC32C as CRC32;
- a key over 1,024 bytes of UTF-8 is refused (400 ``KeyTooLongError``), as S3 refuses it; moto stores it;
- ListMultipartUploads says when each upload was started (moto answers 2010-11-10 for every upload),
  so "abandoned before this run" can be decided and tested.

And where moto 5.2.5 departs from what AWS documents for deletes, it behaves as AWS does:

- DeleteObjects honours the per-object ``ETag`` element (conditional delete, AWS since 2025-09-16):
  a key whose current ETag differs gets a ``PreconditionFailed`` error entry (``NoSuchKey`` when it is
  gone) and stays; moto would delete it. (A single DeleteObject's ``If-Match`` moto honours itself.)
- A DeleteObjects body that is not well-formed XML 1.0 (a key with a control character) is answered
  ``400 MalformedXML`` as S3 does, not moto's ``500`` (which clients would retry in vain).

Run: ``python -m scripts.s3server --port PORT`` (binds 127.0.0.1).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import threading
import time
import zlib
from bisect import bisect_left, bisect_right
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote

ACCOUNT_ID = "123456789012"

_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


def _operation(environ: dict[str, Any]) -> str:
    """A coarse S3 operation name for stats and fault matching (e.g. ``GET:list-type``)."""
    method = environ.get("REQUEST_METHOD", "")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    path = environ.get("PATH_INFO", "/")
    if method == "GET" and path.strip("/") == "":
        return "ListBuckets"
    is_bucket = path.strip("/").count("/") == 0
    if method == "GET" and "versions" in query:
        return "ListObjectVersions"
    if method == "GET" and "uploads" in query:
        return "ListMultipartUploads"
    if method == "GET" and is_bucket and "list-type" in query:
        return "ListObjectsV2"
    if method == "GET" and is_bucket and "location" in query:
        return "GetBucketLocation"
    if method == "GET" and is_bucket and "versioning" in query:
        return "GetBucketVersioning"
    if method == "GET" and is_bucket and not query:
        return "ListObjects"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "HEAD" and is_bucket:
        return "HeadBucket"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT" and is_bucket:
        return "PutBucket"
    if method == "PUT" and "partNumber" in query:
        return "UploadPart"
    if method == "PUT":
        return "PutObject"
    if method == "GET":
        return "GetObject"
    if method == "DELETE" and "uploadId" in query:
        return "AbortMultipartUpload"
    if method == "DELETE":
        return "DeleteObject"
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    return f"{method}:other"


class ControlMiddleware:
    """Adds the ``/_s3ops/`` control API and request accounting in front of moto's app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        # Each fault: {"operation": str|None, "bucket": str|None, "mode": "slowdown"|"error"|"drop"|"denied"|"conflict",
        # "remaining": int}
        self.faults: list[dict[str, Any]] = []
        self.initiated: dict[str, str] = {}  # upload id → when CreateMultipartUpload answered (ISO 8601 UTC)
        self.latency = 0.0  # seconds every S3 request waits before it is answered
        self.index: ListingIndex | None = None  # set while the listing index is enabled
        self.regions_enforced = False  # refuse requests signed for another region than the bucket's

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_s3ops/"):
            return self._control(path[len("/_s3ops/") :], environ, start_response)
        if path.startswith("/moto-api"):
            index = self.index
            if index is None:
                return self.app(environ, start_response)
            index.invalidate()  # a reset replaces every bucket: before and after, as for a write
            try:
                return self.app(environ, start_response)
            finally:
                index.invalidate()
        op = _operation(environ)
        fault = self._take_fault(op, environ.get("PATH_INFO", "/").strip("/").split("/", 1)[0])
        with self.lock:
            self.stats[op] += 1
            self.stats["total"] += 1
        if self.latency:
            time.sleep(self.latency)
        index = self.index
        if index is not None and environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            index.invalidate()  # before and after the write: a listing racing it cannot keep a stale index
            try:
                return self._serve(op, fault, environ, start_response)
            finally:
                index.invalidate()
        if index is not None and op == "ListObjectsV2" and fault is None:
            answer = index.list_objects_v2(environ, start_response)
            if answer is not None:
                return answer
        return self._serve(op, fault, environ, start_response)

    def _serve(self, op: str, fault: str | None, environ: dict[str, Any], start_response: Any) -> Any:
        if fault == "drop":
            # Close the socket without a response: the client sees a dropped connection.
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            raise ConnectionAbortedError("s3ops fault injection: connection dropped")
        if fault in ("slowdown", "error"):
            body = _SLOWDOWN if fault == "slowdown" else _INTERNAL
            status = "503 Slow Down" if fault == "slowdown" else "500 Internal Server Error"
            start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        if fault == "conflict":
            return _xml_error(start_response, "409 Conflict", "ConditionalRequestConflict",
                              "A conflicting operation occurred. If using PutObject you can retry the request.")
        if fault == "denied":
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(_DENIED)))])
            return [_DENIED]
        if self.regions_enforced and op not in ("ListBuckets", "PutBucket"):
            wrong = _wrong_region(environ)
            if wrong is not None:
                signed, region = wrong
                headers = [("Content-Type", "application/xml"), ("x-amz-bucket-region", region)]
                body = (b"" if environ.get("REQUEST_METHOD") == "HEAD" else
                        (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>'
                         f"<Message>The authorization header is malformed; the region '{signed}' is wrong; expecting "
                         f"'{region}'</Message><Region>{region}</Region></Error>").encode())
                start_response("400 Bad Request", [*headers, ("Content-Length", str(len(body)))])
                return [body]
        if op in ("PutObject", "CreateMultipartUpload") and _key_bytes(environ) > S3_KEY_BYTES:
            return _xml_error(start_response, "400 Bad Request", "KeyTooLongError", "Your key is too long")
        if op in ("PutObject", "UploadPart"):
            refusal = Checksums.check_body(environ)
            if refusal is not None:
                return _xml_error(start_response, *refusal)
        if op == "CreateMultipartUpload":
            if environ.get("HTTP_X_AMZ_CHECKSUM_TYPE"):
                environ["HTTP_X_AMZ_CHECKSUM_TYPE"] = environ["HTTP_X_AMZ_CHECKSUM_TYPE"].upper()
            return self._record_initiated(environ, start_response)
        if op == "ListMultipartUploads":
            return self._with_initiated(environ, start_response)
        if op == "CompleteMultipartUpload":
            return Checksums.complete(self.app, environ, start_response)
        if op == "DeleteObjects":
            return self._delete_objects(environ, start_response)
        return self.app(environ, start_response)

    def _record_initiated(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status, headers, body = _call(self.app, environ)
        found = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
        if status.startswith("200") and found:
            with self.lock:
                self.initiated[found[1].decode()] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return _reply(start_response, status, headers, body)

    def _with_initiated(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status, headers, body = _call(self.app, environ)

        def fix(upload: re.Match[bytes]) -> bytes:
            found = re.search(rb"<UploadId>([^<]+)</UploadId>", upload[0])
            when = self.initiated.get(found[1].decode()) if found else None
            if when is None:
                return upload[0]
            return re.sub(rb"<Initiated>[^<]*</Initiated>", f"<Initiated>{when}</Initiated>".encode(), upload[0])

        return _reply(start_response, status, headers, re.sub(rb"<Upload>.*?</Upload>", fix, body, flags=re.S))

    def _delete_objects(self, environ: dict[str, Any], start_response: Any) -> Any:
        """DeleteObjects as AWS documents it: per-object ``ETag`` preconditions, MalformedXML for a body
        XML 1.0 cannot parse. Objects that pass go to moto; the refused ones are added to its answer."""
        import io
        import xml.etree.ElementTree as ET

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return _xml_error(start_response, "400 Bad Request", "MalformedXML",
                              "The XML you provided was not well-formed or did not validate against our published schema")
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        refused: list[tuple[str, str, str]] = []
        backend = _backend()
        bucket = environ.get("PATH_INFO", "/").strip("/").split("/", 1)[0]
        try:
            backend.get_bucket(bucket)
        except Exception:  # noqa: BLE001 - no such bucket: moto answers that as S3 does
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        for obj in list(root.findall(f"{ns}Object")):
            etag = obj.findtext(f"{ns}ETag")
            if etag is None:
                continue
            key = obj.findtext(f"{ns}Key") or ""
            current = backend.get_object(bucket, key)  # the current version (None when gone)
            if current is None:
                refused.append((key, "NoSuchKey", "The specified key does not exist."))
            elif etag.strip().strip('"') != current.etag.strip('"'):
                refused.append((key, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"))
            else:
                continue
            root.remove(obj)
        errors = "".join(
            f"<Error><Key>{_xml_text(k)}</Key><Code>{c}</Code><Message>{m}</Message></Error>" for k, c, m in refused)
        if not refused:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        if root.find(f"{ns}Object") is None:  # every object refused: moto would call the body malformed
            answer = (f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="http://s3.amazonaws.com/doc/'
                      f'2006-03-01/">{errors}</DeleteResult>').encode()
            start_response("200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(answer)))])
            return [answer]
        if ns:
            ET.register_namespace("", ns[1:-1])  # keep S3's default namespace (no ns0: prefixes for moto)
        rewritten = ET.tostring(root, encoding="utf-8").replace(b"\r", b"&#13;")  # CR must stay CR
        environ = {**environ, "wsgi.input": io.BytesIO(rewritten), "CONTENT_LENGTH": str(len(rewritten))}
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers)
            return lambda data: None

        answer = b"".join(self.app(environ, capture))
        if captured["status"].startswith("200") and b"</DeleteResult>" in answer:
            answer = answer.replace(b"</DeleteResult>", errors.encode() + b"</DeleteResult>")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(answer)))])
        return [answer]

    def _take_fault(self, op: str, bucket: str) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault["remaining"] > 0 and fault.get("operation") in (None, op) and fault.get("bucket") in (None, bucket):
                    fault["remaining"] -= 1
                    return str(fault["mode"])
        return None

    def _control(self, what: str, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
            result = self._dispatch(what, environ.get("REQUEST_METHOD", "GET"), body)
            payload, status = json.dumps(result).encode(), "200 OK"
        except Exception as exc:  # noqa: BLE001 - the caller is a test: tell it exactly what was wrong
            payload, status = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(), "400 Bad Request"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    def _dispatch(self, what: str, method: str, body: dict[str, Any]) -> Any:
        if what == "stats" and method == "GET":
            with self.lock:
                return dict(self.stats)
        if what == "stats/reset":
            with self.lock:
                self.stats.clear()
            return {}
        if what == "faults":
            with self.lock:
                if body.get("mode", "off") == "off":
                    left = sum(f["remaining"] for f in self.faults)
                    self.faults.clear()
                    return {"cleared": left}
                self.faults.append(
                    {"operation": body.get("operation"), "bucket": body.get("bucket"), "mode": body["mode"],
                     "remaining": int(body.get("count", 1))}
                )
                return {"faults": self.faults}
        if what == "latency" and method == "GET":
            return {"seconds": self.latency}
        if what == "regions":
            if method != "GET":
                self.regions_enforced = bool(body.get("enforced"))
            return {"enforced": self.regions_enforced}
        if what == "listing-index" and method == "GET":
            return {"enabled": self.index is not None, "pages": self.index.pages if self.index is not None else 0}
        if what == "latency":
            seconds = float(body.get("seconds", 0))
            if not 0 <= seconds <= 10:
                raise ValueError(f"latency seconds must be between 0 and 10, not {seconds}")
            self.latency = seconds
            return {"seconds": seconds}
        if what == "listing-index":
            self.index = ListingIndex() if body.get("enabled") else None
            return {"enabled": self.index is not None}
        if what in ("seed", "touch"):
            index = self.index
            if index is not None:
                index.invalidate()
            try:
                return {"written": seed(body)} if what == "seed" else {"touched": touch(body)}
            finally:
                if index is not None:
                    index.invalidate()
        raise ValueError(f"unknown control endpoint /_s3ops/{what} ({method})")


class ListingIndex:
    """ListObjectsV2 (no delimiter) from a sorted list of each bucket's key names, rebuilt after any write.

    moto 5.2.5 collects and sorts every key of the bucket on every page and serializes each entry through
    its generic serializer; at 300,000 keys that is ~1 s of server CPU per page. Here a page is a bisect
    into the sorted names and a join of cached ``<Contents>`` elements. The answer carries what moto's
    does (tests/integration/test_s3server_listing.py compares the two through boto3). A request with a
    delimiter, or on a bucket moto does not know, is left to moto (None)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pages = 0  # pages answered from the index (GET /_s3ops/listing-index)
        self.generation = 0
        self.buckets: dict[str, tuple[int, list[str], dict[tuple[str, bool, bool], bytes]]] = {}

    def invalidate(self) -> None:
        with self.lock:
            self.generation += 1
            self.buckets.clear()

    def _names(self, name: str, bucket: Any) -> tuple[list[str], dict[tuple[str, bool, bool], bytes]]:
        with self.lock:
            built = self.buckets.get(name)
            if built is not None and built[0] == self.generation:
                return built[1], built[2]
            generation = self.generation
        names = sorted(bucket.keys.keys())
        fragments: dict[tuple[str, bool, bool], bytes] = {}
        with self.lock:
            if generation == self.generation:
                self.buckets[name] = (generation, names, fragments)
        return names, fragments

    @staticmethod
    def _fragment(key: Any, url: bool, owner: bool) -> bytes:
        parts = [f"<Contents><Key>{quote(key.name) if url else _xml_text(key.name)}</Key>",
                 f"<LastModified>{key.last_modified_ISO8601}</LastModified>",
                 f"<ETag>{_xml_text(key.etag)}</ETag><Size>{key.size}</Size>",
                 f"<StorageClass>{key.storage_class}</StorageClass>"]
        if owner:
            parts.append("<Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>"
                         "<DisplayName>webfile</DisplayName></Owner>")
        if key.checksum_algorithm:
            parts.append(f"<ChecksumAlgorithm>{key.checksum_algorithm}</ChecksumAlgorithm>")
        parts.append("</Contents>")
        return "".join(parts).encode()

    def list_objects_v2(self, environ: dict[str, Any], start_response: Any) -> list[bytes] | None:
        from moto.s3.models import FakeDeleteMarker
        from moto.utilities.utils import md5_hash

        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        one = {k: v[0] for k, v in query.items()}
        bucket_name = environ.get("PATH_INFO", "/").strip("/")
        if one.get("delimiter") or "/" in bucket_name or one.get("continuation-token") == "":
            return None
        backend = _backend()
        try:
            bucket = backend.get_bucket(bucket_name)
        except Exception:  # noqa: BLE001 - NoSuchBucket and the like: moto's own answer
            return None
        if type(bucket).__name__ != "FakeBucket":
            return None
        prefix, token, start_after = one.get("prefix", ""), one.get("continuation-token"), one.get("start-after")
        max_keys = int(one.get("max-keys", 1000))
        url, owner = one.get("encoding-type") == "url", one.get("fetch-owner", "false").lower() == "true"
        if token and token not in backend._pagination_tokens:
            return None  # not a token of this server (or from before a reset): moto's own answer
        names, fragments = self._names(bucket_name, bucket)
        after = backend._pagination_tokens[token] if token else start_after
        i = bisect_right(names, after) if after else 0
        if prefix:
            i = max(i, bisect_left(names, prefix))
        page: list[bytes] = []
        last: str | None = None
        truncated = False
        while i < len(names):
            name = names[i]
            i += 1
            if prefix and not name.startswith(prefix):
                break
            cached = fragments.get((name, url, owner))
            if cached is None:
                key = bucket.keys.get(name)
                visible = key is not None and not isinstance(key, FakeDeleteMarker)
                cached = fragments[(name, url, owner)] = self._fragment(key, url, owner) if visible else b""
            if not cached:  # a delete marker
                continue
            if len(page) >= max_keys:
                truncated = max_keys > 0
                break
            page.append(cached)
            last = name
        head = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>{_xml_text(bucket_name)}</Name>"
                f"<Prefix>{quote(prefix) if url else _xml_text(prefix)}</Prefix>"
                f"<MaxKeys>{max_keys}</MaxKeys><KeyCount>{len(page)}</KeyCount>"
                f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
        if url:
            head.append("<EncodingType>url</EncodingType>")
        if truncated and last is not None:
            next_token = md5_hash(last.encode("utf-8")).hexdigest()
            backend._pagination_tokens[next_token] = last
            head.append(f"<NextContinuationToken>{next_token}</NextContinuationToken>")
        if token:
            head.append(f"<ContinuationToken>{_xml_text(token)}</ContinuationToken>")
        elif start_after:
            head.append(f"<StartAfter>{_xml_text(start_after)}</StartAfter>")
        body = "".join(head).encode() + b"".join(page) + b"</ListBucketResult>"
        with self.lock:
            self.pages += 1
        start_response("200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]


S3_KEY_BYTES = 1024  # S3's longest key, in UTF-8 bytes


def _key_bytes(environ: dict[str, Any]) -> int:
    """The UTF-8 bytes of a path-style request's key (WSGI gives the path as latin-1: a character a byte).
    Every client here addresses the local server path-style; a virtual-hosted request is not counted."""
    parts = environ.get("PATH_INFO", "").split("/", 2)
    return len(parts[2]) if len(parts) == 3 else 0


_SIGNED_REGION = re.compile(r"Credential=[^/,]*/\d{8}/([^/,]+)/s3/")


def _wrong_region(environ: dict[str, Any]) -> tuple[str, str] | None:
    """(the region a request is signed for, its bucket's) when they differ; None when they agree or either is
    unknown (no SigV4 signature, no such bucket: moto answers)."""
    from urllib.parse import unquote

    signed = _SIGNED_REGION.search(environ.get("HTTP_AUTHORIZATION", "") or unquote(environ.get("QUERY_STRING", "")))
    name = environ.get("PATH_INFO", "/").strip("/").split("/", 1)[0]
    if signed is None or not name:
        return None
    try:
        region = str(_backend().get_bucket(name).region_name)
    except Exception:  # noqa: BLE001 - no such bucket (moto's own error types): moto answers as it does
        return None
    return (signed[1], region) if signed[1] != region else None


def _xml_text(text: str) -> str:
    """Element text that reads back exactly (CR as a character reference, not folded to LF)."""
    from xml.sax.saxutils import escape

    return escape(text).replace("\r", "&#13;")


def _xml_error(start_response: Any, status: str, code: str, message: str) -> list[bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            "</Error>").encode()
    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


class RunningChecksum:
    """One of S3's flexible checksums, fed chunk by chunk; :meth:`value` is base64, as S3 writes it."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm.upper()
        self._hash = hashlib.new(self.algorithm.lower()) if self.algorithm in ("SHA1", "SHA256") else None
        self._crc = 0

    def update(self, chunk: bytes) -> None:
        from awscrt import checksums

        if self._hash is not None:
            self._hash.update(chunk)
        elif self.algorithm == "CRC64NVME":
            self._crc = checksums.crc64nvme(chunk, self._crc)
        elif self.algorithm == "CRC32C":
            self._crc = checksums.crc32c(chunk, self._crc)
        else:
            self._crc = zlib.crc32(chunk, self._crc)

    def digest(self) -> bytes:
        if self._hash is not None:
            return self._hash.digest()
        return self._crc.to_bytes(8 if self.algorithm == "CRC64NVME" else 4, "big")

    def value(self) -> str:
        return base64.b64encode(self.digest()).decode()


def one_pass_checksums() -> None:
    """Give moto a checksum builder that computes S3's checksums the way S3 does.

    moto 5.2.5 checksums a FULL_OBJECT upload from a second joined copy of the whole object: seconds per
    GiB under one interpreter lock, which S3 (it combines the parts' CRCs) does not spend and which only
    clients asking for a full-object checksum paid (bench/README.md, scenario 9). It also computes CRC32C
    as CRC32 without the ``crc32c`` package, and compares algorithm names case-sensitively. This builder
    reads each part once, with :class:`RunningChecksum` (the algorithms the middleware checks clients'
    values with), names in any case. moto's code path is unchanged; only the builder it looks up is
    replaced, once per process."""
    from moto.s3 import models

    moto_builder = models.MultipartChecksumBuilder
    if getattr(moto_builder, "one_pass", False):
        return

    class OnePassChecksumBuilder(moto_builder):
        one_pass = True

        def __init__(self, checksum_algorithm: str | None, checksum_type: str | None) -> None:
            super().__init__((checksum_algorithm or "").upper() or None, (checksum_type or "").upper() or None)
            self.whole = RunningChecksum(self.checksum_algorithm)  # FULL_OBJECT
            self.part_checksums = bytearray()  # COMPOSITE: a checksum of the parts' checksums

        def addPart(self, part: bytes) -> None:
            if self.checksum_type == "COMPOSITE":
                one = RunningChecksum(self.checksum_algorithm)
                one.update(part)
                self.part_checksums += one.digest()
            else:
                self.whole.update(part)
            self.part_count += 1

        def build(self) -> tuple[str, str, int] | None:
            if self.checksum_type != "COMPOSITE":
                return self.checksum_type, self.whole.value(), 1
            joined = RunningChecksum(self.checksum_algorithm)
            joined.update(bytes(self.part_checksums))
            return self.checksum_type, joined.value(), self.part_count

    models.MultipartChecksumBuilder = OnePassChecksumBuilder


class Checksums:
    """S3's flexible checksums as AWS documents them, where moto 5.2.5 stores client values unchecked."""

    ALGORITHMS = ("CRC64NVME", "CRC32C", "CRC32", "SHA1", "SHA256")
    # moto joins big uploads slowly and not safely twice at once: a client's retried completion waits for
    # the first one, then gets moto's idempotent answer (as S3 gives)
    _completing: dict[str, threading.Lock] = {}
    _completing_lock = threading.Lock()

    @staticmethod
    def digest(algorithm: str, chunks: Any) -> str:
        running = RunningChecksum(algorithm)
        for chunk in chunks:
            running.update(chunk)
        return running.value()

    @classmethod
    def header(cls, environ: dict[str, Any]) -> tuple[str, str] | None:
        for algorithm in cls.ALGORITHMS:
            value = environ.get(f"HTTP_X_AMZ_CHECKSUM_{algorithm}")
            if value:
                return algorithm, value
        return None

    @classmethod
    def check_body(cls, environ: dict[str, Any]) -> tuple[str, str, str] | None:
        """A PUT body against its checksum header; a refusal (status, code, message) or None. Bodies in
        aws-chunked encoding (checksum in a trailer) are left to moto."""
        given = cls.header(environ)
        chunked = "aws-chunked" in environ.get("HTTP_CONTENT_ENCODING", "") or environ.get(
            "HTTP_X_AMZ_CONTENT_SHA256", "").startswith("STREAMING-")
        if given is None or chunked:
            return None
        algorithm, value = given
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if cls.digest(algorithm, [body]) != value:
            return ("400 Bad Request", "BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")
        environ.setdefault("HTTP_X_AMZ_SDK_CHECKSUM_ALGORITHM", algorithm)  # so moto keeps and echoes it
        return None

    @classmethod
    def complete(cls, app: Any, environ: dict[str, Any], start_response: Any) -> Any:
        """CompleteMultipartUpload: check a full-object checksum header against the parts, then add the
        stored checksum to moto's answer."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        upload_id = parse_qs(environ.get("QUERY_STRING", "")).get("uploadId", [""])[0]
        with cls._completing_lock:
            lock = cls._completing.setdefault(upload_id, threading.Lock())
        with lock:
            return cls._complete(app, environ, start_response, body, upload_id)

    @classmethod
    def _complete(cls, app: Any, environ: dict[str, Any], start_response: Any, body: bytes, upload_id: str) -> Any:
        bucket, _, _key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
        try:
            multipart = _backend().get_bucket(bucket).multiparts[upload_id]
        except Exception:  # noqa: BLE001 - unknown bucket/upload: moto answers with its own error
            return app(environ, start_response)
        algorithm = (multipart.metadata.get("x-amz-checksum-algorithm") or "CRC64NVME").upper()
        kind = (multipart.metadata.get("x-amz-checksum-type") or
                ("FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE")).upper()
        numbers = [int(n) for n in re.findall(rb"<PartNumber>\s*(\d+)\s*</PartNumber>", body)]
        parts = [multipart.parts.get(n) for n in numbers]
        stored = None
        if kind == "FULL_OBJECT" and parts and all(p is not None for p in parts):
            stored = cls.digest(algorithm, (p.value for p in parts))
            given = environ.get(f"HTTP_X_AMZ_CHECKSUM_{algorithm}")
            if given and given != stored:
                return _xml_error(start_response, "400 Bad Request", "BadDigest",
                              f"The {algorithm} you specified did not match the calculated checksum.")
        status, headers, answer = _call(app, environ)
        if stored and status.startswith("200") and b"</CompleteMultipartUploadResult>" in answer:
            extra = f"<Checksum{algorithm}>{stored}</Checksum{algorithm}><ChecksumType>{kind}</ChecksumType>".encode()
            answer = answer.replace(b"</CompleteMultipartUploadResult>", extra + b"</CompleteMultipartUploadResult>")
        return _reply(start_response, status, headers, answer)


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run moto's app and keep its whole (small, XML) answer, to amend it."""
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    body = b"".join(app(environ, capture))
    return captured["status"], captured["headers"], body


def _reply(start_response: Any, status: str, headers: list[tuple[str, str]], body: bytes) -> list[bytes]:
    start_response(status, [*((k, v) for k, v in headers if k.lower() != "content-length"), ("Content-Length", str(len(body)))])
    return [body]


def _backend() -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT_ID]["aws"]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    # moto keeps naive UTC datetimes
    return dt.astimezone(UTC).replace(tzinfo=None)


def seed(body: dict[str, Any]) -> int:
    """Write objects into an existing bucket: ``{"bucket", "objects": [{"key", "size"|"body",
    "storage_class", "last_modified"}]}`` or ``{"bucket", "generate": {"prefix", "count", "size",
    "storage_classes", "start"}}`` (keys ``<prefix><i:08d>``, classes round-robin)."""
    backend = _backend()
    bucket = body["bucket"]
    backend.get_bucket(bucket)  # raises if missing: seed never creates buckets by surprise
    objects = body.get("objects")
    if objects is None:
        gen = body["generate"]
        classes = gen.get("storage_classes") or ["STANDARD"]
        start = int(gen.get("start", 0))
        objects = (
            {
                "key": f"{gen.get('prefix', '')}{i:08d}",
                "size": gen.get("size", 100),
                "storage_class": classes[i % len(classes)],
                "last_modified": gen.get("last_modified"),
            }
            for i in range(start, start + int(gen["count"]))
        )
    written = 0
    for obj in objects:
        data = obj["body"].encode() if "body" in obj else b"x" * int(obj.get("size", 0))
        key = backend.put_object(bucket, obj["key"], data, storage=obj.get("storage_class") or "STANDARD")
        when = _parse_time(obj.get("last_modified"))
        if when is not None:
            key.last_modified = when
        written += 1
    return written


def touch(body: dict[str, Any]) -> int:
    """Set LastModified: ``{"bucket", "key"|"prefix", "last_modified"}`` (all versions of the keys)."""
    backend = _backend()
    bucket = backend.get_bucket(body["bucket"])
    when = _parse_time(body["last_modified"])
    touched = 0
    for name, versions in bucket.keys.iterlists():
        if ("key" in body and name == body["key"]) or ("prefix" in body and name.startswith(body["prefix"])):
            for version in versions:
                version.last_modified = when
                touched += 1
    return touched


def make_app() -> ControlMiddleware:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    one_pass_checksums()
    return ControlMiddleware(DomainDispatcherApplication(create_backend_app))


def main() -> None:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = make_server(args.host, args.port, make_app(), threaded=True, request_handler=MotoRequestHandler)
    print(f"s3server listening on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
