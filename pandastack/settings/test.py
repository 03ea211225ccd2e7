"""Settings for the test suite: PostgreSQL and Redis from DATABASE_URL / REDIS_URL (set by
scripts/test), fast password hashing, tasks run by real workers only where a test starts one."""

import tempfile

from pandastack.settings.base import *  # noqa: F403
from pandastack.settings.base import env

SECRET_KEY = env("DJANGO_SECRET_KEY", default="test-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve static files through the finders (no collectstatic before tests).
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
# The broker gets its own Redis database: tests clear the cache database between tests, which
# must not take the broker's queues and bindings with it. Results come back the same way.
if REDIS_URL:  # noqa: F405
    _broker = REDIS_URL.rsplit("/", 1)[0] + "/" + str((int(REDIS_URL.rsplit("/", 1)[1] or 0) + 1) % 16)  # noqa: F405
    CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=_broker)
    CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=_broker)
# Short waits: test images start in well under a second.
PANDASTACK_HEALTH_TIMEOUT = env.float("PANDASTACK_HEALTH_TIMEOUT", default=20.0)
PANDASTACK_DRAIN_TIMEOUT = env.float("PANDASTACK_DRAIN_TIMEOUT", default=3.0)
# A fixed key for tests only (the e2e worker process must share it); never used elsewhere.
PANDASTACK_SECRET_KEYS = env.list("PANDASTACK_SECRET_KEYS", default=["3cK39bdHjGef-eVP4uODNhRieCuiO-M5fSoq18SGUrU="])
# The tests' webhook receivers listen on 127.0.0.1 (tests of the refusal turn this off).
PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env.bool("PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=True)
# Database backups: a folder of the tests' own (the backup tests give each test a fresh one).
STORAGES["backups"] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {
        "location": env(
            "PANDASTACK_BACKUP_STORAGE_LOCATION",
            default=f"{tempfile.gettempdir()}/pandastack-test-backups",
        )
    },
}
