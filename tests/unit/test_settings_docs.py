"""docs/configuration.md lists every setting of every DAG, exactly as the code declares them."""

from __future__ import annotations

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
