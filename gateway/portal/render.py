"""Renders the portal's pages: its own templates (gateway/portal/templates), the user's
language (cookie or Accept-Language, German first) and the catalogue's ``portal.*`` texts."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.web.catalogue import text
from gateway.web.language import COOKIE, NAMES, choose
from gateway.web.templates import package_templates


class PortalRenderer:
    def __init__(self) -> None:
        self.templates = package_templates("gateway.portal")

    def page(self, request: Request, template: str, context: dict[str, Any] | None = None,
             *, status_code: int = 200) -> HTMLResponse:
        lang = choose(request.cookies.get(COOKIE), request.headers.get("accept-language"))
        values: dict[str, Any] = {"lang": lang.value, "t": text(lang), "languages": NAMES}
        values.update(context or {})
        return self.templates.TemplateResponse(request, template, values, status_code=status_code)
