"""Production: every secret and address comes from the environment; nothing insecure defaults."""

from django.core.exceptions import ImproperlyConfigured

from pandastack.settings.base import *  # noqa: F403
from pandastack.settings.base import PANDASTACK_SECRET_KEYS, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
# Served under ASGI (gunicorn + uvicorn workers), where each request runs in a thread of its own: a
# persistent connection would be left behind by every such thread (Django's docs: disable them under
# ASGI), so connections are closed at the end of each request by default.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
# Apps are served over plain HTTP at <app>.<team>.<apps domain>: HSTS with includeSubDomains (or a
# preload entry, which implies it and cannot be taken back quickly) on a parent domain would make
# browsers refuse every app there. Turn both on only once every subdomain is served over HTTPS.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
# `check --deploy` warns about exactly these two while they are off; off is the deliberate default
# above (apps on plain-HTTP subdomains), so silence only those two checks and only while off.
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

if not PANDASTACK_SECRET_KEYS:
    raise ImproperlyConfigured(
        "PANDASTACK_SECRET_KEYS is not set: production refuses to start without the keys that encrypt"
        " variables and secrets. Make one with: python -c 'from cryptography.fernet import Fernet;"
        " print(Fernet.generate_key().decode())'"
    )
