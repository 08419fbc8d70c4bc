"""Reading S3's error answers: botocore's ``ClientError.response["Error"]`` in one place.

Anything else (a connection error, a bug) has no S3 code: ``error_code`` returns ``""`` for it and
``error_text`` names the exception type instead.
"""

from __future__ import annotations


def _error(exc: BaseException) -> dict[str, object] | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):
        return response["Error"]
    return None


def error_code(exc: BaseException) -> str:
    """S3's error code (``"NoSuchKey"``, ``"SlowDown"``, ``"403"`` …), or ``""`` when ``exc`` is no S3 answer."""
    err = _error(exc)
    return str(err.get("Code") or "") if err is not None else ""


def error_text(exc: BaseException) -> str:
    """``"<code>: <message>"`` for an S3 error, ``"<ExceptionType>: <text>"`` otherwise (reports, audits)."""
    err = _error(exc)
    if err is not None:
        return f"{err.get('Code') or 'Error'}: {err.get('Message') or ''}".strip()
    return f"{type(exc).__name__}: {exc}"


#: what to do when S3 refused to list or abort incomplete multipart uploads (the uploader's log, the Uploads page)
ABORT_ADVICE = ("those uploads stay open and billed; give the credentials s3:ListBucketMultipartUploads and "
                "s3:AbortMultipartUpload, or the bucket a lifecycle rule with AbortIncompleteMultipartUpload")
