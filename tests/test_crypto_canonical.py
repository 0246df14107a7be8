"""Canonical form of MIME entities: CRLF where they are text, every byte where they are binary.

``crypto.mime_raw.spans`` cuts an entity into header blocks, multipart framing and leaf
bodies as the stdlib parser would; ``canonicalize_entity`` normalises line endings in all but
binary bodies; ``encode_binary_bodies`` makes binary bodies base64 for SMTP. Checked against
the stdlib parser on random messages and on the cases that matter.
"""

from __future__ import annotations

import base64
import itertools
import random
import re
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crypto.mime_raw
from crypto.canonical import (
    bare_line_end,
    canonicalize,
    canonicalize_entity,
    encode_binary_bodies,
    is_canonical,
)
from crypto.mime_raw import MAX_SPAN_DEPTH, SpanKind, spans

NOISE = b"\r\n\x00\xffab. "  # no dash: random binary never holds a delimiter line


def _noise(rng: random.Random, size: int) -> bytes:
    return bytes(rng.choice(NOISE) for _ in range(size))


def _random_entity(rng: random.Random, depth: int = 0) -> bytes:
    """An entity of text, base64, binary and DER leaves in multiparts and attached messages,
    with LF or CRLF line ends and stray delimiter-like lines in text."""
    eol = rng.choice([b"\r\n", b"\r\n", b"\n"])
    kinds = ["text", "text", "binary", "base64", "der"]
    if depth < 3:
        kinds += ["multipart", "multipart", "message"]
    kind = rng.choice(kinds)
    if kind == "multipart":
        boundary = f"b{depth}-{rng.randint(0, 99)}".encode()
        label = rng.choice([b"", b"Content-Transfer-Encoding: binary" + eol])
        body = rng.choice([b"", b"preamble" + eol])
        for _ in range(rng.randint(1, 3)):
            body += b"--" + boundary + eol + _random_entity(rng, depth + 1) + eol
        body += b"--" + boundary + b"--" + eol + rng.choice([b"", b"epilogue" + eol])
        return (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"' + eol + label
                + eol + body)
    if kind == "message":
        label = rng.choice([b"", b"Content-Transfer-Encoding: binary" + eol])
        return (b"Content-Type: message/rfc822" + eol + label + eol
                + b"Subject: forwarded" + eol + _random_entity(rng, depth + 1))
    if kind == "binary":
        return (b"Content-Type: application/octet-stream" + eol
                + b"Content-Transfer-Encoding: binary" + eol + eol + _noise(rng, 60)
                + rng.choice([b"z", b""]))
    if kind == "der":
        return (b"Content-Type: application/pkcs7-mime; smime-type=signed-data" + eol + eol
                + b"\x30\x82" + _noise(rng, 40) + b"z")
    if kind == "base64":
        text = base64.encodebytes(rng.randbytes(80)).replace(b"\n", eol)
        return (b"Content-Type: application/pdf" + eol + b"Content-Transfer-Encoding: base64"
                + eol + eol + text)
    lines = [rng.choice([b"Hallo", b"", b"--b0-1x", b"-- ", b"x\ry"]) for _ in range(3)]
    return b"Content-Type: text/plain" + eol + eol + eol.join(lines)


def _corpus(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [_random_entity(rng) for _ in range(count)]


def _leaves(msg: Message) -> list[Message]:
    return [part for part in msg.walk() if not part.is_multipart()]


def _parts(msg: Message) -> list[Message]:
    payload = msg.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, Message)]


def _raw_payload(part: Message) -> bytes:
    """The body as the parser stored it (get_payload() would replace 8-bit bytes)."""
    payload = vars(part)["_payload"]
    assert isinstance(payload, str)
    return payload.encode("ascii", "surrogateescape")


def test_spans_cut_the_entity_into_the_parts_email_finds() -> None:
    for raw in _corpus(2046, 400):
        found = list(spans(raw))
        assert found[0].start == 0 and found[-1].end == len(raw)
        assert all(a.end == b.start for a, b in itertools.pairwise(found)), raw
        bodies = [raw[s.start : s.end] for s in found if s.kind is SpanKind.BODY]
        expected = [_raw_payload(p) for p in _leaves(message_from_bytes(raw, policy=compat32))]
        assert bodies == expected, raw


def test_without_binary_bodies_it_is_canonicalize() -> None:
    text_only = [raw for raw in _corpus(2049, 600)
                 if b"binary" not in raw and b"pkcs7" not in raw]
    assert len(text_only) > 50
    for raw in text_only:
        assert canonicalize_entity(raw) == canonicalize(raw), raw


