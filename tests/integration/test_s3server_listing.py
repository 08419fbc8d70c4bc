"""The local server's benchmark switches: the listing index answers ListObjectsV2 exactly as moto does
(compared through boto3 and raw XML, odd keys, delete markers, every paging parameter), follows
writes, and the injected latency delays requests in parallel, not one after another."""

from __future__ import annotations

import itertools
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

_ids = itertools.count()
ODD_KEYS = [
    "a", "a/b", "a/b/c.dat", "a+b", "a%2Bb", "100%", "c,d", 'q"uote', "tab\there", "new\nline", "cr\rkey",
    "caf\u00e9", "cafe\u0301", "\U0001f600.txt", "&amp;", "<tag>", "sp ace", "z" * 300, "~tilde", "a/", "a//b",
]


@contextmanager
def listing_index(server: Any) -> Any:
    server.control("POST", "listing-index", {"enabled": True})
    try:
        yield
        assert server.control("GET", "listing-index")["pages"] > 0  # the index answered, not moto
    finally:
        server.control("POST", "listing-index", {"enabled": False})


def boto_pages(s3: Any, bucket: str, **kwargs: Any) -> list[dict[str, Any]]:
    pages = []
    for answer in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kwargs):
        page = dict(answer)  # the paginator reads its token from the answer after this
        page.pop("ResponseMetadata")
        page.pop("NextContinuationToken", None)
        page.pop("ContinuationToken", None)  # S3 echoes it, moto does not
        pages.append(page)
    return pages


def raw_pages(endpoint: str, bucket: str, **params: str) -> list[dict[str, Any]]:
    """Pages as parsed XML (fields, then each Contents element), without URL encoding: what a client
    gets that does not ask for it. Element order is not compared (S3's clients do not rely on it)."""
    pages: list[dict[str, Any]] = []
    query: dict[str, str] = {"list-type": "2", **params}
    while True:
        reply = requests.get(f"{endpoint}/{bucket}?{urlencode(query)}", timeout=30)
        assert reply.status_code == 200, reply.text
        page: dict[str, Any] = {"Contents": []}
        for child in ET.fromstring(reply.content):
            tag = child.tag.split("}")[-1]
            if tag == "Contents":
                page["Contents"].append({c.tag.split("}")[-1]: c.text or "" for c in child})
            else:
                page[tag] = child.text or ""
        token = page.pop("NextContinuationToken", None)
        page.pop("ContinuationToken", None)
        pages.append(page)
        if token is None:
            return pages
        query = {"list-type": "2", **{k: v for k, v in params.items() if k != "start-after"}, "continuation-token": token}


@pytest.fixture(scope="module")
def odd_bucket(s3: Any, s3_server: Any) -> str:
    bucket = f"index-odd-{next(_ids)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    # straight into the backend: moto's HTTP front cannot take a newline in a key
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": key, "size": i, "storage_class": "GLACIER" if i % 3 == 0 else "STANDARD"}
        for i, key in enumerate(ODD_KEYS)]})
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"second version")  # a noncurrent version below
    s3.put_object(Bucket=bucket, Key="gone", Body=b"soon deleted")
    s3.delete_object(Bucket=bucket, Key="gone")  # a delete marker: not listed
    s3.put_object(Bucket=bucket, Key="crc", Body=b"checked", ChecksumAlgorithm="CRC32")
    return bucket


@pytest.mark.parametrize("kwargs", [
    {}, {"PaginationConfig": {"PageSize": 2}}, {"Prefix": "a"}, {"Prefix": "a/", "PaginationConfig": {"PageSize": 1}},
    {"StartAfter": "a+b"}, {"StartAfter": "c", "Prefix": "ca"}, {"Prefix": "nothing"}, {"StartAfter": "\U0010ffff"},
    {"FetchOwner": True, "PaginationConfig": {"PageSize": 3}}, {"Prefix": "gone"},
], ids=lambda k: ",".join(sorted(k)) or "plain")
def test_index_answers_like_moto_through_boto3(s3: Any, s3_server: Any, odd_bucket: str, kwargs: dict[str, Any]) -> None:
    expected = boto_pages(s3, odd_bucket, **kwargs)
    with listing_index(s3_server):
        got = boto_pages(s3, odd_bucket, **kwargs)
    assert got == expected
    after = kwargs.get("StartAfter")
    oracle = sorted(k for k in [*ODD_KEYS, "crc"] if k.startswith(kwargs.get("Prefix", "")) and (after is None or k > after))
    assert [o["Key"] for page in expected for o in page.get("Contents", [])] == oracle


