"""crypto.mime_base64 answers exactly as the stdlib's non-strict base64 decoder does.

pybase64 decodes line-broken MIME base64 far faster, but differs from
``binascii.a2b_base64`` after a padding ``=``; whatever the input, the answer (bytes or the
error) must be the stdlib's.
"""

from __future__ import annotations

import base64
import binascii
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.mime_base64 import decode_base64

# The alphabet, padding, line breaks and characters a decoder must skip.
_CHARS = st.sampled_from(list(b"QUJDRA09az+/=\r\n \t!-_.\x00\xc3\xa9"))


def _stdlib(data: bytes) -> bytes | str:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return "error"


def _ours(data: bytes) -> bytes | str:
    try:
        return decode_base64(data)
    except binascii.Error:
        return "error"


@settings(max_examples=1000, deadline=None)
@given(st.lists(_CHARS, max_size=40).map(bytes))
def test_any_input_decodes_as_the_stdlib_decodes_it(data: bytes) -> None:
    assert _ours(data) == _stdlib(data)


@pytest.mark.parametrize("data", [
    b"QQ==QQ==",  # data after padding: the stdlib stops, pybase64 would go on
    b"QUI=\r\n\r\nextra text after the body",
    b"QUJD\r\n=\r\nREVG",
    b"QUI", b"Q", b"QUJDRA=", b"", b"====",
])
def test_what_pybase64_would_decode_differently(data: bytes) -> None:
    assert _ours(data) == _stdlib(data)


@pytest.mark.parametrize("size", [1, 2, 3, 57, 100_000, 1_000_001])
def test_mime_bodies(size: int) -> None:
    raw = os.urandom(size)
    lines = base64.encodebytes(raw)
    for body in (lines, lines.replace(b"\n", b"\r\n"), lines.replace(b"\n", b"\r\n") + b"\r\n"):
        assert decode_base64(body) == raw