def test_binary_bodies_keep_their_bytes_and_the_rest_is_canonical() -> None:
    for raw in _corpus(8551, 400):
        result = canonicalize_entity(raw)
        before = _leaves(message_from_bytes(raw, policy=compat32))
        after = _leaves(message_from_bytes(result, policy=compat32))
        assert len(before) == len(after), raw
        for old, new in zip(before, after, strict=True):
            binary = (old.get("content-transfer-encoding") == "binary"
                      or old.get_content_type() == "application/pkcs7-mime")
            assert _raw_payload(new) == (_raw_payload(old) if binary
                                         else canonicalize(_raw_payload(old))), raw
        # Outside the binary bodies nothing but CRLF is left.
        text = b"".join(result[s.start : s.end] for s in spans(result)
                        if not (s.kind is SpanKind.BODY and s.entity is not None
                                and (s.entity.transfer_encoding == "binary"
                                     or s.entity.content_type == "application/pkcs7-mime")))
        assert canonicalize(text) == text, raw


def test_a_binary_body_with_lf_headers() -> None:
    data = b"\x00\r\r\n\n\rA\nB\r"
    entity = (b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: Binary\n\n"
              + data)
    assert canonicalize_entity(entity) == (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: Binary\r\n\r\n"
        + data)


@pytest.mark.parametrize(("cte", "kept"), [(b"", True), (b"7bit", True), (b"binary", True),
                                            (b"base64", False)])
def test_der_of_an_smime_type_is_binary_whatever_the_label(cte: bytes, kept: bool) -> None:
    der = b"\x30\x80\n\r\x06\x09\n"
    label = b"Content-Transfer-Encoding: " + cte + b"\n" if cte else b""
    entity = b"Content-Type: application/pkcs7-mime; smime-type=signed-data\n" + label + b"\n"
    assert canonicalize_entity(entity + der).endswith(der) is kept
    # Base64 text of a signature not labelled binary is text: its line ends become CRLF.
    text = b"MIIB\nAAAA\n"
    assert canonicalize_entity(entity + text).endswith(b"MIIB\r\nAAAA\r\n") is (
        cte != b"binary")


def test_encode_binary_bodies() -> None:
    data = b"\x00\r\n.\r\nFrom x\n\r--not-the-boundary\r\x80"
    entity = (b'Content-Type: multipart/mixed; boundary="b"\r\n'
              b"Content-Transfer-Encoding: binary\r\n\r\n"
              b"--b\r\nContent-Type: text/plain\r\n\r\nHallo\r\n"
              b"--b\r\nContent-Type: application/octet-stream\r\n"
              b"Content-Transfer-Encoding:\r\n binary\r\nContent-Disposition: attachment\r\n"
              b"\r\n" + data + b"\r\n"
              b"--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: binary\r\n\r\n"
              b"Subject: inner\r\nContent-Transfer-Encoding: binary\r\n\r\n" + data + b"\r\n"
              b"--b--\r\n")
    encoded = encode_binary_bodies(entity)
    assert canonicalize(encoded) == encoded and b"\x00" not in encoded
    msg = message_from_bytes(encoded, policy=compat32)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    text, attachment, forwarded = _parts(msg)
    assert text.get_payload() == "Hallo"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment["Content-Disposition"] == "attachment"
    assert attachment.get_payload(decode=True) == data
    assert forwarded["Content-Transfer-Encoding"] == "8bit"
    [inner] = _parts(forwarded)
    assert inner["Subject"] == "inner" and inner.get_payload(decode=True) == data
    assert not [d for part in msg.walk() for d in part.defects]


def test_encode_binary_bodies_leaves_text_alone() -> None:
    entity = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa4\r\n"
    assert encode_binary_bodies(entity) is entity


def test_deep_nesting_is_bounded() -> None:
    depth = MAX_SPAN_DEPTH + 500
    entity = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary"
    entity += b"\r\n\r\n\x00\n\r"
    for level in range(depth):
        entity = (f'Content-Type: multipart/mixed; boundary="l{level}"\r\n\r\n--l{level}\r\n'
                  .encode() + entity + f"\r\n--l{level}--\r\n".encode())
    result = canonicalize_entity(entity)  # no RecursionError; deep down all is text
    assert result == canonicalize(entity)
    assert len(list(spans(entity))) <= 3 * MAX_SPAN_DEPTH + 3


def test_find_dashed_is_find(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(2046)
    for _ in range(20000):
        monkeypatch.setattr(crypto.mime_raw, "FIND_WINDOW", rng.randint(1, 9))
        data = bytes(rng.choice(b"-ab\r\n") for _ in range(rng.randint(0, 30)))
        needle = b"-" + bytes(rng.choice(b"-ab") for _ in range(rng.randint(0, 3)))
        pos = rng.randint(0, len(data))
        end = rng.randint(pos, len(data))
        assert crypto.mime_raw.find_dashed(data, needle, pos, end) == data.find(
            needle, pos, end), (data, needle, pos, end)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"\n\r", b"x" * 20]),
                max_size=30).map(b"".join))
def test_bare_line_end_is_the_rule_with_lookarounds(data: bytes) -> None:
    # The counting shortcut against the rule spelt out: a bare LF named before a bare CR.
    expected = ("LF" if re.search(rb"(?<!\r)\n", data)
                else "CR" if re.search(rb"\r(?!\n)", data) else None)
    assert bare_line_end(data) == expected
    assert is_canonical(data) is (expected is None)
