"""An attachment as a download: RFC 6266 file names, no sniffing, no caching."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from starlette.responses import Response

from gateway.portal.pickup.content import Attachment

FALLBACK = "anhang"


def safe_name(raw: str) -> str:
    """The last path part, without control or direction-override characters."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    return " ".join(name.split()).lstrip(". ")[:120] or FALLBACK


def content_disposition(raw: str) -> str:
    name = safe_name(raw)
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def download_response(attachment: Attachment) -> Response:
    # Served as opaque bytes: never rendered by the portal's origin, whatever it claims.
    return Response(attachment.data, media_type="application/octet-stream", headers={
        "Content-Disposition": content_disposition(attachment.filename),
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
