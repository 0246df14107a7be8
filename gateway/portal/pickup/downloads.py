"""An attachment as a download: RFC 6266 file names, no sniffing, no caching."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from gateway.portal.filenames import clean_filename
from gateway.portal.pickup.content import Attachment


def content_disposition(raw: str) -> str:
    name = clean_filename(raw)
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def download_response(attachment: Attachment) -> Response:
    # Served as opaque bytes: never rendered by the portal's origin, whatever it claims.
    return Response(attachment.data, media_type="application/octet-stream", headers={
        "Content-Disposition": content_disposition(attachment.filename),
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
