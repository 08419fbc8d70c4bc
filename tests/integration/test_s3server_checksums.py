"""The local server's flexible checksums on CompleteMultipartUpload, through boto3: a FULL_OBJECT
checksum is checked against the parts (a wrong one is refused and the upload stays open) and kept as
S3 keeps it (HeadObject, GetObjectAttributes, every version its own); a COMPOSITE checksum is the
checksum of the parts' checksums. The server gives moto its own checksum builder (one pass over the
parts instead of a second joined copy of the object; CRC32C really CRC32C:
scripts.s3server.one_pass_checksums): these tests pin down that clients see what S3 answers."""

from __future__ import annotations

import base64
import itertools
import os
import zlib
from typing import Any

import pytest
from awscrt.checksums import crc32c, crc64nvme
from botocore.exceptions import ClientError

MIB = 1024 * 1024
_ids = itertools.count()


def b64_crc64nvme(data: bytes) -> str:
    return base64.b64encode(crc64nvme(data).to_bytes(8, "big")).decode()


#: S3's CRC32 checksums, base64, computed here independently of the server
CRC32S = {
    "CRC32": lambda data: base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode(),
    "CRC32C": lambda data: base64.b64encode(crc32c(data).to_bytes(4, "big")).decode(),
}


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"checksums-{os.getpid()}-{next(_ids)}"
    s3.create_bucket(Bucket=name)
    return name


def full_object_upload(s3: Any, bucket: str, key: str, parts: list[bytes], *, checksum: str | None = None,
                       say_type: bool = True) -> dict[str, Any]:
    """Create, upload ``parts`` and complete with a FULL_OBJECT CRC64NVME (the right one unless given).
    Without ``say_type`` the upload does not name its checksum type: CRC64NVME is FULL_OBJECT anyway."""
    kind = {"ChecksumType": "FULL_OBJECT"} if say_type else {}
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC64NVME", **kind)
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=n,
                                                     Body=body)["ETag"]}
            for n, body in enumerate(parts, 1)]
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": done},
        ChecksumCRC64NVME=checksum or b64_crc64nvme(b"".join(parts)), **kind)


@pytest.mark.parametrize("say_type", [True, False], ids=["type-named", "type-implied"])
def test_a_full_object_checksum_is_kept_as_s3_keeps_it(s3: Any, bucket: str, say_type: bool) -> None:
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1234)]
    whole = b"".join(parts)
    answer = full_object_upload(s3, bucket, "big.dat", parts, say_type=say_type)

    assert answer["ChecksumCRC64NVME"] == b64_crc64nvme(whole) and answer["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="big.dat", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == b64_crc64nvme(whole)
    # moto's HeadObject names the type only when the upload named it (S3 always does); never another type
    assert head.get("ChecksumType") == ("FULL_OBJECT" if say_type else None)
    assert "COMPOSITE" not in str(head["ResponseMetadata"]["HTTPHeaders"])  # nothing says otherwise
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == len(whole)
    attributes = s3.get_object_attributes(Bucket=bucket, Key="big.dat", ObjectAttributes=["Checksum"])
    assert attributes["Checksum"] == {"ChecksumCRC64NVME": b64_crc64nvme(whole), "ChecksumType": "FULL_OBJECT"}
    assert s3.get_object(Bucket=bucket, Key="big.dat")["Body"].read() == whole


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C"])
def test_full_object_crc32_and_crc32c_are_computed_as_s3_does(s3: Any, bucket: str, algorithm: str) -> None:
    """moto 5.2.5 computed a CRC32C full-object checksum as CRC32 (without the crc32c package); the
    server computes every algorithm part by part."""
    parts = [os.urandom(5 * MIB), b"tail"]
    expected = CRC32S[algorithm](b"".join(parts))
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k.dat", ChecksumAlgorithm=algorithm, ChecksumType="FULL_OBJECT")
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="k.dat", UploadId=upload["UploadId"],
                                                     PartNumber=n, Body=body)["ETag"]}
            for n, body in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="k.dat", UploadId=upload["UploadId"], MultipartUpload={"Parts": done},
                                 ChecksumType="FULL_OBJECT", **{f"Checksum{algorithm}": expected})
    attributes = s3.get_object_attributes(Bucket=bucket, Key="k.dat", ObjectAttributes=["Checksum"])
    assert attributes["Checksum"] == {f"Checksum{algorithm}": expected, "ChecksumType": "FULL_OBJECT"}
    assert s3.head_object(Bucket=bucket, Key="k.dat", ChecksumMode="ENABLED")[f"Checksum{algorithm}"] == expected


