"""Composes the staff and admin web app: error answers, routers, and the background work
that lives as long as the app (the key expiry watch).

Who may use a route is decided by its router's dependency on admin_ui.security.rights; the
routes without a login are all in admin_ui.public. Security middleware (headers, CSRF,
sessions) is to be added here, in front of every router.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from admin_ui.api.consents import MasterKeySource, consents_router
from admin_ui.api.errors import install_error_handlers
from admin_ui.api.keys import keys_router
from admin_ui.api.partners import partners_router
from admin_ui.public.monitoring import monitoring_router
from admin_ui.public.wkd import wkd_router
from gateway.clock import Clock, system_clock
from gateway.db import make_engine, make_session_factory
from gateway.keydir.expiry import ExpiryWatch
from gateway.settings import Settings


def create_app(settings: Settings, *, clock: Clock = system_clock) -> FastAPI:
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    expiry_watch = ExpiryWatch(sessions, clock, settings.crypto.expiry_warning_days)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        expiry_watch.start()
        yield
        expiry_watch.stop()
        engine.dispose()

    app = FastAPI(title="xgate admin", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    install_error_handlers(app)
    app.include_router(keys_router(sessions, clock, settings))
    app.include_router(partners_router(sessions, clock))
    app.include_router(consents_router(sessions, clock, settings, MasterKeySource(settings)))
    app.include_router(wkd_router(sessions, clock, settings))
    app.include_router(monitoring_router(sessions, clock, settings))
    return app