@pytest.mark.parametrize("params", [{}, {"max-keys": "4"}, {"prefix": "ca", "max-keys": "1"}, {"max-keys": "0"},
                                    {"start-after": "a/b"}])
def test_index_answers_like_moto_without_url_encoding(s3: Any, s3_server: Any, odd_bucket: str, params: dict[str, str]) -> None:
    safe = f"index-raw-{next(_ids)}"  # raw XML needs keys XML 1.0 carries as they are (no CR)
    s3.create_bucket(Bucket=safe)
    s3_server.control("POST", "seed", {"bucket": safe, "objects": [{"key": k, "size": 3} for k in ODD_KEYS if "\r" not in k]})
    expected = raw_pages(s3_server.endpoint_url, safe, **params)
    with listing_index(s3_server):
        got = raw_pages(s3_server.endpoint_url, safe, **params)
    assert got == expected
    keys = [c["Key"] for page in expected for c in page["Contents"]]
    assert len(keys) == (0 if params.get("max-keys") == "0" else 2 if "prefix" in params else 11 if params.get("start-after") else 20)


def test_index_follows_writes_and_deletes(s3: Any, s3_server: Any) -> None:
    bucket = f"index-writes-{next(_ids)}"
    s3.create_bucket(Bucket=bucket)
    s3_server.control("POST", "seed", {"bucket": bucket, "generate": {"count": 5, "size": 10}})

    def keys() -> list[str]:
        return [o["Key"] for page in boto_pages(s3, bucket) for o in page.get("Contents", [])]

    with listing_index(s3_server):
        assert keys() == [f"{i:08d}" for i in range(5)]
        s3.put_object(Bucket=bucket, Key="00000002.5", Body=b"new")
        s3.delete_object(Bucket=bucket, Key="00000001")
        s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": "seeded", "size": 3}]})
        assert keys() == ["00000000", "00000002", "00000002.5", "00000003", "00000004", "seeded"]
        s3.put_object(Bucket=bucket, Key="00000000", Body=b"much longer body")
        sizes = {o["Key"]: o["Size"] for page in boto_pages(s3, bucket) for o in page.get("Contents", [])}
        assert sizes["00000000"] == len(b"much longer body")
        # a bucket moto does not know is moto's answer, not the index's
        with pytest.raises(s3.exceptions.NoSuchBucket):
            s3.list_objects_v2(Bucket=f"{bucket}-missing")


def test_latency_delays_requests_in_parallel(s3: Any, s3_server: Any) -> None:
    bucket = f"index-latency-{next(_ids)}"
    s3.create_bucket(Bucket=bucket)
    s3_server.control("POST", "latency", {"seconds": 0.25})
    try:
        start = time.perf_counter()
        s3.head_bucket(Bucket=bucket)
        one = time.perf_counter() - start
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: s3.head_bucket(Bucket=bucket), range(8)))
        eight = time.perf_counter() - start
    finally:
        s3_server.control("POST", "latency", {"seconds": 0})
    assert one >= 0.25
    assert eight < 8 * 0.25  # in parallel, not in a row
    start = time.perf_counter()
    s3.head_bucket(Bucket=bucket)
    assert time.perf_counter() - start < 0.25  # off again


@pytest.mark.parametrize("seconds", [-1, 11, "soon"])
def test_latency_refuses_nonsense(s3_server: Any, seconds: Any) -> None:
    reply = requests.post(f"{s3_server.endpoint_url}/_s3ops/latency", json={"seconds": seconds}, timeout=10)
    assert reply.status_code == 400
    assert "seconds" in reply.json()["error"] or "float" in reply.json()["error"]
