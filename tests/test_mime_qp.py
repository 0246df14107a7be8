"""decode_qp in pieces gives binascii.a2b_qp's answer for every input, split anywhere a
piece may end (after an LF), for bytes and for the parser's text."""

from __future__ import annotations

import binascii

from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.mime_qp import decode_qp

TOKENS = [b"=\r\n", b"=\n", b"=\r", b"=3D", b"=C3=A4", b"=", b"==", b"=4", b"=ZZ", b"\r\n",
          b"\n", b"\r", b"abc", b" ", b"\t", b"_", b"\xff", b"=\r\nx", b"=\rX\n"]


@settings(max_examples=500, deadline=None)
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=200), piece=st.integers(1, 40),
       cut=st.integers(0, 30))
def test_the_same_bytes_as_a2b_qp_in_one_go(tokens: list[bytes], piece: int, cut: int) -> None:
    data = b"".join(tokens)
    start, end = min(cut, len(data)), max(len(data) - cut, min(cut, len(data)))
    expected = binascii.a2b_qp(data[start:end])
    assert decode_qp(data, start, end, piece=piece) == expected
    text = data.decode("ascii", "surrogateescape")
    if text.isascii():
        assert decode_qp(text, piece=piece) == binascii.a2b_qp(text)


def test_a_large_body_in_pieces() -> None:
    text = (b"Gespr=C3=A4ch f=C3=BCr das Kind, vertraulich =3D wichtig. " * 30 + b"=\r\n") * 3000
    assert decode_qp(text) == binascii.a2b_qp(text)
    assert decode_qp(text, 5, len(text) - 7) == binascii.a2b_qp(text[5:-7])
