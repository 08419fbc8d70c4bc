"""Streaming S3 listings: one object at a time, constant memory, whatever the bucket size.

Every pipeline lists through here, so a faster implementation (see bench/) speeds up all of them.
Keys come in S3's order (UTF-8 binary). ``last_modified`` stays the ISO 8601 UTC string S3 sent
(``2026-11-22T04:28:13.000Z``): comparable as a string, and converted with :func:`include.core.times.parse_time` only
where a datetime is really needed (building one per key is a large part of listing CPU).

The fast path: botocore still builds, signs, sends and retries every request (throttling, dropped
connections), but for the list pages requested from here a ``before-parse`` hook reads the entries
straight from the XML bytes with a specialised regex and hands botocore only the small envelope
(``IsTruncated``, continuation token, …). botocore's generic XML-to-dict parsing and its datetime per
key were ~80 % of listing CPU. Other calls on the same client are untouched: the hook only acts while
a listing in this thread asked for it.

Text is decoded by XML 1.0's rules, not HTML's: line ends fold to LF, then only the five named
entities (``&amp;`` ``&lt;`` ``&gt;`` ``&quot;`` ``&apos;``) and numeric references to characters XML
allows are decoded (``&#128;`` is U+0080, never ``€``). Anything else (``&#1;``, ``&eacute;``, a bare
``&``) is not guessed at: the whole page goes to botocore's own XML parser, which accepts or refuses it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote_plus

from include.core.times import format_time

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from types_boto3_s3 import S3Client


class S3Object(NamedTuple):
    key: str
    size: int
    last_modified: str  # ISO 8601 UTC, as S3 sends it
    storage_class: str
    etag: str


class S3Version(NamedTuple):
    key: str
    version_id: str
    size: int  # 0 for delete markers
    last_modified: str
    storage_class: str
    is_latest: bool
    is_delete_marker: bool
    etag: str = ""  # unquoted; none for delete markers (and from an inventory without the ETag column)


def _iso(value: Any) -> str:
    if isinstance(value, str):
        if len(value) == 24 and value[19] == "." and value[23] == "Z":
            return value  # already S3's canonical form
        from botocore.utils import parse_timestamp

        value = parse_timestamp(value)
    return format_time(value)


# --- the fast page parser -------------------------------------------------------------------------

# S3's (and moto's) element order and timestamp form. A page where any entry does not match (another
# server's order or timestamps, pretty-printed XML) is parsed by the order-free fallback instead, so
# this is only ever a shortcut.
_CONTENTS_FAST = re.compile(
    r"<Contents><Key>([^<]*)</Key><LastModified>(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)</LastModified>"
    r"<ETag>(?:&quot;|&#34;|\")([^<&\"]*)(?:&quot;|&#34;|\")</ETag>"  # the usual quoted ETag, its quotes dropped
    r"(?:<Checksum\w*>[^<]*</Checksum\w*>)*<Size>(\d+)</Size>(?:<Owner>.*?</Owner>)?"
    r"(?:<StorageClass>([^<]*)</StorageClass>)?",
    re.S,
)
_ENTRY = re.compile(r"<(Contents|Version|DeleteMarker)>(.*?)</\1>", re.S)
_FIELD = re.compile(r"<(\w+)>([^<]*)</\1>")
_URL_ENCODED = "<EncodingType>url</EncodingType>"
_state = threading.local()


class NotPlainXml(ValueError):
    """A page the fast parser does not decode itself (see the module docstring): botocore parses it."""


_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_REF = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));")


def _xml_char(code: int) -> bool:
    """XML 1.0's ``Char`` production."""
    return (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF)


def _ref(match: re.Match[str]) -> str:
    named, dec, hexa = match.groups()
    if named:
        return _NAMED[named]
    code = int(dec) if dec else int(hexa, 16)
    if not _xml_char(code):
        raise NotPlainXml(f"character reference {match.group(0)!r} is not a character XML 1.0 allows")
    return chr(code)


def _unescape(raw: str) -> str:
    """XML character data → text: the five named entities and numeric references, nothing else."""
    found = _REF.sub(_ref, raw)
    if "&" in _REF.sub("", raw):
        raise NotPlainXml(f"{raw[:80]!r} holds an '&' that is not one of XML's five entities or a numeric reference")
    return found


def _key(raw: str, url: bool) -> str:
    # botocore's order: XML entities first, then (EncodingType=url) unquote_plus
    if "&" in raw:
        raw = _unescape(raw)
    return unquote_plus(raw) if url and ("%" in raw or "+" in raw) else raw


def _etag(raw: str) -> str:
    return (_unescape(raw) if "&" in raw else raw).strip('"')


def _text(raw: str) -> str:
    return _unescape(raw) if "&" in raw else raw


