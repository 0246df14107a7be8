"""Composes the citizen portal: security headers in front of everything, the static assets,
error pages, the health answer and the routers (upload: gateway.portal.upload; pickup:
gateway.portal.pickup). No staff session, no staff route: it shares only the database and the
queue with the rest of the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles

from crypto.at_rest import MasterKey
from gateway.clock import Clock, system_clock
from gateway.db import make_engine, make_session_factory
from gateway.portal.headers import PortalHeaders
from gateway.portal.housekeeping import RateHitHousekeeping
from gateway.portal.pickup.routes import pickup_router
from gateway.portal.pickup.sender import CodeSender
from gateway.portal.render import PortalRenderer
from gateway.portal.upload_routes import upload_router
from gateway.portal.upload_slots import UploadSlots
from gateway.settings import Settings


def create_portal_app(settings: Settings, *, clock: Clock = system_clock,
                      code_sender: CodeSender | None = None) -> FastAPI:
    """``code_sender``: where SMS with pickup codes go (none is wired in by default; with
    one, ``[portal] self_service_codes`` lets a citizen ask for a new code)."""
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    renderer = PortalRenderer()
    # Submissions are sealed into the queue with it (and client addresses hashed under it).
    master_key = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    housekeeping = RateHitHousekeeping(sessions, settings.portal, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        housekeeping.start()
        yield
        housekeeping.stop()
        engine.dispose()

    app = FastAPI(title="xgate portal", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(PortalHeaders, tls=settings.portal.tls)
    app.state.sessions = sessions
    app.state.renderer = renderer
    app.state.clock = clock
    app.state.master_key = master_key

    @app.exception_handler(StarletteHTTPException)
    async def http_error_page(request: Request, exc: StarletteHTTPException) -> Response:
        # A page for people, never FastAPI's JSON; the text says what happened, no detail.
        key = "portal.problem.not_found" if exc.status_code == 404 else "portal.problem.bad_form"
        return renderer.page(request, "problem.html", {"key": key, "values": {}},
                             status_code=exc.status_code)

    # From the package (gateway/portal/static), never a CDN: the CSP allows this origin only.
    app.mount("/static", StaticFiles(packages=[("gateway.portal", "static")]), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # --- routers -------------------------------------------------------------------------
    # One bound for every body read into memory, uploads and pickup answers together: each
    # may hold up to max_upload_bytes, so the portal's memory is bounded by their sum.
    slots = app.state.upload_slots = UploadSlots(settings.portal.max_concurrent_uploads)
    # Upload: GET /, POST /upload, the receipt.
    app.include_router(upload_router(settings, sessions, master_key, clock, renderer, slots))
    # Pickup: the code form, the message, its downloads (gateway.portal.pickup.routes).
    app.include_router(pickup_router(sessions, master_key, clock, renderer,
                                     max_tries=settings.portal.pickup_max_tries,
                                     secure_cookies=settings.portal.tls,
                                     hostname=settings.smtp.hostname, settings=settings,
                                     slots=slots, code_sender=code_sender))
    # --- end of routers ------------------------------------------------------------------
    return app
