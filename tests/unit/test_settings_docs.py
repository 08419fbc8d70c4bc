"""docs/configuration.md lists every setting of every DAG, exactly as the code declares them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def table() -> str:
    from include.core.settings import markdown_table
    from include.deploy_cleanup.settings import SETTINGS as DEPLOY_CLEANUP
    from include.housekeeping.settings import SETTINGS as HOUSEKEEPING
    from include.retention.settings import SETTINGS as RETENTION
    from include.storage_report.settings import SETTINGS as STORAGE_REPORT
    from include.upload.settings import SETTINGS as UPLOAD

    return markdown_table([STORAGE_REPORT, UPLOAD, RETENTION, DEPLOY_CLEANUP, HOUSEKEEPING])


def test_configuration_doc_has_the_generated_table():
    text = DOC.read_text()
    start = text.index("-->\n", text.index("<!-- generated from")) + len("-->\n")
    end = text.index("\n<!-- end of generated table -->")
    assert text[start:end] == table(), "regenerate the table in docs/configuration.md (see 'Adding a setting')"


def _examples() -> dict[str, object]:
    """The Variables of the "Examples" block of docs/configuration.md, by name (the JSON after each name)."""
    import json

    text = DOC.read_text()
    block = text[text.index("```json", text.index("Examples:")) + len("```json"):]
    block = block[:block.index("```")]
    decoder, found, at = json.JSONDecoder(), {}, 0
    while (start := block.find("s3ops_", at)) >= 0:
        name, _, rest = block[start:].partition(" ")
        value, used = decoder.raw_decode(rest.lstrip())
        found[name] = value
        at = start + len(name) + 1 + (len(rest) - len(rest.lstrip())) + used
    return found


def test_the_documented_variables_work_as_a_deployment_would_set_them():
    from include.deploy_cleanup.settings import SETTINGS as DEPLOY_CLEANUP
    from include.deploy_cleanup.tasks import dispatch_confs
    from include.storage_report.settings import SETTINGS as STORAGE_REPORT
    from include.upload.settings import SETTINGS as UPLOAD

    examples = _examples()
    assert sorted(examples) == ["s3ops_deploy_cleanup", "s3ops_storage_report", "s3ops_upload"]
    UPLOAD.resolve({}, examples["s3ops_upload"])
    STORAGE_REPORT.resolve({}, examples["s3ops_storage_report"])
    # a scheduled run checks every target as its plan would (an empty prefix is refused there: "/" is the root)
    confs = dispatch_confs(DEPLOY_CLEANUP.resolve({}, examples["s3ops_deploy_cleanup"]), datetime.now(UTC))
    assert [c["bucket"] for c in confs] == ["web-deploys", "api-deploys"]
