"""Composes the staff and admin web app: security headers in front of everything, error
answers (JSON for the API, pages for people), the static assets, the routers, and the
background work that lives as long as the app (the key expiry watch).

Who may use a route is decided by its router's guard (admin_ui.security.guard: identity and
CSRF before the body) and its dependency on admin_ui.security.rights; the routes without a
login are admin_ui.public and the login pages (admin_ui.pages.auth).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from admin_ui.api.consents import MasterKeySource, consents_router
from admin_ui.api.keys import keys_router
from admin_ui.api.partners import partners_router
from admin_ui.errors import install_error_handlers
from admin_ui.pages.audit.routes import audit_router
from admin_ui.pages.auth.routes import auth_router
from admin_ui.pages.consent.routes import consent_router
from admin_ui.pages.home.routes import home_router
from admin_ui.pages.hotline.routes import hotline_router
from admin_ui.pages.keys.routes import keys_page_router
from admin_ui.pages.mailboxes.routes import mailbox_overview, mailboxes_router
from admin_ui.pages.partners.routes import partners_page_router
from admin_ui.pages.pickup import pickup_router
from admin_ui.pages.quarantine.routes import quarantine_router
from admin_ui.pages.render import Renderer
from admin_ui.pages.service_levels.routes import service_levels_router
from admin_ui.pages.tasks.routes import tasks_router
from admin_ui.pages.tickets.routes import tickets_router
from admin_ui.pages.transfers.routes import transfers_router
from admin_ui.pages.users.routes import users_router
from admin_ui.public.monitoring import monitoring_router
from admin_ui.public.wkd import wkd_router
from admin_ui.security.authentication import Authenticator
from admin_ui.security.login import WebLogin
from gateway.clock import Clock, system_clock
from gateway.db import make_engine, make_session_factory
from gateway.keydir.expiry import ExpiryWatch
from gateway.settings import Settings
from gateway.staff.housekeeping import LoginHousekeeping
from gateway.tasks.runner import TaskRunner
from gateway.web.headers import SecurityHeaders


def create_app(settings: Settings, *, clock: Clock = system_clock) -> FastAPI:
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    expiry_watch = ExpiryWatch(sessions, clock, settings.crypto.expiry_warning_days)
    housekeeping = LoginHousekeeping(sessions, settings, clock)
    master_key = MasterKeySource(settings)
    auth = Authenticator(sessions, settings, clock)
    renderer = Renderer()
    # Long operations started from pages (gateway.tasks.runner says how a page starts one).
    tasks = TaskRunner(sessions, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        expiry_watch.start()
        housekeeping.start()
        tasks.begin()
        yield
        tasks.stop()
        expiry_watch.stop()
        housekeeping.stop()
        engine.dispose()

    app = FastAPI(title="xgate admin", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(SecurityHeaders)
    install_error_handlers(app, renderer)
    app.state.tasks = tasks  # the one runner, for tests that start tasks of their own
    # From the package (admin_ui/static), never a CDN: the CSP allows this origin only.
    app.mount("/static", StaticFiles(packages=[("admin_ui", "static")]), name="static")
    app.include_router(auth_router(auth, WebLogin(auth, master_key), renderer))
    app.include_router(home_router(auth, renderer, mailbox_overview(sessions)))
    app.include_router(mailboxes_router(auth, sessions, master_key, renderer, clock))
    app.include_router(service_levels_router(auth, sessions, clock, renderer))
    app.include_router(hotline_router(auth, sessions, master_key, clock, renderer))
    app.include_router(tickets_router(auth, sessions, master_key, settings, clock, renderer))
    app.include_router(pickup_router(auth, sessions, master_key, clock, renderer))
    app.include_router(consent_router(auth, sessions, master_key, settings, clock, renderer))
    app.include_router(tasks_router(auth, sessions, clock, renderer))
    app.include_router(transfers_router(auth, sessions, renderer, clock))
    app.include_router(audit_router(auth, sessions, tasks, renderer, clock))
    app.include_router(quarantine_router(auth, sessions, master_key, settings, clock, renderer,
                                         tasks))
    app.include_router(users_router(auth, sessions, clock, renderer))
    app.include_router(partners_page_router(auth, sessions, master_key, settings, clock, renderer))
    app.include_router(keys_page_router(auth, sessions, master_key, settings, clock, renderer))
    app.include_router(keys_router(auth, sessions, clock, settings))
    app.include_router(partners_router(auth, sessions, clock))
    app.include_router(consents_router(auth, sessions, clock, settings, master_key))
    app.include_router(wkd_router(sessions, clock, settings))
    app.include_router(monitoring_router(sessions, clock, settings))
    return app
