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


# --- XML 1.0's rules for character data, not HTML's ------------------------------------------------

import pytest  # noqa: E402

from include.aws.listing import NotPlainXml  # noqa: E402


def _page(key: str, *, url: bool = False) -> str:
    return ("<ListBucketResult>" + ("<EncodingType>url</EncodingType>" if url else "")
            + f"<Contents><Key>{key}</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
            "<ETag>&quot;e&quot;</ETag><Size>5</Size></Contents></ListBucketResult>")


@pytest.mark.parametrize(("raw", "key"), [
    ("&#128;", "\x80"),  # HTML would say '€' (its windows-1252 fix-up)
    ("&#x85;", "\x85"),  # HTML: '…'
    ("&#x80;&#159;", "\x80\x9f"),
    ("&amp;&lt;&gt;&quot;&apos;", "&<>\"'"),
    ("&amp;#1;", "&#1;"),  # an escaped ampersand followed by text, not a reference
    ("&#233;&#xE9;&#x1F600;", "éé😀"),
    ("&#13;", "\r"), ("a\r\nb", "a\nb"), ("a\rb", "a\nb"),  # a raw CR is a line end; only &#13; is a CR
    ("&#9;&#xA;", "\t\n"),
])
def test_character_references_follow_xml_rules(raw, key):
    assert [o.key for o in parse_objects_page(_page(raw))] == [key]
    version = ("<ListVersionsResult><Version><Key>" + raw + "</Key><VersionId>v</VersionId><IsLatest>true</IsLatest>"
               "<LastModified>2026-01-02T03:04:05.000Z</LastModified><Size>1</Size></Version></ListVersionsResult>")
    assert [v.key for v in parse_versions_page(version)] == [key]


@pytest.mark.parametrize("raw", ["&#1;", "&#0;", "&#x1F;", "&#xD800;", "&#xFFFE;", "&#1114112;", "&#x110000;",
                                 "&eacute;", "&nbsp;", "a & b", "&#x;", "&#;", "&AMP;"])
def test_anything_else_goes_to_botocores_parser(raw):
    with pytest.raises(NotPlainXml):
        parse_objects_page(_page(raw))
    with pytest.raises(NotPlainXml):
        parse_objects_page(_page(raw, url=True))


def _client_answering(body: bytes):
    """A real botocore client whose ListObjectsV2 answer is ``body`` (no network), so the whole path
    runs: the fast parser's hook, its fallback, botocore's parser and url-decoding."""
    import boto3
    from botocore.awsrequest import AWSResponse

    class Raw:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def stream(self, *args, **kwargs):
            yield self.data

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
                          endpoint_url="http://127.0.0.1:9")
    client.meta.events.register(
        "before-send.s3.ListObjectsV2",
        lambda request, **_: AWSResponse(request.url, 200, {"Content-Type": "application/xml"}, Raw(body)))
    return client


def test_a_page_the_fast_parser_leaves_alone_is_read_through_botocore():
    from botocore.parsers import ResponseParserError

    from include.aws.listing import iter_objects

    head = '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    entry = ("<Contents><Key>{}</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>&quot;e&quot;</ETag>"
             "<Size>5</Size><StorageClass>STANDARD</StorageClass></Contents>")
    tail = "<IsTruncated>false</IsTruncated></ListBucketResult>"
    # the fast parser decodes references to characters XML allows
    fine = (head + entry.format("caf&#xE9;") + entry.format("x&#128;") + tail).encode()
    assert [o.key for o in iter_objects(_client_answering(fine), "b")] == ["café", "x\x80"]
    # botocore's parser (expat) refuses a reference to U+0001: the listing fails loudly, nothing is guessed
    bad = (head + entry.format("ok") + entry.format("a&#1;") + tail).encode()
    with pytest.raises(ResponseParserError):
        list(iter_objects(_client_answering(bad), "b"))


@pytest.mark.parametrize(("raw", "etag"), [
    ("&quot;0a1b&quot;", "0a1b"), ("&#34;0a1b-3&#34;", "0a1b-3"), ('"plain"', "plain"),
    ("unquoted", "unquoted"), ("&quot;a&amp;b&quot;", "a&b"), ("&quot;&quot;", ""), ("&#34;half", "half"),
])
def test_etag_forms_read_like_botocore_reads_them(raw, etag):
    """The fast pattern drops the usual quotes itself; any other form goes through the entity decoder."""
    body = ("<ListBucketResult><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
            f"<ETag>{raw}</ETag><Size>5</Size></Contents><Contents><Key>l</Key><LastModified>2026-01-02T03:04:05.000Z"
            "</LastModified><ETag>&quot;x&quot;</ETag><Size>1</Size></Contents></ListBucketResult>")
    assert [o.etag for o in parse_objects_page(body)] == [etag, "x"]


def test_an_element_between_size_and_storage_class_never_makes_a_glacier_object_standard():
    """The fast parser's StorageClass group is optional: with another element before it (an S3-compatible
    server's order, a future field) every entry still matched and the class defaulted to STANDARD."""
    body = ("<ListBucketResult><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
            "<ETag>&quot;e&quot;</ETag><Size>5</Size><Type>Normal</Type><StorageClass>GLACIER</StorageClass>"
            "</Contents><Contents><Key>l</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
            "<ETag>&quot;f&quot;</ETag><Size>6</Size><StorageClass>STANDARD_IA</StorageClass></Contents></ListBucketResult>")
    assert parse_objects_page(body) == [S3Object("k", 5, "2026-01-02T03:04:05.000Z", "GLACIER", "e"),
                                        S3Object("l", 6, "2026-01-02T03:04:05.000Z", "STANDARD_IA", "f")]
