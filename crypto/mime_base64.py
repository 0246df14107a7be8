"""Base64 bodies of MIME entities decoded as RFC 2045 6.8 asks, at SIMD speed.

An S/MIME message is base64 twice over (the envelope, and inside it the signed data), and
decoding took more time than the RSA decryption and AES together: the stdlib's
``binascii.a2b_base64`` decodes about 400 MB/s, pybase64 (C with SIMD) about ten times as
fast on the same line-broken input.

The answer is always the stdlib's: pybase64 discards characters outside the alphabet as
``a2b_base64`` does, but goes on decoding after a padding ``=`` where ``a2b_base64`` stops.
So pybase64 only decodes bodies whose first ``=`` is followed by nothing but padding and
white space (every body a sender's software writes); anything else, and anything pybase64
refuses, is left to ``a2b_base64`` with its own answer or error.
"""

from __future__ import annotations

import binascii

import pybase64

_PADDING_AND_SPACE = b"= \t\r\n"


def decode_base64(body: bytes) -> bytes:
    """``binascii.a2b_base64(body)`` (non-strict); raises ``binascii.Error`` as it does."""
    first_pad = body.find(b"=")
    if first_pad < 0 or not body[first_pad:].translate(None, _PADDING_AND_SPACE):
        try:
            return pybase64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            pass  # the stdlib below decides, with its own message
    return binascii.a2b_base64(body)
