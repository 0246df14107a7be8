"""Rendering a page: the template, the user's language and its text catalogue, who is logged
in and the CSRF token every form carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from admin_ui.security.identity import Staff
from admin_ui.security.rights import console_areas
from gateway.web import language
from gateway.web.catalogue import text
from gateway.web.language import Language
from gateway.web.templates import package_templates


def language_of(request: Request) -> Language:
    return language.choose(request.cookies.get(language.COOKIE),
                           request.headers.get("accept-language"))


class Renderer:
    def __init__(self) -> None:
        self.templates = package_templates("admin_ui")

    def page(self, request: Request, template: str, context: Mapping[str, Any] | None = None,
             *, status: int = 200, staff: Staff | None = None,
             csrf_token: str | None = None) -> HTMLResponse:
        lang = language_of(request)
        values = {
            "t": text(lang), "lang": lang.value,
            "languages": {choice.value: language.NAMES[choice] for choice in Language},
            "staff": staff, "csrf_token": csrf_token or (staff.csrf_token if staff else None),
            "current_path": request.url.path,
            "console_areas": console_areas(staff) if staff else (), **(context or {}),
        }
        return self.templates.TemplateResponse(request, template, values, status_code=status)
