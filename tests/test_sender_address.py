"""The author's address is parsed once per distinct From field, not once per stage: stages
read it from different parses of the header block (the envelope's, the decrypted entity's,
the full parse), and a From brought up from inside the encryption is read anew."""

from __future__ import annotations

from datetime import UTC, datetime
from email import utils

import pytest

from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.pipeline.stages import sender as sender_module
from gateway.pipeline.stages.sender import sender_address

OUTER = (b"From: =?utf-8?q?J=C3=BCrgen?= <Fachdienst@Jugendamt-B.example>\r\nTo: x@y.example\r\n"
         b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIIB\r\n")
INNER_SAME = (b"From: =?utf-8?q?J=C3=BCrgen?= <Fachdienst@Jugendamt-B.example>\r\n"
              b"Content-Type: text/plain\r\n\r\nText\r\n")
INNER_OTHER = b"From: leitung@jugendamt-b.example\r\nContent-Type: text/plain\r\n\r\nText\r\n"


def _context() -> MessageContext:
    return MessageContext(message_id=1, queue_id="Q", direction=Direction.INBOUND,
                          mail_from="bounce@jugendamt-b.example",
                          received_at=datetime(2026, 12, 5, tzinfo=UTC), attempt=1, raw=OUTER,
                          pending=["x@y.example"])


def test_the_same_from_is_parsed_once_whatever_parse_it_comes_from(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[object] = []

    def counting(values: list[str]) -> list[tuple[str, str]]:
        parsed.append(values)
        return utils.getaddresses(values)

    monkeypatch.setattr(sender_module, "getaddresses", counting)
    ctx = _context()
    assert sender_address(ctx) == "fachdienst@jugendamt-b.example"
    ctx.content = INNER_SAME  # another header object, the same From
    assert sender_address(ctx) == "fachdienst@jugendamt-b.example"
    assert len(parsed) == 1
    ctx.content = INNER_OTHER  # a protected From from inside
    assert sender_address(ctx) == "leitung@jugendamt-b.example"
    assert len(parsed) == 2


def test_no_usable_from_falls_back_to_the_envelope() -> None:
    ctx = _context()
    ctx.content = b"From: a@x.example, b@x.example\r\n\r\nText\r\n"
    assert sender_address(ctx) == "bounce@jugendamt-b.example"
    ctx.content = b"Subject: nichts\r\n\r\nText\r\n"
    assert sender_address(ctx) == "bounce@jugendamt-b.example"
