"""``RawEntity.decoded`` gives what the email package's ``get_payload(decode=True)`` gives
(inline PGP is classified on it), quoted-printable by a direct ``a2b_qp`` on the body's
bytes included: odd escapes, soft breaks at every line end style, bytes beyond ASCII."""

from __future__ import annotations

import os
import quopri
from email import message_from_bytes
from email.policy import compat32

import pytest

from crypto.mime_raw import entity_at

QP_BODIES = [
    b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA=3D=3D\r\n-----END PGP MESSAGE-----\r\n",
    b"=2D=2D=2D=2D=2DBEGIN PGP SIGNED MESSAGE=2D=2D=2D=2D=2D\r\n",
    b"soft=\r\nbreak=\nand=\rmore=\r\n",
    b"bad =ZZ escape, lower =e4 hex, lone = sign, trailing =",
    b"tabs\t \r\nand spaces   \r\n",
    "Grüße \u202e und mehr".encode() + b"\r\n=C3=BC\r\n",
    b"",
    quopri.encodestring(os.urandom(4096)),
]


@pytest.mark.parametrize("body", QP_BODIES)
@pytest.mark.parametrize("cte", ["quoted-printable", "Quoted-Printable", "base64", "8bit"])
@pytest.mark.parametrize("strip_eol", [False, True])
def test_decoded_is_what_get_payload_decodes(body: bytes, cte: str, strip_eol: bool) -> None:
    raw = (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
           + cte.encode() + b"\r\n\r\n" + body)
    entity = entity_at(raw, 0, len(raw))
    head = raw[: raw.index(b"\r\n\r\n") + 4]
    # The body as the email package would hold it: with strip_eol, that of an inner part,
    # whose last line end belongs to the boundary that follows.
    reference = message_from_bytes(head + entity.body(raw, strip_eol=strip_eol),
                                   policy=compat32)
    assert entity.decoded(raw, strip_eol=strip_eol) == reference.get_payload(decode=True)
