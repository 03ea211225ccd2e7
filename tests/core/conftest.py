from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _backup_storage(settings, tmp_path: Path) -> None:
    """Each test's backup files in a folder of its own, gone with the test's temporary directory
    (the guard tests store a backup file behind the download route)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
