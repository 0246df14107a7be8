"""The portal's upload under load, against a real uvicorn-served portal: a body that stops
arriving is timed out (408, nothing stored) while a slow but steady one is taken; uploads
beyond ``max_concurrent_uploads`` are turned away (503 with Retry-After, nothing stored)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from gateway.db import make_engine, make_session_factory, read_scope
from gateway.models import Message
from gateway.portal.models import PortalRateHit, PortalSubmission
from gateway.settings import Settings
from tests.conftest import make_settings
from tests.support.portal import form_token, serving_portal

MAILBOX = "kinderschutz@jugendamt.example"
FIELDS = {"topic": "Kinderschutz", "name": "Erika Mustermann", "email": "",
          "case_reference": "", "message": "Anbei die Unterlagen."}
BOUNDARY = "xgateboundary"
TIMEOUT = 1.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "var", database_url, portal={
        "enabled": True, "min_fill_seconds": 0, "body_timeout_seconds": TIMEOUT,
        "max_concurrent_uploads": 2, "topics": [{"name": "Kinderschutz", "mailbox": MAILBOX}]})


@pytest.fixture
def portal(settings: Settings) -> Iterator[str]:
    with serving_portal(settings) as url:
        yield url


def _counts(settings: Settings) -> tuple[int, int, int]:
    engine = make_engine(settings)
    try:
        with read_scope(make_session_factory(engine)) as session:
            one, two, three = (int(session.scalar(select(func.count()).select_from(model)) or 0)
                               for model in (Message, PortalSubmission, PortalRateHit))
            return one, two, three
    finally:
        engine.dispose()


def _multipart(token: str, data: bytes) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             .encode() for name, value in {**FIELDS, "form_token": token}.items()]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
                 f'filename="Bescheid.pdf"\r\nContent-Type: application/pdf\r\n\r\n'.encode()
                 + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _open_upload(url: str, body: bytes, *, cookie: str = "", send: int | None = None
                 ) -> socket.socket:
    """A raw connection that sends the request's head and ``send`` bytes of its body."""
    where = urlsplit(url)
    sock = socket.create_connection((where.hostname or "", where.port or 80), timeout=10)
    head = (f"POST /upload HTTP/1.1\r\nHost: {where.netloc}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            + (f"Cookie: xgate_portal_form={cookie}\r\n" if cookie else "") + "\r\n")
    sock.sendall(head.encode() + body[:len(body) if send is None else send])
    return sock


def _answer(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    return received


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _post(client: httpx.Client, **extra: Any) -> httpx.Response:
    token = form_token(client)
    pdf = ("Bescheid.pdf", b"%PDF-1.4 Bescheid\n", "application/pdf")
    return client.post("/upload", data={**FIELDS, "form_token": token},
                       files=[("files", pdf)], **extra)


def test_a_body_that_stops_arriving_is_timed_out_with_a_page_and_nothing_stored(
        portal: str, settings: Settings) -> None:
    body = _multipart("x" * 40, b"%PDF-1.4\n" * 10_000)
    started = time.monotonic()
    sock = _open_upload(portal, body, send=len(body) // 2)
    answer = _answer(sock)  # the portal answers and closes; the client never sent the rest
    waited = time.monotonic() - started
    assert _status(answer) == 408
    assert TIMEOUT <= waited < TIMEOUT + 5
    assert b"connection: close" in answer.lower()
    assert "Die Übertragung ist abgebrochen".encode() in answer
    assert b"Nichts wurde gespeichert" in answer
    assert _counts(settings) == (0, 0, 0)


def test_a_slow_but_steady_body_is_taken(portal: str, settings: Settings) -> None:
    with httpx.Client(base_url=portal) as client:
        token = form_token(client)
        cookie = client.cookies["xgate_portal_form"]
    body = _multipart(token, b"%PDF-1.4\n" * 2_000)
    third = len(body) // 3
    sock = _open_upload(portal, body, cookie=cookie, send=third)
    for rest in (body[third:2 * third], body[2 * third:]):
        time.sleep(TIMEOUT * 0.6)  # together longer than the timeout, each gap shorter
        sock.sendall(rest)
    answer = _answer(sock)
    assert _status(answer) == 200, answer[-2000:]
    assert b'id="reference"' in answer
    assert _counts(settings) == (1, 1, 1)


def test_uploads_beyond_the_concurrent_limit_get_503_with_retry_after_and_nothing_stored(
        portal: str, settings: Settings) -> None:
    body = _multipart("x" * 40, b"%PDF-1.4\n" * 1_000)
    # Two uploads hold both slots: their bodies stop half way.
    stalled = [_open_upload(portal, body, send=len(body) // 2) for _ in range(2)]
    time.sleep(TIMEOUT / 4)
    with httpx.Client(base_url=portal) as client:
        turned_away = _post(client)
        assert turned_away.status_code == 503
        assert turned_away.headers["retry-after"] == "60"
        assert "Bitte versuchen Sie es in einer Minute noch einmal" in turned_away.text
        assert _counts(settings) == (0, 0, 0)
        # The stalled ones time out and give their slots back.
        assert [_status(_answer(sock)) for sock in stalled] == [408, 408]
        taken = _post(client)
        assert taken.status_code == 200, taken.text
    assert _counts(settings) == (1, 1, 1)


def test_a_body_without_content_length_chunked_is_taken(portal: str, settings: Settings) -> None:
    with httpx.Client(base_url=portal) as client:
        body = _multipart(form_token(client), b"%PDF-1.4\n" * 5_000)
        pieces = [body[n:n + 4096] for n in range(0, len(body), 4096)]
        answer = client.post("/upload", content=iter(pieces), headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        assert answer.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in answer.request.headers
    assert answer.status_code == 200, answer.text
    assert _counts(settings) == (1, 1, 1)
