# PandaStack web, worker and beat image (the command differs per service; see docker-compose.yml).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=pandastack.settings.production

RUN groupadd --system --gid 10001 pandastack \
    && useradd --system --uid 10001 --gid pandastack --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin pandastack

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    && DJANGO_SETTINGS_MODULE=pandastack.settings.production DJANGO_SECRET_KEY=build \
       DJANGO_ALLOWED_HOSTS=x DATABASE_URL=sqlite:////tmp/x.db \
       PANDASTACK_SECRET_KEYS=MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA= \
       python manage.py collectstatic --noinput -v 0 \
    && rm -f /tmp/x.db \
    && mkdir -p /app/var \
    && chown pandastack:pandastack /app/var

USER pandastack
EXPOSE 8000

# ASGI under gunicorn with uvicorn workers: a log stream (`logs?follow=1`) holds a socket and a thread,
# never a worker, so open streams cannot starve the API. gunicorn still manages the processes
# (restarts, graceful reloads); after --graceful-timeout, streams still open are cut.
CMD ["gunicorn", "pandastack.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker", \
     "--bind", "0.0.0.0:8000", "--workers", "3", "--graceful-timeout", "10", "--access-logfile", "-"]
