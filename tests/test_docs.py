from pathlib import Path

from apps.core.capabilities import markdown_table

ROOT = Path(__file__).resolve().parent.parent


def test_permission_table_in_docs_matches_the_code():
    assert markdown_table() in (ROOT / "docs" / "permissions.md").read_text()
