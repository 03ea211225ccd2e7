"""Settings for the test suite: PostgreSQL and Redis from DATABASE_URL / REDIS_URL (set by
scripts/test), fast password hashing, tasks run by real workers only where a test starts one."""

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
# Tests that start a real worker read results back through Redis.
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL or None)  # noqa: F405