def _xml_line_ends(text: str) -> str:
    """XML 1.0 end-of-line handling, done on the whole document before anything else is read."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _fields(block: str) -> dict[str, str]:
    # Owner's children (ID, DisplayName) come out too; they are simply not read.
    return dict(_FIELD.findall(block))


def parse_objects_page(text: str) -> list[S3Object]:
    """The ``<Contents>`` entries of one ListObjectsV2 response body, as :class:`S3Object`; raises
    :class:`NotPlainXml` for a page to leave to botocore."""
    text = _xml_line_ends(text)
    url = _URL_ENCODED in text
    entries = _CONTENTS_FAST.findall(text)
    # every entry matched, and every StorageClass was read (the group is optional: an element between
    # Size and StorageClass would otherwise leave a GLACIER object STANDARD)
    if len(entries) == text.count("<Contents>") and sum(1 for e in entries if e[4]) == text.count("<StorageClass>"):
        # the common case inline (no call per key): plain keys, canonical timestamps, quoted ETags
        return [
            S3Object(_key(k, url) if ("&" in k or (url and ("%" in k or "+" in k))) else k, int(size), lm,
                     sc or "STANDARD", etag)
            for k, lm, etag, size, sc in entries
        ]
    objects = []
    for tag, block in _ENTRY.findall(text):
        if tag != "Contents":
            continue
        f = _fields(block)
        objects.append(S3Object(_key(f["Key"], url), int(f.get("Size", 0)), _iso(_text(f["LastModified"])),
                                _text(f.get("StorageClass", "")) or "STANDARD", _etag(f.get("ETag", ""))))
    return objects


def parse_versions_page(text: str) -> list[S3Version]:
    """The versions and delete markers of one ListObjectVersions body, in :func:`iter_versions`' order;
    raises :class:`NotPlainXml` for a page to leave to botocore."""
    text = _xml_line_ends(text)
    url = _URL_ENCODED in text
    versions: list[S3Version] = []
    markers: list[S3Version] = []
    for tag, block in _ENTRY.findall(text):
        f = _fields(block)
        key, vid = _key(f["Key"], url), _text(f.get("VersionId", "null"))
        lm, latest = _iso(f["LastModified"]), f.get("IsLatest") == "true"
        if tag == "Version":
            storage_class = _text(f.get("StorageClass", "")) or "STANDARD"
            versions.append(S3Version(key, vid, int(f.get("Size", 0)), lm, storage_class, latest, False,
                                      _etag(f.get("ETag", ""))))
        elif tag == "DeleteMarker":
            markers.append(S3Version(key, vid, 0, lm, "", latest, True))
    items = versions + markers
    items.sort(key=lambda v: v.key)
    return items


def _envelope(text: str) -> bytes:
    """The body without its entries: what is left for botocore to parse (a few hundred bytes)."""
    first = text.find("<Contents>")
    if first >= 0:
        last = text.rfind("</Contents>")
        if text.count("<CommonPrefixes>", first, last) == 0:  # entries are contiguous (no delimiter)
            return (text[:first] + text[last + len("</Contents>") :]).encode()
    return _ENTRY.sub("", text).encode()


def _before_parse(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    parse = getattr(_state, "parse", None)
    if parse is None or response_dict.get("status_code") != 200 or not response_dict.get("body"):
        return  # not ours, or an error: botocore parses it (and its retry logic sees it) as usual
    text = response_dict["body"].decode("utf-8")
    try:
        entries = parse(text)
    except NotPlainXml:
        return  # botocore parses the page itself; the listing reads its result the slow way
    customized_response_dict["S3OpsEntries"] = entries
    response_dict["body"] = _envelope(text)


_ROOT_END = {"ListObjectsV2": b"</ListBucketResult>", "ListObjectVersions": b"</ListVersionsResult>"}


def _check_200(operation_model: Any, response_dict: dict[str, Any], **kwargs: Any) -> None:
    """botocore's check for S3's "200 with an error body" (or a body cut short by a dropped connection)
    builds a whole element tree of every page just to look at its root, which costs as much as the
    fast parser. A list page that ends with its own root's closing tag is neither; anything else still
    goes through botocore's check (and so becomes a retried 500)."""
    end = _ROOT_END.get(operation_model.name)
    body = response_dict.get("body")
    if (end is not None and getattr(_state, "parse", None) is not None and response_dict.get("status_code") == 200
            and body and body.rstrip().endswith(end)):
        return
    _BOTOCORE_200_CHECK(operation_model=operation_model, response_dict=response_dict, **kwargs)


try:  # private in botocore: without it, its check simply keeps running (slower, equally correct)
    from botocore.handlers import _handle_200_error as _BOTOCORE_200_CHECK  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _BOTOCORE_200_CHECK = None


_install_lock = threading.Lock()


def _install(events: Any) -> None:
    """Register the hooks on this client's own event emitter (botocore copies it per client), once per
    emitter: (un)registering clears the emitter's handler cache, which every call would then rebuild
    (a third of the listing's CPU per page)."""
    if getattr(events, "_s3ops_hooks", False):
        return
    with _install_lock:
        if not getattr(events, "_s3ops_hooks", False):
            _register(events)
            events._s3ops_hooks = True


