"""An attachment as a download: always ``attachment`` (RFC 6266, with ``filename*`` for any
name), ``nosniff``, and ``application/octet-stream`` for every type a browser could run or
render actively (HTML, SVG, XML, scripts): only a few passive types keep their own."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from mailboxes.tickets.reads import AttachmentContent

PASSIVE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif"})


def content_disposition(filename: str) -> str:
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                       for c in filename) or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def download(found: AttachmentContent) -> Response:
    media = found.content_type.lower() if found.content_type.lower() in PASSIVE_TYPES \
        else "application/octet-stream"
    return Response(found.data, media_type=media, headers={
        "Content-Disposition": content_disposition(found.filename),
        # Also set for every answer by gateway.web.headers; said here as this answer needs it.
        "X-Content-Type-Options": "nosniff"})
