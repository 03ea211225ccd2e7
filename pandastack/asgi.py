"""The platform's ASGI application: what uvicorn (scripts/run) and gunicorn's uvicorn workers
(Dockerfile) serve. Under ASGI a long-lived stream (`logs?follow=1`) is an async response that holds
no worker (apps.core.api.streams); ordinary views stay sync and run in threads."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pandastack.settings.local")
django_application = get_asgi_application()

# Imported once Django is set up (the settings and the apps are loaded by get_asgi_application).
from django.conf import settings  # noqa: E402

from apps.core.api.streams import DropStalledClients  # noqa: E402

application = DropStalledClients(django_application, stall_seconds=settings.PANDASTACK_STREAM_STALL_SECONDS)
