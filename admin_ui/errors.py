"""Every refusal and error answered the way the asker reads it: JSON for the API and the
public machine routes (admin_ui.api.errors), an HTML page in the user's language for
everything else, a redirect to the login for a page that needs one. Never a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.api.errors import ApiError, invalid_request_response, json_error
from admin_ui.pages.render import Renderer
from admin_ui.security.errors import (
    CsrfRefused,
    Forbidden,
    NotAuthenticated,
    SecondFactorPending,
    TooManyAttempts,
)

log = logging.getLogger(__name__)

# Routes for programs, not people: answered in JSON.
JSON_PREFIXES = ("/api/", "/.well-known/", "/healthz", "/metrics")
_MESSAGE_KEYS = {403: "error.403", 404: "error.404", 405: "error.405", 413: "error.413",
                 422: "error.422", 429: "login.locked_short", 503: "error.503"}


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(JSON_PREFIXES)


def install_error_handlers(app: FastAPI, renderer: Renderer) -> None:
    def page(request: Request, status: int, key: str | None = None,
             detail: str | None = None) -> Response:
        message_key = key or _MESSAGE_KEYS.get(status, "error.500")
        return renderer.page(request, "error.html", {
            "status": status, "message_key": message_key, "detail": detail}, status=status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if wants_json(request):
            return json_error(exc.status, exc.error, exc.message, exc.headers)
        return page(request, exc.status, detail=exc.message)

    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if wants_json(request):
            headers = {"WWW-Authenticate": exc.challenge} if exc.challenge else None
            return json_error(401, "unauthorized", exc.message, headers)
        target = "/login/code" if isinstance(exc, SecondFactorPending) else "/login"
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(TooManyAttempts)
    async def too_many(request: Request, exc: TooManyAttempts) -> Response:
        retry = str(max(1, int(exc.wait.total_seconds())))
        if wants_json(request):
            return json_error(429, "too_many_attempts", exc.message, {"Retry-After": retry})
        return page(request, 429, "login.locked_short", detail=None)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        csrf = isinstance(exc, CsrfRefused)
        if wants_json(request):
            return json_error(403, "csrf" if csrf else "forbidden", exc.message)
        return page(request, 403, "error.403.csrf" if csrf else "error.403")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if not wants_json(request):
            return page(request, exc.status_code)
        if exc.status_code == 404:
            return json_error(404, "not_found", f"no such resource: {request.url.path}")
        if exc.status_code == 405:
            return json_error(405, "method_not_allowed",
                              f"{request.method} is not allowed on {request.url.path}")
        return json_error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if wants_json(request):
            return invalid_request_response(exc.errors())
        return page(request, 422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # Logged with the traceback for the admins; the client learns only that it failed.
        log.error("internal error on %s %s", request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        if wants_json(request):
            return json_error(500, "internal_error", "internal error; see the server log")
        return page(request, 500)