def test_a_wrong_full_object_checksum_is_refused_and_the_upload_stays_open(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MIB), b"tail"]
    with pytest.raises(ClientError) as err:
        full_object_upload(s3, bucket, "big.dat", parts, checksum=b64_crc64nvme(b"other bytes"))
    assert err.value.response["Error"]["Code"] == "BadDigest"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    (upload,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert upload["Key"] == "big.dat"


@pytest.mark.parametrize("say_type", [True, False], ids=["type-named", "type-implied"])
def test_a_completion_moto_refuses_leaves_the_upload_as_it_was(s3: Any, bucket: str, say_type: bool) -> None:
    kind = {"ChecksumType": "FULL_OBJECT"} if say_type else {}
    parts = [os.urandom(5 * MIB), b"tail"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k.dat", ChecksumAlgorithm="CRC64NVME", **kind)
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="k.dat", UploadId=upload["UploadId"],
                                                     PartNumber=n, Body=body)["ETag"]}
            for n, body in enumerate(parts, 1)]
    complete = {"Bucket": bucket, "Key": "k.dat", "UploadId": upload["UploadId"],
                "ChecksumCRC64NVME": b64_crc64nvme(b"".join(parts)), **kind}
    with pytest.raises(ClientError) as err:  # the right checksum, a wrong ETag: moto refuses
        s3.complete_multipart_upload(**complete, MultipartUpload={"Parts": [{**done[0], "ETag": '"0"'}, done[1]]})
    assert err.value.response["Error"]["Code"] == "InvalidPart"

    s3.complete_multipart_upload(**complete, MultipartUpload={"Parts": done})
    attributes = s3.get_object_attributes(Bucket=bucket, Key="k.dat", ObjectAttributes=["Checksum"])
    assert attributes["Checksum"] == {"ChecksumCRC64NVME": b64_crc64nvme(b"".join(parts)), "ChecksumType": "FULL_OBJECT"}


def test_every_version_keeps_its_own_full_object_checksum(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first, second = [os.urandom(5 * MIB), b"one"], [os.urandom(5 * MIB), b"two"]
    full_object_upload(s3, bucket, "k.dat", first)
    full_object_upload(s3, bucket, "k.dat", second)

    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    got = {s3.head_object(Bucket=bucket, Key="k.dat", VersionId=v["VersionId"], ChecksumMode="ENABLED")["ChecksumCRC64NVME"]
           for v in versions}
    assert got == {b64_crc64nvme(b"".join(first)), b64_crc64nvme(b"".join(second))}


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C"])
def test_a_composite_checksum_is_a_checksum_of_the_parts_checksums(s3: Any, bucket: str, algorithm: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="c.dat", ChecksumAlgorithm=algorithm)
    parts = [os.urandom(5 * MIB), b"end"]
    done = [{"PartNumber": n, "ETag": r["ETag"], f"Checksum{algorithm}": r[f"Checksum{algorithm}"]}
            for n, body in enumerate(parts, 1)
            for r in [s3.upload_part(Bucket=bucket, Key="c.dat", UploadId=upload["UploadId"], PartNumber=n, Body=body,
                                     ChecksumAlgorithm=algorithm)]]
    s3.complete_multipart_upload(Bucket=bucket, Key="c.dat", UploadId=upload["UploadId"], MultipartUpload={"Parts": done})

    checksum = CRC32S[algorithm]  # the same function, applied to the parts' raw checksums joined
    part_checksums = b"".join(base64.b64decode(checksum(body)) for body in parts)
    attributes = s3.get_object_attributes(Bucket=bucket, Key="c.dat", ObjectAttributes=["Checksum"])
    assert attributes["Checksum"] == {f"Checksum{algorithm}": checksum(part_checksums), "ChecksumType": "COMPOSITE"}
    assert s3.get_object(Bucket=bucket, Key="c.dat")["Body"].read() == b"".join(parts)


@pytest.mark.parametrize("create", ["put_object", "create_multipart_upload"])
def test_the_local_server_refuses_a_key_over_1024_utf8_bytes_like_s3(s3: Any, bucket: str, create: str) -> None:
    """S3 counts a key's UTF-8 bytes: 1,024 fit, 1,025 are KeyTooLongError (moto 5.2.5 stores any length)."""
    fits, too_long = "k" * 1022 + "é", "k" * 1023 + "é"  # 1,024 and 1,025 bytes; 1,023 and 1,024 characters
    getattr(s3, create)(Bucket=bucket, Key=fits)
    with pytest.raises(ClientError) as refused:
        getattr(s3, create)(Bucket=bucket, Key=too_long)
    assert refused.value.response["Error"]["Code"] == "KeyTooLongError"
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", []) if create == "put_object" else \
        s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [o["Key"] for o in listed] == [fits]
