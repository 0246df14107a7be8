"""The admin web app: health check, metrics, the JSON API (key directory, consent
register), and the office's own Web Key Directory (public); staff pages come later.

Route functions only call data functions (admin_ui.public.health, gateway.metrics); they never query
the database themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from admin_ui.api.consents import MasterKeySource, include_consents_api
from admin_ui.api.errors import install_error_handlers
from admin_ui.api.keys import include_keys_api
from admin_ui.public.health import check_health
from admin_ui.public.wkd import include_wkd
from gateway.clock import Clock, system_clock
from gateway.db import make_engine, make_session_factory
from gateway.keydir.expiry import ExpiryWatch, KeyExpiryCollector
from gateway.metrics import (
    PartsCollector,
    QueueCollector,
    metrics_dir,
    part_status_file,
    scrape_registry,
)
from gateway.settings import Settings


def create_app(settings: Settings, *, clock: Clock = system_clock) -> FastAPI:
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    queue_collector = QueueCollector(sessions, clock)
    parts_collector = PartsCollector(part_status_file(settings))
    warn_days = settings.crypto.expiry_warning_days
    expiry_collector = KeyExpiryCollector(sessions, clock, warn_days)
    expiry_watch = ExpiryWatch(sessions, clock, warn_days)
    samples_dir = metrics_dir(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        expiry_watch.start()
        yield
        expiry_watch.stop()
        engine.dispose()

    app = FastAPI(title="xgate admin", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    install_error_handlers(app)
    include_keys_api(app, sessions, clock, settings)
    include_consents_api(app, sessions, clock, settings, MasterKeySource(settings))
    include_wkd(app, sessions, clock, settings)

    # Plain ``def``: FastAPI runs these in its thread pool, so blocking database calls do not
    # stall the event loop.
    @app.get("/healthz")
    def healthz() -> JSONResponse:
        health = check_health(sessions, settings)
        return JSONResponse(health.as_json(), status_code=200 if health.database_reachable
                            else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        registry = scrape_registry(samples_dir, queue_collector, expiry_collector,
                                   parts_collector)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
