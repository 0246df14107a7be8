"""Large base64 attachments scanned without a decoded copy (scanning.deferred).

- The survey's contract: where ``needs_whole_look`` says no, the checks the scanner runs on a
  part (type policy whatever is blocked, encryption, archive members) find nothing in the
  whole data (generated data, and each way a check reads beyond the head).
- ``pieces()`` decodes exactly what one pass of the decoder gives, for every line layout,
  and refuses what is not pure base64 of the promised size.
- Against a real clamd: the verdict is the same with and without deferring, for malware, an
  armored OpenPGP message in the middle, a zip appended at the end, a PDF; and the scan of a
  deferred part allocates a fraction of it where a whole decode allocates it all.
"""

from __future__ import annotations

import base64
import io
import os
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scanning.parts
from gateway.mime.parsed import parse_message
from scanning.archives import ArchiveLimits, ArchiveRejected, iter_members
from scanning.config import ScannerConfig
from scanning.content_types import blocked_type
from scanning.deferred import (
    DEFER_FROM,
    HEAD,
    TAIL,
    Base64Body,
    DeferredPart,
    Survey,
    needs_whole_look,
    survey,
)
from scanning.encrypted import ARMOR, encryption_of
from scanning.parts import MimeLimits, raw_structure, scan_leaves
from scanning.scanner import MessageScanner
from scanning.verdict import ScanResult, Verdict
from tests.support.clamd import EICAR, EICAR_NAME, RunningClamd

MiB = 1 << 20
EVERY_KIND = ("executable", "office-macro", "script")
LIMITS = MimeLimits(max_parts=100, max_depth=20)


# --- the contract -----------------------------------------------------------------------------

def survey_of(data: bytes) -> Survey:
    return Survey(data[:HEAD], data[-TAIL:], ARMOR in data)


def checks_find_nothing(data: bytes, filename: str | None) -> bool:
    if blocked_type(data, filename, EVERY_KIND) is not None or encryption_of(data) is not None:
        return False
    try:
        return list(iter_members(data, filename or "part", ArchiveLimits())) == []
    except ArchiveRejected:  # a refusal is a finding too
        return False


# Starts that make some check look further, or find something at once.
STARTS = [b"MZ\x90\x00", b"ZM", b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
          b"%PDF-1.7\n", b"\x30\x82\x10\x00", b"-----BEGIN PKCS7-----\n", b"MI" + b"A" * 70,
          b"#!/bin/sh\n", b"\x7fELF", b"\xca\xfe\xba\xbe\x00\x00\x00\x02", b"\x1f\x8b\x08",
          b"BZh91AY&SY", b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07\x00", b"MSCF\x00\x00\x00\x00",
          b"\xfd7zXZ\x00",
          # The first OpenPGP packet tags _binary_kind looks into, old and new format.
          bytes([0x84]), bytes([0x8c]), bytes([0x90]), bytes([0xa0]), bytes([0xa8]),
          bytes([0xc1]), bytes([0xc3]), bytes([0xc4]), bytes([0xc8]), bytes([0xca])]
# Starts no check reads on from: photos (whose first byte is an OpenPGP packet header of
# another tag), anything else.
PLAIN_STARTS = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x18ftypmp42", b""]
# Placed somewhere after the head: only the armor and a zip end record (in the tail) count.
INSIDE = [b"", ARMOR + b"\r\nhQEMA\r\n", b"\r\n" + ARMOR, b"PK\x05\x06" + bytes(18),
          b"%PDF-", b"\xd0\xcf\x11\xe0", "VBA\0".encode("utf-16-le")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.sampled_from(STARTS + PLAIN_STARTS), inside=st.sampled_from(INSIDE),
       where=st.floats(0.0, 1.0), size=st.integers(HEAD + TAIL + 1024, 3 * (HEAD + TAIL)),
       seed=st.binary(min_size=16, max_size=16),
       filename=st.sampled_from([None, "akte.bin", "run.js", "bild.jpg", "a.exe"]))