def _register(events: Any) -> None:
    if _BOTOCORE_200_CHECK is not None:
        events.unregister("before-parse.s3.*", _BOTOCORE_200_CHECK)  # a no-op once done
        events.register_first("before-parse.s3.*", _check_200, unique_id="s3ops-200-check")
    for operation in _ROOT_END:
        events.register(f"before-parse.s3.{operation}", _before_parse, unique_id=f"s3ops-fast-{operation}")


def _fast_call(client: S3Client, operation: str, parse: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``client.<operation>(**kwargs)`` with the page's entries parsed by ``parse`` into ``S3OpsEntries``."""
    _install(client.meta.events)  # idempotent
    _state.parse = parse
    try:
        return getattr(client, operation)(**kwargs)
    finally:
        _state.parse = None


def _has_events(client: S3Client) -> bool:
    return hasattr(getattr(getattr(client, "meta", None), "events", None), "register")


def _last_page(page: dict[str, Any], on_page: Any, entries: int) -> bool:
    """Report a page's size to ``on_page`` (progress); True when it was the last page."""
    if on_page is not None:
        on_page(entries)
    return not page.get("IsTruncated")


# --- the interface ---------------------------------------------------------------------------------


def _objects_page(client: S3Client, kwargs: dict[str, Any], fast: bool) -> tuple[dict[str, Any], list[S3Object]]:
    """One ListObjectsV2 page and its objects: through the fast parser when the client has events."""
    page: dict[str, Any] = (_fast_call(client, "list_objects_v2", parse_objects_page, kwargs) if fast
                            else dict(client.list_objects_v2(**kwargs)))
    objects: list[S3Object] = page["S3OpsEntries"] if "S3OpsEntries" in page else [
        S3Object(o["Key"], int(o["Size"]), _iso(o["LastModified"]), o.get("StorageClass", "STANDARD"),
                 o.get("ETag", "").strip('"'))
        for o in page.get("Contents", [])
    ]
    return page, objects


def iter_objects(
    client: S3Client, bucket: str, prefix: str = "", *, start_after: str | None = None, end_before: str | None = None,
    page_size: int = 1000, on_page: Any = None,
) -> Iterator[S3Object]:
    """Objects under ``prefix`` with ``start_after < key < end_before`` (either bound optional), in key
    order. ``on_page(objects_in_page)`` is called after each page (progress logging)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    if start_after:
        kwargs["StartAfter"] = start_after
    fast = _has_events(client)
    while True:
        page, objects = _objects_page(client, kwargs, fast)
        if end_before is not None and objects and objects[-1].key >= end_before:
            yield from (o for o in objects if o.key < end_before)
            return
        yield from objects
        if _last_page(page, on_page, len(objects)):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
        kwargs.pop("StartAfter", None)


def count_objects(client: S3Client, bucket: str, limit: int, *, on_more: Callable[[], None] | None = None,
                  proven_more: Callable[[int, str], bool] | None = None) -> int | None:
    """How many objects ``bucket`` holds when it is at most ``limit``, else None. Lists at most ``limit``
    keys (``ceil(limit/1000)`` pages), through the same fast page parser as :func:`iter_objects`.
    ``on_more()`` is called once, as soon as the first page shows the bucket holds more than one page.
    ``proven_more(seen, last_key)``, asked after each page that is not the last, ends the count early
    (None) when it returns True: something else proved the bucket holds more than ``limit``."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": min(1000, limit)}
    fast = _has_events(client)
    seen = 0
    while True:
        page, objects = _objects_page(client, kwargs, fast)
        seen += len(objects)
        if not page.get("IsTruncated"):
            return seen
        if on_more is not None and "ContinuationToken" not in kwargs:
            on_more()
        if seen >= limit or (proven_more is not None and objects and proven_more(seen, objects[-1].key)):
            return None
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
        kwargs["MaxKeys"] = min(1000, limit - seen)


def iter_versions(
    client: S3Client, bucket: str, prefix: str = "", *, on_page: Any = None
) -> Iterator[S3Version]:
    """Every version and delete marker under ``prefix`` (ListObjectVersions), key order."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
    fast = _has_events(client)
    while True:
        page: dict[str, Any] = (_fast_call(client, "list_object_versions", parse_versions_page, kwargs) if fast
                                else dict(client.list_object_versions(**kwargs)))
        if "S3OpsEntries" in page:
            items: list[S3Version] = page["S3OpsEntries"]
        else:
            items = [
                S3Version(v["Key"], v.get("VersionId", "null"), int(v.get("Size", 0)), _iso(v["LastModified"]),
                          v.get("StorageClass", "STANDARD"), bool(v.get("IsLatest")), False,
                          v.get("ETag", "").strip('"'))
                for v in page.get("Versions", [])
            ] + [
                S3Version(m["Key"], m.get("VersionId", "null"), 0, _iso(m["LastModified"]), "", bool(m.get("IsLatest")), True)
                for m in page.get("DeleteMarkers", [])
            ]
            items.sort(key=lambda v: v.key)
        yield from items
        if _last_page(page, on_page, len(items)):
            return
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker", "")
