"""The local run: SQLite, a folder broker, DEBUG on. Nothing here is safe for production."""

from pandastack.settings.base import *  # noqa: F403
from pandastack.settings.base import VAR_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-development-only-not-a-secret")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
VAR_DIR.mkdir(exist_ok=True)
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
# Mail is printed to the console unless a backend is configured.
MAILERS["default"]["BACKEND"] = env(  # noqa: F405
    "DJANGO_EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
)
REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] = [  # noqa: F405
    "rest_framework.renderers.JSONRenderer",
    "rest_framework.renderers.BrowsableAPIRenderer",
]

if not PANDASTACK_SECRET_KEYS:  # noqa: F405
    # The local run makes a development key once and keeps it beside the SQLite database.
    import sys

    from cryptography.fernet import Fernet

    _key_file = VAR_DIR / "dev-secret-key"
    if not _key_file.exists():
        _key_file.write_text(Fernet.generate_key().decode())
        _key_file.chmod(0o600)
    PANDASTACK_SECRET_KEYS = [_key_file.read_text().strip()]
    print(
        f"WARNING: PANDASTACK_SECRET_KEYS is not set; secrets are encrypted with a DEVELOPMENT key kept in"
        f" {_key_file}. Set PANDASTACK_SECRET_KEYS for anything but a local trial.",
        file=sys.stderr,
    )
# Local receivers (a webhook on this machine) are fine for a local trial.
PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env.bool("PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=True)
