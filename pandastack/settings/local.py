"""The local run: SQLite, a folder broker, DEBUG on. Nothing here is safe for production."""

from pandastack.settings.base import *  # noqa: F403
from pandastack.settings.base import VAR_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-development-only-not-a-secret")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
VAR_DIR.mkdir(exist_ok=True)
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] = [  # noqa: F405
    "rest_framework.renderers.JSONRenderer",
    "rest_framework.renderers.BrowsableAPIRenderer",
]
