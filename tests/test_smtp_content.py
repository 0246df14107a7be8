"""The edge's content and address checks as plain functions (the listener tests cover the
wiring; these cover the edge cases cheaply)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.smtp import codes
from gateway.smtp.addresses import is_valid_address
from gateway.smtp.content import content_problem, has_bare_cr_or_lf, header_block_size
from gateway.smtp.trace import received_header, with_protocol


@pytest.mark.parametrize(("data", "bare"), [
    (b"", False), (b"a\r\nb\r\n", False), (b"\r\n\r\n", False),
    (b"a\nb", True), (b"a\rb", True), (b"\r", True), (b"\n", True), (b"a\r\r\n", True),
    (b"a\r\n\n", True), (b"\n\r\n", True), (b"\r\n.\n", True), (b"\r.\r", True),
])
def test_bare_cr_or_lf(data: bytes, bare: bool) -> None:
    assert has_bare_cr_or_lf(data) is bare


def test_header_block_size() -> None:
    assert header_block_size(b"\r\nbody", 100) == 0
    assert header_block_size(b"A: b\r\n\r\nbody", 100) == 6
    # All headers, no body: the whole message is the header block.
    assert header_block_size(b"A: b\r\nC: d\r\n", 100) == 12
    # Past the limit the answer only has to be over it, without scanning everything.
    assert header_block_size(b"A: " + b"x" * 10_000 + b"\r\n\r\nbody", 100) == 101


def test_checks_run_in_order() -> None:
    # A bare LF is reported even when NUL and a huge header block are there too.
    assert content_problem(b"A: \x00\n" + b"x" * 500, 10) == codes.BARE_LF
    assert content_problem(b"A: \x00\r" + b"x" * 500, 10) == codes.BARE_CR
    assert content_problem(b"A: \x00" + b"x" * 500, 10) == codes.NUL_IN_CONTENT
    assert content_problem(b"A: " + b"x" * 500, 10) == codes.HEADERS_TOO_LARGE
    assert content_problem(b"A: b\r\n\r\n\xff\xfe", 10) is None


@pytest.mark.parametrize(("address", "valid"), [
    ("kita@jugendamt.example", True), ("a.b+c@sub.jugendamt.example", True),
    ("a@b", False), ("@jugendamt.example", False), ("a@", False), ("a..b@x.example", False),
    (".a@x.example", False), ('"a b"@x.example', False), ("a@[192.0.2.1]", False),
    ("a@-x.example", False), ("ä@x.example", False), ("a@x_y.example", False),
    ("x" * 64 + "@x.example", True), ("x" * 65 + "@x.example", False),
    ("a@" + "l" * 63 + ".example", True), ("a@" + "l" * 64 + ".example", False),
])
def test_address_syntax(address: str, valid: bool) -> None:
    assert is_valid_address(address) is valid


def test_received_header_cannot_be_shaped_by_the_client() -> None:
    header = received_header(helo="evil) by trusted.example (x; ", peer_ip="192.0.2.1",
                             hostname="xgate.test", protocol=with_protocol(
                                 extended=True, tls=True, authenticated=False),
                             now=datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    assert header == (b"Received: from evil??by?trusted.example??x?? ([192.0.2.1])\r\n"
                      b"\tby xgate.test (xgate) with ESMTPS;\r\n"
                      b"\tWed, 01 May 2024 12:00:00 +0000\r\n")
