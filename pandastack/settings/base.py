"""Settings shared by every environment. Everything that differs between machines is read from the
environment (see README.md, "Configuration"); the local, test and production modules only change
defaults."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A `.env` file beside manage.py is read when present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_htmx",
    "apps.core",
    "apps.accounts",
    "apps.teams",
    "apps.tokens",
    "apps.audit",
    "apps.deployments",
    "apps.secrets",
    "apps.events",
    "apps.cron",
    "apps.alerts",
    "apps.monitoring",
    "apps.databases",
    "apps.registries",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.DatabaseBusyMiddleware",
    "apps.core.middleware.ServiceUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "pandastack.urls"
WSGI_APPLICATION = "pandastack.wsgi.application"
ASGI_APPLICATION = "pandastack.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'pandastack.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The local default. Under ASGI requests run in parallel threads: with SQLite's default deferred
    # transactions a request that reads then writes (every token use records last_used_at) fails at
    # once with "database is locked" when another writes; IMMEDIATE transactions wait their turn, and
    # WAL lets reads go on meanwhile.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    # How long a connection waits for the write lock before "database is locked" (then the API answers
    # 503, apps.core.middleware.DatabaseBusyMiddleware); every transaction is short, so this is ample.
    DATABASES["default"]["OPTIONS"].setdefault("timeout", env.float("PANDASTACK_SQLITE_BUSY_TIMEOUT", default=20.0))
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # Django's ModelBackend, refusing while a username or client address is throttled.
    "apps.accounts.throttling.ThrottledModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# Password guessing (admin login, any password login): after this many failures for one username, or
# from one client address, within the window, logins for it are refused until the window ends.
PANDASTACK_LOGIN_MAX_FAILURES_PER_USERNAME = env.int("PANDASTACK_LOGIN_MAX_FAILURES_PER_USERNAME", default=5)
PANDASTACK_LOGIN_MAX_FAILURES_PER_ADDRESS = env.int("PANDASTACK_LOGIN_MAX_FAILURES_PER_ADDRESS", default=20)
PANDASTACK_LOGIN_THROTTLE_WINDOW_SECONDS = env.int("PANDASTACK_LOGIN_THROTTLE_WINDOW_SECONDS", default=300)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Guardian's anonymous user row is not wanted: anonymous requests never reach team data.
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis that went away must fail a cache call in a second or two, not hang the request (the
            # API throttle then lets requests through; see apps.core.api.throttling).
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 2.0},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.tokens.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Closed by default: a view that declares nothing denies everybody.
    "DEFAULT_PERMISSION_CLASSES": ["apps.core.api.permissions.DenyAll"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.IdCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["apps.core.api.throttling.TokenRateThrottle"],
    "EXCEPTION_HANDLER": "apps.core.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
PANDASTACK_API_THROTTLE_RATE = env("PANDASTACK_API_THROTTLE_RATE", default="1200/min")
# Long-lived streams (`logs?follow=1`) are served by the ASGI server without holding a worker each:
# at most this many open at once per token (else per signed-in user; over it: 429), each ended after
# PANDASTACK_STREAM_MAX_SECONDS with a last NDJSON line saying why, and re-checked every
# PANDASTACK_STREAM_CHECK_SECONDS (a revoked or expired token, a removed member, a lost capability
# ends the stream).
PANDASTACK_MAX_FOLLOWS_PER_TOKEN = env.int("PANDASTACK_MAX_FOLLOWS_PER_TOKEN", default=5)
PANDASTACK_STREAM_MAX_SECONDS = env.float("PANDASTACK_STREAM_MAX_SECONDS", default=3600.0)
PANDASTACK_STREAM_CHECK_SECONDS = env.float("PANDASTACK_STREAM_CHECK_SECONDS", default=5.0)
# A client that reads nothing for this long (every buffer full) is dropped: a stream parked in a send
# would otherwise outlive its deadline, its revocation and its slot (pandastack/asgi.py).
PANDASTACK_STREAM_STALL_SECONDS = env.float("PANDASTACK_STREAM_STALL_SECONDS", default=30.0)

SPECTACULAR_SETTINGS = {
    "TITLE": "PandaStack API",
    "DESCRIPTION": "Teams, projects, access control and tokens for the PandaStack platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI's files come from the drf-spectacular-sidecar package, not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "apps.teams.api.serializers.ROLE_CHOICES",
        "ServiceAccountRoleEnum": "apps.teams.api.serializers.SERVICE_ACCOUNT_ROLE_CHOICES",
        "AlertSeverityEnum": "apps.alerts.models.AlertSeverity",
        "EventSeverityEnum": "apps.events.models.Severity",
    },
}

# --- Tokens -------------------------------------------------------------------------------------
PANDASTACK_TOKEN_DEFAULT_EXPIRY_DAYS = env.int("PANDASTACK_TOKEN_DEFAULT_EXPIRY_DAYS", default=90)
PANDASTACK_TOKEN_MAX_EXPIRY_DAYS = env.int("PANDASTACK_TOKEN_MAX_EXPIRY_DAYS", default=365)

# --- Secrets --------------------------------------------------------------------------------------
# Fernet keys for variable values, comma-separated; the first encrypts, all decrypt (rotation:
# put a new key first, run `manage.py rotate_secret_keys`, then drop the old one).
PANDASTACK_SECRET_KEYS: list[str] = env.list("PANDASTACK_SECRET_KEYS", default=[])

# --- Notifications ---------------------------------------------------------------------------------
# Django 6.1's MAILERS (EMAIL_BACKEND is deprecated): SMTP, its options as JSON, e.g.
# DJANGO_EMAIL_OPTIONS='{"host": "smtp.example.com", "port": 587, "use_tls": true}'.
MAILERS = {
    "default": {
        "BACKEND": env("DJANGO_EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend"),
        "OPTIONS": env.json("DJANGO_EMAIL_OPTIONS", default={}),
    }
}
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", default="pandastack@localhost")
# First retry of a failed notification after this many seconds, doubling (five attempts in all).
PANDASTACK_DELIVERY_BACKOFF_SECONDS = env.float("PANDASTACK_DELIVERY_BACKOFF_SECONDS", default=5.0)
# Webhook targets on loopback, private, link-local or otherwise non-public addresses are refused
# (teams must not make the platform call its own network: SSRF) unless this is on. The local run and
# the tests turn it on; set it in production only when teams are trusted and need in-house receivers.
PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env.bool("PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=False)
# Image references naming a registry on a loopback, private or link-local address (`localhost:5000/x`,
# `10.0.0.5/x`, a name resolving there) are refused likewise: the engine would pull from the platform's
# own network for a tenant. Turn on only for an in-house registry that every team may use.
PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES = env.bool("PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES", default=False)

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL == "filesystem://":
    # The embedded local default: a broker in a folder, so a laptop run needs no Redis.
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Without it, kombu writes its exchange tables to ./control, wherever the process started.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The folder is read every this many seconds, and with one message taken at a time
        # (PREFETCH_MULTIPLIER 1) that bounds the worker at one task per interval: kombu's 1 s default
        # let a burst of deploys and variable changes queue for minutes. A listdir is cheap.
        "polling_interval": 0.1,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A broker that vanishes without closing its connections (a failover, a firewall) must fail a publish
    # within seconds rather than hang it (kombu waits forever by default).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2.0, "socket_timeout": 10.0}
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Reliable delivery: a task is acknowledged only after it ran, is re-queued when its worker dies,
# and a worker takes one message at a time so a crash loses at most the one it was running.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=14 * 60)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker whose broker is down waits for it however long it takes (Celery gives up after 100 tries,
# about 45 minutes, and the worker exits); it reconnects on a short schedule (pandastack.celery.Consumer).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CONSUMER = "pandastack.celery:Consumer"
# A write that needs a worker first asks the broker (one PING) and answers 503 service_unavailable,
# having changed nothing, when no answer comes within this many seconds (apps.core.broker).
PANDASTACK_BROKER_CHECK_TIMEOUT = env.float("PANDASTACK_BROKER_CHECK_TIMEOUT", default=1.0)
# Tasks whose publish failed after their transaction committed are kept in the database and published
# again when a worker (re)connects, and at this interval (seconds) by beat as a backstop.
PANDASTACK_PENDING_TASKS_RELAY_INTERVAL = env.float("PANDASTACK_PENDING_TASKS_RELAY_INTERVAL", default=30.0)
CELERY_TIMEZONE = "UTC"

# --- Logging ------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    # The worker's per-task lines for the sweep Celery beat sends every 2 s (apps.core.log_filters).
    "filters": {"routine_tasks": {"()": "apps.core.log_filters.QuietRoutineTasks"}},
    "loggers": {
        "celery.worker.strategy": {"filters": ["routine_tasks"]},
        "celery.app.trace": {"filters": ["routine_tasks"]},
    },
}

# --- Runtime: the Docker Engine, the router, deploys ------------------------------------------------
PANDASTACK_APPS_DOMAIN = env("PANDASTACK_APPS_DOMAIN", default="localhost")
PANDASTACK_DOCKER_URL = env("PANDASTACK_DOCKER_URL", default=None)  # None: DOCKER_HOST or the local socket
PANDASTACK_ROUTER_DIR = env.path("PANDASTACK_ROUTER_DIR", default=VAR_DIR / "router")
PANDASTACK_ROUTER_HTTP_PORT = env.int("PANDASTACK_ROUTER_HTTP_PORT", default=8080)
PANDASTACK_ROUTER_BIND = env("PANDASTACK_ROUTER_BIND", default="127.0.0.1")
PANDASTACK_HAPROXY_BIN = env("PANDASTACK_HAPROXY_BIN", default="haproxy")
# How long new containers get to pass their health check, and how long old ones drain.
PANDASTACK_HEALTH_TIMEOUT = env.float("PANDASTACK_HEALTH_TIMEOUT", default=60.0)
PANDASTACK_DRAIN_TIMEOUT = env.float("PANDASTACK_DRAIN_TIMEOUT", default=10.0)
# Labels added to every container the platform starts (tests mark their runs with one).
PANDASTACK_EXTRA_LABELS: dict[str, str] = env.dict("PANDASTACK_EXTRA_LABELS", default={})
PANDASTACK_RECONCILE_INTERVAL = env.float("PANDASTACK_RECONCILE_INTERVAL", default=15.0)
CELERY_BEAT_SCHEDULE = {
    "reconcile": {"task": "deployments.reconcile", "schedule": PANDASTACK_RECONCILE_INTERVAL},
    "relay-pending-tasks": {"task": "core.relay_pending_tasks", "schedule": PANDASTACK_PENDING_TASKS_RELAY_INTERVAL},
}

# --- Workers that stop or die (apps.core.leases, apps.core.shutdown) ----------------------------------
# Running work (a deployment, a database being provisioned, a backup or restore, a cron run being
# started) refreshes its row every PANDASTACK_HEARTBEAT_SECONDS; work not refreshed for
# PANDASTACK_WORKER_STALE_SECONDS lost its process (a SIGKILL, an OOM kill, a power cut) and is taken
# over by the takeover sweep, which runs every PANDASTACK_TAKEOVER_INTERVAL seconds (Celery beat): a
# deployment or a provisioning is resumed, a backup is marked failed with the reason, a restore
# likewise, a cron run whose scheduler died while starting it is failed. So a killed worker's work
# is picked up within stale + interval seconds (10 s by default) once a worker runs. Keep the stale
# time at several heartbeats (and above the cache lock's three): slow work that still beats is never
# taken over. (A graceful stop,
# SIGTERM, does not wait for any of this: the work is handed back at once, see apps.core.shutdown.)
PANDASTACK_HEARTBEAT_SECONDS = env.float("PANDASTACK_HEARTBEAT_SECONDS", default=2.0)
# PANDASTACK_STALE_DEPLOYMENT_SECONDS is its former name (deployments only), still read.
PANDASTACK_WORKER_STALE_SECONDS = env.float(
    "PANDASTACK_WORKER_STALE_SECONDS", default=env.float("PANDASTACK_STALE_DEPLOYMENT_SECONDS", default=8.0)
)
PANDASTACK_TAKEOVER_INTERVAL = env.float("PANDASTACK_TAKEOVER_INTERVAL", default=2.0)
# A sweep queued while no worker ran is dropped once the next one is due (`expires`): a worker coming
# back runs one, not the backlog.
CELERY_BEAT_SCHEDULE["takeover"] = {
    "task": "core.take_over_stale_work",
    "schedule": PANDASTACK_TAKEOVER_INTERVAL,
    "options": {"expires": PANDASTACK_TAKEOVER_INTERVAL},
}

# --- Monitoring and alerts (`manage.py run_monitor`) ---------------------------------------------
# Metric buckets are kept this long per resolution (seconds), then rolled up and pruned: at most
# 2,160 + 4,032 + 2,160 rows per app.
PANDASTACK_METRICS_RETENTION = {
    10: env.int("PANDASTACK_METRICS_RAW_RETENTION", default=6 * 3600),  # 10-second buckets: 6 hours
    300: env.int("PANDASTACK_METRICS_5M_RETENTION", default=14 * 86400),  # 5-minute buckets: 14 days
    3600: env.int("PANDASTACK_METRICS_1H_RETENTION", default=90 * 86400),  # 1-hour buckets: 90 days
}
# The router sends its access log (one UDP datagram per request) to 127.0.0.1 on this port; the
# monitor reads it and flushes counts every PANDASTACK_METRICS_FLUSH_SECONDS. 0: no access log.
PANDASTACK_ROUTER_ACCESS_LOG_PORT = env.int("PANDASTACK_ROUTER_ACCESS_LOG_PORT", default=5140)
PANDASTACK_METRICS_FLUSH_SECONDS = env.float("PANDASTACK_METRICS_FLUSH_SECONDS", default=1.0)
PANDASTACK_STATS_INTERVAL = env.float("PANDASTACK_STATS_INTERVAL", default=10.0)  # engine CPU/memory samples
PANDASTACK_HEALTH_CHECK_INTERVAL = env.float("PANDASTACK_HEALTH_CHECK_INTERVAL", default=10.0)
PANDASTACK_HEALTH_CHECK_TIMEOUT = env.float("PANDASTACK_HEALTH_CHECK_TIMEOUT", default=3.0)
PANDASTACK_HEALTH_DOWN_AFTER = env.int("PANDASTACK_HEALTH_DOWN_AFTER", default=2)  # consecutive failed checks
PANDASTACK_ALERT_EVALUATION_INTERVAL = env.float("PANDASTACK_ALERT_EVALUATION_INTERVAL", default=2.0)
# The collecting monitor asks the router's master this often whether it runs, and starts it again with
# all its routes when it died (HAProxy killed -9 or crashed): routes are back within about this long.
PANDASTACK_ROUTER_WATCH_INTERVAL = env.float("PANDASTACK_ROUTER_WATCH_INTERVAL", default=2.0)
# Platform events and notification deliveries are kept this many days.
PANDASTACK_HISTORY_RETENTION_DAYS = env.int("PANDASTACK_HISTORY_RETENTION_DAYS", default=90)
# An incident's timeline starts this long before it opened (the deploys and crashes that led to it).
PANDASTACK_INCIDENT_LOOKBACK_SECONDS = env.int("PANDASTACK_INCIDENT_LOOKBACK_SECONDS", default=1800)
# Bearer token for the platform's Prometheus endpoint (/metrics); empty: the endpoint answers 404.
PANDASTACK_PROMETHEUS_TOKEN = env("PANDASTACK_PROMETHEUS_TOKEN", default="")

# --- Database backups (apps.databases.backups) -----------------------------------------------------
# Backups go through Django's storage API under the alias "backups": a folder by default (files
# 0600: they hold the tenants' data). Another backend (e.g. django-storages' S3) takes its options as
# JSON in PANDASTACK_BACKUP_STORAGE_OPTIONS.
PANDASTACK_BACKUP_STORAGE_BACKEND = env(
    "PANDASTACK_BACKUP_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
)
PANDASTACK_BACKUP_STORAGE_LOCATION = env("PANDASTACK_BACKUP_STORAGE_LOCATION", default=str(VAR_DIR / "backups"))
_backup_options: dict = {"location": PANDASTACK_BACKUP_STORAGE_LOCATION}
if PANDASTACK_BACKUP_STORAGE_BACKEND == "django.core.files.storage.FileSystemStorage":
    _backup_options |= {"file_permissions_mode": 0o600, "directory_permissions_mode": 0o700}
STORAGES["backups"] = {
    "BACKEND": PANDASTACK_BACKUP_STORAGE_BACKEND,
    "OPTIONS": _backup_options | env.json("PANDASTACK_BACKUP_STORAGE_OPTIONS", default={}),
}
# A dump or load (pg_dump, mariadb-dump, …) is stopped after this many seconds; keep it below
# CELERY_TASK_SOFT_TIME_LIMIT.
PANDASTACK_BACKUP_TOOL_TIMEOUT = env.float("PANDASTACK_BACKUP_TOOL_TIMEOUT", default=600.0)
# A backup or restore still queued (never started) after this long lost its task message (far beyond
# the task time limit). One that started and whose worker died is noticed by its heartbeat instead
# (PANDASTACK_WORKER_STALE_SECONDS).
PANDASTACK_BACKUP_STALE_SECONDS = env.int("PANDASTACK_BACKUP_STALE_SECONDS", default=3600)
CELERY_IMPORTS = ["apps.databases.backup_tasks"]  # not a tasks.py module: autodiscovery misses it
CELERY_BEAT_SCHEDULE["database-backups"] = {"task": "databases.scheduled_backups", "schedule": 300.0}
# Size and connections of every database, shown per database and checked against the plan.
CELERY_BEAT_SCHEDULE["database-usage"] = {"task": "databases.refresh_usage", "schedule": 300.0}
# Deleted databases whose grace period (the plan's database_delete_grace_hours) ended: dropped with their backups.
CELERY_BEAT_SCHEDULE["database-purge"] = {"task": "databases.purge_deleted", "schedule": 300.0}
