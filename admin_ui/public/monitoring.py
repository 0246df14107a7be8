"""/healthz and /metrics, for the office's monitoring (not for the internet).

Route functions only call data functions (admin_ui.public.health, gateway.metrics); they
never query the database themselves.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.public.health import check_health
from gateway.clock import Clock
from gateway.keydir.expiry import KeyExpiryCollector
from gateway.metrics import (
    PartsCollector,
    QueueCollector,
    metrics_dir,
    part_status_file,
    scrape_registry,
)
from gateway.settings import Settings


def monitoring_router(sessions: sessionmaker[Session], clock: Clock,
                      settings: Settings) -> APIRouter:
    router = APIRouter()
    queue_collector = QueueCollector(sessions, clock)
    parts_collector = PartsCollector(part_status_file(settings))
    expiry_collector = KeyExpiryCollector(sessions, clock, settings.crypto.expiry_warning_days)
    samples_dir = metrics_dir(settings)

    # Plain ``def``: FastAPI runs these in its thread pool, so blocking database calls do not
    # stall the event loop.
    @router.get("/healthz")
    def healthz() -> JSONResponse:
        health = check_health(sessions, settings)
        return JSONResponse(health.as_json(), status_code=200 if health.database_reachable
                            else 503)

    @router.get("/metrics")
    def metrics() -> Response:
        registry = scrape_registry(samples_dir, queue_collector, expiry_collector,
                                   parts_collector)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
