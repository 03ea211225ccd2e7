"""Celery entry points: fetch by id, call the orchestrator. Thin and idempotent."""

import logging

from celery import shared_task

from apps.deployments import orchestrator
from apps.runtime.engine import EngineError
from apps.runtime.router import RouterError

log = logging.getLogger(__name__)


@shared_task(name="deployments.run", bind=True, max_retries=3, default_retry_delay=5)
def deployment_run(self, deployment_id: int) -> None:  # noqa: ANN001 - Celery's bound task
    try:
        orchestrator.run_deployment(deployment_id)
    except orchestrator.DeployFailed as exc:
        # Only raised while another operation holds the app: try again shortly.
        raise self.retry(exc=exc) from exc


@shared_task(name="deployments.converge_app")
def app_converge(app_id: int) -> None:
    orchestrator.converge_app(app_id)


@shared_task(name="deployments.teardown_app")
def app_teardown(app_id: int) -> None:
    orchestrator.teardown_app(app_id)


@shared_task(name="deployments.sync_router")
def router_sync() -> None:
    orchestrator.sync_router()


@shared_task(name="deployments.reconcile")
def reconcile() -> dict[str, int] | None:
    try:
        return orchestrator.reconcile()
    except (EngineError, RouterError) as exc:
        # E.g. a laptop without Docker or HAProxy: say so once per run, do not fail the beat.
        log.warning("reconcile skipped: %s", exc)
        return None
