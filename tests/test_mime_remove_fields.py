"""Removing header fields on the raw bytes: the same bytes as ever, and no copy of the
message when there is nothing to remove."""

from __future__ import annotations

import pytest

from gateway.mime.headers import (
    CRLF,
    field_name,
    header_fields,
    remove_fields,
    split_header_block,
)


def _joined(data: bytes, drop: str) -> bytes:
    """What remove_fields always returned: the kept fields joined, a blank line, the body."""
    block, body = split_header_block(data)
    kept = [f for f in header_fields(block) if field_name(f) != drop]
    return CRLF.join(kept) + CRLF + CRLF + body


CASES = [
    b"From: a@b.example\r\nX-Xgate-Signature: valid\r\nSubject: x\r\n\r\nbody\r\n",
    b"From: a@b.example\r\nSubject: folded\r\n  on two lines\r\n\r\nbody\r\n\r\nmore\r\n",
    b"X-Xgate-Signature: valid\r\n\tfolded\r\n\r\n",
    b"\r\nNo headers at all\r\n",
    b"\r\n\r\n",
    b"Subject: no blank line after the headers\r\n",
    b"Subject: bare LF\n\nbody\n",
    b"",
    b" leading continuation\r\nSubject: x\r\n\r\nbody",
]


@pytest.mark.parametrize("data", CASES)
@pytest.mark.parametrize("drop", ["x-xgate-signature", "x-absent"])
def test_the_same_bytes_as_before(data: bytes, drop: str) -> None:
    assert remove_fields(data, lambda f: field_name(f) == drop) == _joined(data, drop)


def test_nothing_removed_is_no_copy() -> None:
    data = b"From: a@b.example\r\nSubject: x\r\n\r\n" + b"A" * 1_000_000
    assert remove_fields(data, lambda f: False) is data
    removed = remove_fields(data, lambda f: field_name(f) == "subject")
    assert removed == b"From: a@b.example\r\n\r\n" + b"A" * 1_000_000
