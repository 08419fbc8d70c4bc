"""The fast page parser on bodies moto does not produce: real S3's extra elements, other servers'
element order and pretty-printing, keys without EncodingType=url (XML entities only)."""

from __future__ import annotations

from include.aws.listing import S3Object, parse_objects_page, parse_versions_page

REAL_S3 = """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount>
<MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>a%26b+c%2Bd</Key>
<LastModified>2026-01-02T03:04:05.678Z</LastModified><ETag>&quot;abc&quot;</ETag><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>
<ChecksumType>FULL_OBJECT</ChecksumType><Size>12</Size><Owner><ID>x</ID><DisplayName>y</DisplayName></Owner>
<StorageClass>GLACIER</StorageClass><RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress></RestoreStatus></Contents>
<Contents><StorageClass>STANDARD_IA</StorageClass><Size>0</Size><Key>z%C3%A9</Key><LastModified>2026-01-02T03:04:05Z</LastModified></Contents>
</ListBucketResult>"""


def test_pretty_printed_reordered_body_uses_the_order_free_parser():
    assert parse_objects_page(REAL_S3) == [
        S3Object("a&b c+d", 12, "2026-01-02T03:04:05.678Z", "GLACIER", "abc"),
        S3Object("zé", 0, "2026-01-02T03:04:05.000Z", "STANDARD_IA", ""),  # timestamp normalised
    ]


def test_canonical_body_without_url_encoding_unescapes_entities_only():
    body = ("<ListBucketResult><Contents><Key>a&amp;b &lt;c&gt; 100%25+x&#233;</Key><LastModified>2026-01-02T03:04:05.000Z"
            "</LastModified><ETag>&#34;e&#34;</ETag><Size>5</Size></Contents></ListBucketResult>")
    assert parse_objects_page(body) == [S3Object("a&b <c> 100%25+xé", 5, "2026-01-02T03:04:05.000Z", "STANDARD", "e")]


def test_empty_page():
    assert parse_objects_page("<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>") == []
    assert parse_versions_page("<ListVersionsResult></ListVersionsResult>") == []


def test_versions_in_real_s3_order_sorted_by_key_versions_before_markers():
    body = ("<ListVersionsResult><DeleteMarker><Key>a</Key><VersionId>m1</VersionId><IsLatest>true</IsLatest>"
            "<LastModified>2026-01-02T03:04:06.000Z</LastModified></DeleteMarker>"
            "<Version><Key>a</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><LastModified>2026-01-02T03:04:05.000Z"
            "</LastModified><ETag>\"e\"</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Version>"
            "<Version><Key>0&amp;</Key><VersionId>null</VersionId><IsLatest>true</IsLatest><LastModified>"
            "2026-01-02T03:04:05.000Z</LastModified><Size>1</Size></Version></ListVersionsResult>")
    got = parse_versions_page(body)
    assert [(v.key, v.version_id, v.is_delete_marker, v.is_latest, v.size) for v in got] == [
        ("0&", "null", False, True, 1), ("a", "v1", False, False, 3), ("a", "m1", True, True, 0)]


class _Op:
    def __init__(self, name):
        self.name = name
        self.has_event_stream_output = False
        self.output_shape = type("Shape", (), {"serialization": {}})()


def test_a_page_cut_short_still_becomes_a_retried_500_and_a_complete_page_skips_the_tree_build(monkeypatch):
    from include.aws import listing

    monkeypatch.setattr(listing._state, "parse", listing.parse_objects_page, raising=False)
    complete = {"status_code": 200, "body": b"<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>\n"}
    cut = {"status_code": 200, "body": b"<ListBucketResult><Contents><Key>a</Key></Cont"}
    error = {"status_code": 200, "body": b"<Error><Code>InternalError</Code></Error>"}
    for response, status in ((complete, 200), (cut, 500), (error, 500)):
        listing._check_200(_Op("ListObjectsV2"), response)
        assert response["status_code"] == status
    monkeypatch.setattr(listing._state, "parse", None)
    other = {"status_code": 200, "body": b"<ListBucketResult></ListBucket"}  # not a fast-path call: botocore's check
    listing._check_200(_Op("ListObjectsV2"), other)
    assert other["status_code"] == 500
