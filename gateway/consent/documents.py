"""What a signed release form may be, checked before it is sealed: a PDF or an image, told by
its first bytes (never by the name or the type the browser claims), and clean in clamd's eyes.

The scan is kept by the office for years and opened by whoever checks a transfer; a file that
only calls itself a PDF, or carries malware, is refused before anything is stored. Unlike mail
(which waits in the queue until clamd answers), an upload has no later scan: clamd down or
unable to read it is a refusal, fail closed, and the caseworker tries again.
"""

from __future__ import annotations

import logging

from gateway.consent.errors import ConsentError
from gateway.settings import Settings
from scanning.clamd_client import ClamdClient
from scanning.errors import ScannerUnavailable

log = logging.getLogger(__name__)

# Magic numbers of the formats a scanner or a phone camera produces, and the type stored.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
ACCEPTED_TYPES = tuple(dict.fromkeys(kind for _, kind in _MAGIC))


def scan_type(data: bytes) -> str | None:
    """The media type ``data`` is by its first bytes, if it is a PDF or an image we keep."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


def checked_scan(settings: Settings, data: bytes) -> str:
    """The media type of an uploaded scan that may be stored, or ConsentError."""
    kind = scan_type(data)
    if kind is None:
        raise ConsentError("the release document is not a PDF or an image (PNG, JPEG, "
                           "TIFF)", key="not_a_scan")
    try:
        answer = ClamdClient.from_settings(settings).instream(data)
    except ScannerUnavailable as exc:
        log.warning("release document not stored: clamd gave no verdict (%s)", exc)
        raise ConsentError("the release document could not be checked for viruses just now; "
                           "try again later", key="unscanned") from None
    if answer.infected is not None:
        raise ConsentError(f"the release document contains malware ({answer.infected})",
                           key="infected", signature=answer.infected)
    if not answer.clean:
        reason = answer.unscannable_reason or answer.error or answer.reply
        raise ConsentError(f"the release document could not be scanned ({reason})",
                           key="unscanned")
    return kind
