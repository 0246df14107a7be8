"""The scanner's memory for a 10 MB attachment, against a real clamd: what MessageScanner.scan
allocates (tracemalloc, after the message was parsed) stays below three times the message,
in base64, in quoted-printable and inside a zip. The decoded copy exists once; the second
look at the message sends views into the raw bytes, not a copy."""

from __future__ import annotations

import base64
import io
import os
import quopri
import tracemalloc
import zipfile
from collections.abc import Iterator
from email import policy
from email.message import Message
from email.parser import BytesParser

import pytest

from scanning.config import ScannerConfig
from scanning.scanner import MessageScanner
from tests.support.clamd import RunningClamd

MiB = 1024 * 1024
SIZE = 10 * MiB


@pytest.fixture(scope="module")
def clamd() -> Iterator[RunningClamd]:
    """A clamd of its own whose stream limit takes a 10 MB attachment."""
    clamd = RunningClamd.start(max_message_bytes=40 * MiB, clamd_max_file_size_mb=40,
                               clamd_max_scan_size_mb=100)
    yield clamd
    clamd.close()


@pytest.fixture(scope="module")
def scanner(clamd: RunningClamd) -> Iterator[MessageScanner]:
    scanner = MessageScanner(clamd.client(timeout=60), ScannerConfig())
    yield scanner
    scanner.close()


def message(body: bytes, encoding: str, name: str) -> bytes:
    return (b"From: a@partner.example\r\nTo: kita@jugendamt.example\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nDie Akte im Anhang.\r\n"
            b"--b\r\nContent-Type: application/octet-stream; name=\"" + name.encode() + b"\"\r\n"
            b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + body
            + b"\r\n--b--\r\n")


def in_base64() -> bytes:
    return message(base64.encodebytes(os.urandom(SIZE)).replace(b"\n", b"\r\n"), "base64",
                   "akte.bin")


def in_quoted_printable() -> bytes:
    text = (b"Hilfeplan f\xfcr das Kind, Gespr\xe4ch am Montag =, 100 %.\n" * (SIZE // 50))
    return message(quopri.encodestring(text).replace(b"\n", b"\r\n"), "quoted-printable",
                   "akte.txt")


def in_a_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("akte.bin", os.urandom(SIZE))
    return message(base64.encodebytes(buffer.getvalue()).replace(b"\n", b"\r\n"), "base64",
                   "akte.zip")


@pytest.mark.slow
@pytest.mark.parametrize("make", [in_base64, in_quoted_printable, in_a_zip],
                         ids=["base64", "quoted-printable", "zip"])
def test_scanning_a_10_mb_attachment_allocates_less_than_three_times_the_message(
        scanner: MessageScanner, make: object) -> None:
    assert callable(make)
    raw: bytes = make()
    parsed: Message = BytesParser(policy=policy.default).parsebytes(raw)
    tracemalloc.start()
    try:
        result = scanner.scan(parsed, raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.clean, result.detail
    print(f"\npeak {peak / MiB:.1f} MiB for a {len(raw) / MiB:.1f} MiB message "
          f"({peak / len(raw):.2f} times)")
    assert peak < 3 * len(raw), f"peak {peak / MiB:.0f} MiB"
