"""The portal's security headers: the staff app's set (gateway.web.headers), a strict CSP
without even data: images, a Permissions-Policy that switches off what an upload page never
needs, and HSTS when the portal itself serves HTTPS."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.web.headers import SECURITY_HEADERS

PORTAL_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])

PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()" for feature in (
        "camera", "microphone", "geolocation", "payment", "usb", "interest-cohort",
        "browsing-topics", "display-capture", "fullscreen",
    )
)

HSTS = "max-age=31536000; includeSubDomains"


def portal_headers(tls: bool) -> dict[str, str]:
    headers = dict(SECURITY_HEADERS)
    headers["Content-Security-Policy"] = PORTAL_CSP
    headers["Permissions-Policy"] = PERMISSIONS_POLICY
    headers["Referrer-Policy"] = "no-referrer"
    if tls:
        # Only when this listener speaks TLS itself: over plain HTTP browsers ignore it, and
        # behind a proxy the proxy decides.
        headers["Strict-Transport-Security"] = HSTS
    return headers


class PortalHeaders:
    """ASGI middleware: the headers above on every answer; ``no-store`` except for
    ``/static/`` (``no-cache``), as a receipt page shows personal data."""

    def __init__(self, app: ASGIApp, tls: bool = False) -> None:
        self.app = app
        self.headers = portal_headers(tls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cache = "no-cache" if str(scope["path"]).startswith("/static/") else "no-store"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
                headers["Cache-Control"] = cache
            await send(message)

        await self.app(scope, receive, send_with_headers)