def test_where_the_survey_says_no_the_checks_find_nothing_in_the_whole(
        start: bytes, inside: bytes, where: float, size: int, seed: bytes,
        filename: str | None) -> None:
    filler = (seed * (size // len(seed) + 1))[:size]
    data = bytearray(start + os.urandom(64) + filler)
    at = len(start) + int(where * (len(data) - len(start) - len(inside)))
    data[at:at + len(inside)] = inside
    whole = bytes(data)
    if not needs_whole_look(survey_of(whole), filename):
        assert checks_find_nothing(whole, filename)


@pytest.mark.parametrize("start", STARTS)
def test_each_start_that_a_check_reads_on_from_is_looked_at_whole(start: bytes) -> None:
    data = start + bytes(HEAD + TAIL)
    assert needs_whole_look(survey_of(data), "akte.bin")


@pytest.mark.parametrize("start", PLAIN_STARTS)
def test_photos_videos_and_the_like_need_no_whole_look(start: bytes) -> None:
    data = start + os.urandom(HEAD + TAIL)
    assert not needs_whole_look(survey_of(data), "bild.jpg")


@pytest.mark.parametrize("inside", INSIDE[1:4])
def test_armor_anywhere_and_a_zip_end_in_the_tail_are_looked_at_whole(inside: bytes) -> None:
    data = b"\x01" + bytes(HEAD) + inside + bytes(TAIL - 100)
    assert needs_whole_look(survey_of(data), "akte.bin")


def test_random_bytes_and_text_under_a_harmless_name_need_no_whole_look() -> None:
    assert not needs_whole_look(survey_of(b"\x01" + os.urandom(HEAD + TAIL)), "akte.bin")
    text = b"Hilfeplan, Gespraech am Montag.\r\n" * 10_000
    assert not needs_whole_look(survey_of(text), "akte.txt")
    # The same text under a name Windows runs is a script: whole.
    assert needs_whole_look(survey_of(text), "akte.js")


# --- decoding piece by piece ------------------------------------------------------------------

def body_of(text: bytes, size: int) -> Base64Body:
    raw = b"header\r\n\r\n" + text + b"\r\n--b--\r\n"
    return Base64Body(raw, 10, 10 + len(text), size)


def lines(encoded: bytes, width: int, brk: bytes) -> bytes:
    return brk.join(encoded[i:i + width] for i in range(0, len(encoded), width))


@pytest.mark.parametrize("width,brk", [(76, b"\r\n"), (64, b"\n"), (70, b"\r\n"),
                                       (10**9, b"")])
@pytest.mark.parametrize("extra", [0, 1, 2])
def test_pieces_are_the_decoded_body_for_every_line_layout(width: int, brk: bytes,
                                                           extra: int) -> None:
    data = b"\x01" + os.urandom(3 * MiB + extra)  # a start that needs no whole look
    body = body_of(lines(base64.b64encode(data), width, brk), len(data))
    assert b"".join(body.pieces()) == data == body.whole()
    found = survey(body, "akte.bin")
    assert found is not None
    assert (found.head, found.tail, found.armor) == (data[:HEAD], data[-TAIL:], False)


@pytest.mark.parametrize("spoil", [
    lambda t: t[:1000] + b"!" + t[1001:],  # a character outside the alphabet
    lambda t: t[:1000] + b"=" + t[1001:],  # padding in the middle
    lambda t: t[:-4] + b"A===",  # too much padding
    lambda t: t[:-1],  # one character short
    lambda t: t[:2 * MiB] + b"QQ==" + t[2 * MiB:],  # padded block far inside
], ids=["junk", "padding-inside", "padding-3", "short", "padded-block-inside"])
def test_what_is_not_pure_base64_of_the_promised_size_is_not_surveyed(
        spoil: Callable[[bytes], bytes]) -> None:
    data = b"\x01" + os.urandom(3 * MiB)  # so that only the spoiling makes it refused
    body = body_of(spoil(lines(base64.b64encode(data), 76, b"\r\n")), len(data))
    assert survey(body, "akte.bin") is None


def test_the_survey_stops_as_soon_as_the_head_needs_the_whole_look(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A large PDF or zip (most large attachments) is not decoded twice: the survey ends
    after the first piece."""
    read: list[int] = []
    pieces = Base64Body.pieces

    def counted(self: Base64Body) -> Iterator[bytes]:
        for piece in pieces(self):
            read.append(len(piece))
            yield piece

    monkeypatch.setattr(Base64Body, "pieces", counted)
    for start, whole in ((b"%PDF-1.7\n", True), (b"\x01", False)):
        data = start + os.urandom(3 * MiB)
        read.clear()
        found = survey(body_of(lines(base64.b64encode(data), 76, b"\r\n"), len(data)),
                       "akte.bin")
        assert (found is None) == whole
        assert (len(read) == 1) if whole else (sum(read) == len(data)), read


def test_armor_across_two_pieces_is_found() -> None:
    for shift in range(-len(ARMOR), 1, 7):
        data = bytearray(b"\x01" + os.urandom(3 * MiB))  # a start that needs no whole look
        at = 3 * (1 << 20) // 4 + shift  # where the first piece of base64 text ends
        data[at:at + len(ARMOR)] = ARMOR
        encoded = base64.b64encode(bytes(data))  # no line breaks: pieces cut at 1 MiB
        found = survey(body_of(encoded, len(data)), "akte.bin")
        assert found is not None and found.armor, shift


# --- the scanner, against a real clamd --------------------------------------------------------

@pytest.fixture(scope="module")
def scanner() -> Iterator[MessageScanner]:
    clamd = RunningClamd.start(max_message_bytes=64 * MiB, clamd_max_file_size_mb=64,
                               clamd_max_scan_size_mb=128)
    scanner = MessageScanner(clamd.client(timeout=120), ScannerConfig())
    yield scanner
    scanner.close()
    clamd.close()


def message_with(attachment: bytes, name: str) -> bytes:
    body = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    return (b"From: a@partner.example\r\nTo: kita@jugendamt.example\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nDie Akte im Anhang.\r\n"
            b"--b\r\nContent-Type: application/octet-stream; name=\"" + name.encode()
            + b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n--b--\r\n")


def scan(scanner: MessageScanner, raw: bytes) -> tuple[ScanResult, bool]:
    """The verdict as the pipeline gets it (its parse leaves large bodies unread), and
    whether the attachment was deferred."""
    structure = raw_structure(raw, scanner.mime_limits)
    assert structure.problem is None
    parsed = parse_message(raw, structure.leaf_bodies)
    deferred = any(isinstance(leaf.part, DeferredPart)
                   for leaf in scan_leaves(parse_message(raw, structure.leaf_bodies), LIMITS,
                                           raw))
    return scanner.scan(parsed, raw, structure_checked=True), deferred


def zip_appended() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("rechnung.exe", b"MZ" + bytes(62) + b"PE\0\0")
    return b"\x01" + os.urandom(DEFER_FROM) + buffer.getvalue()


CASES: dict[str, tuple[Callable[[], bytes], bool, Verdict]] = {
    # name: (attachment, deferred?, verdict)
    "random": (lambda: b"\x01" + os.urandom(DEFER_FROM), True, Verdict.CLEAN),
    "malware": (lambda: EICAR + b"\n" + bytes(DEFER_FROM), True, Verdict.INFECTED),
    "photo": (lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(DEFER_FROM), True,
              Verdict.CLEAN),
    "armor-inside": (lambda: b"\x01" + os.urandom(DEFER_FROM // 2) + b"\r\n" + ARMOR
                     + b"\r\n\r\nhQEMA1234\r\n-----END PGP MESSAGE-----\r\n"
                     + os.urandom(DEFER_FROM // 2), False, Verdict.UNSCANNABLE),
    "zip-appended": (zip_appended, False, Verdict.BLOCKED),
    "pdf": (lambda: b"%PDF-1.7\n" + os.urandom(DEFER_FROM), False, Verdict.CLEAN),
    "small": (lambda: b"\x01" + os.urandom(DEFER_FROM - 1024), False, Verdict.CLEAN),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_the_verdict_is_the_same_with_and_without_deferring(
        scanner: MessageScanner, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make, expect_deferred, verdict = CASES[case]
    raw = message_with(make(), "akte.bin")
    result, deferred = scan(scanner, raw)
    assert (deferred, result.verdict) == (expect_deferred, verdict)
    monkeypatch.setattr(scanning.parts, "DEFER_FROM", 1 << 40)
    whole, deferred = scan(scanner, raw)
    assert not deferred
    assert (result.verdict, sorted(map(str, result.findings))) == \
        (whole.verdict, sorted(map(str, whole.findings)))
    if case == "malware":
        assert EICAR_NAME in str(result.findings)


@pytest.mark.slow
def test_a_deferred_attachment_is_scanned_without_a_decoded_copy(
        scanner: MessageScanner) -> None:
    size = 2 * DEFER_FROM
    for start, deferred_expected in ((b"\x01", True), (b"%PDF-1.7\n", False)):
        raw = message_with(start + os.urandom(size), "akte.bin")
        structure = raw_structure(raw, scanner.mime_limits)
        parsed = parse_message(raw, structure.leaf_bodies)
        tracemalloc.start()
        try:
            result = scanner.scan(parsed, raw, structure_checked=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.findings == ()
        if deferred_expected:
            assert peak < size / 4, peak
        else:  # the same scan with the whole decoded copy: the measure can tell them apart
            assert peak > size, peak
