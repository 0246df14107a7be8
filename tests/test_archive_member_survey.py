"""Large archive members surveyed instead of held (scanning.archives.walker with
scanning.deferred.MEMBER_SURVEY): the scanner holds a member only for its type and
encryption checks, so a member of 16 MiB and more in which those checks can find nothing is
walked past, counted against the limits and not kept.

The contract: every member the survey leaves out is one where ``blocked_type`` (every kind)
and ``encryption_of`` answer None on its whole content; everything else comes out whole and
byte for byte, read a second time where only its end showed it is needed, and that second
reading is not counted against the limits again. The walker's logic is exercised with a
small threshold (a surveyor of 256 KiB) on many shapes, the real threshold once; and a
scan of a small zip that inflates to 64 MiB is held to well below the member's size.
"""

from __future__ import annotations

import base64
import io
import random
import zipfile
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser

import pytest

from scanning.archives import ArchiveLimits, ArchiveRejected, iter_members
from scanning.config import ScannerConfig
from scanning.content_types import blocked_type
from scanning.deferred import HEAD, MEMBER_SURVEY, _MemberSurvey
from scanning.encrypted import ARMOR, encryption_of
from scanning.scanner import MessageScanner
from scanning.verdict import Verdict
from tests.support.clamd import RunningClamd
from tests.support.memory import traced
from tests.test_scan_limits import make_zip

MiB = 1024 * 1024
SMALL_FROM = 256 * 1024
EVERY_KIND = ("executable", "office-macro", "script")


class _SmallSurvey(_MemberSurvey):
    from_bytes = SMALL_FROM


SMALL = _SmallSurvey()
LIMITS = ArchiveLimits(max_uncompressed_bytes=400 * MiB)


def noise(size: int, seed: int) -> bytes:
    # A first byte without the high bit: not an OpenPGP packet whose tag the check reads.
    data = bytearray(random.Random(seed).randbytes(size))
    data[0] = 0x41
    return bytes(data)


def armored_at(size: int, at: int, seed: int) -> bytes:
    data = bytearray(noise(size, seed))
    block = b"\n" + ARMOR + b"\n\nhQEMA+xyz\n=abcd\n-----END PGP MESSAGE-----\n"
    data[at:at + len(block)] = block
    return bytes(data)


def shapes(size: int) -> dict[str, bytes]:
    """Members of ``size`` bytes, of every kind the survey must tell apart."""
    eocd = noise(size, 7)[:-22] + b"PK\x05\x06" + bytes(18)
    return {
        "plain.bin": noise(size, 1),
        "text.txt": (b"Hilfeplan und Bericht des Jugendamts. " * (size // 38 + 1))[:size],
        "armor-middle.bin": armored_at(size, size // 2, 2),
        "armor-on-a-step.bin": armored_at(size, 5 * 64 * 1024 - 10, 3),
        "armor-at-the-end.bin": armored_at(size, size - 80, 4),
        "program.exe": b"MZ" + bytes(62) + noise(size - 64, 5),
        "report.pdf": b"%PDF-1.7\n" + noise(size - 9, 6),
        "appended.bin": eocd,
        "script.js": (b"var a = 1;\n" * (size // 11 + 1))[:size],
        "pgp.bin": b"\x85\x01\x0c" + noise(size - 3, 8)[1:] + b"\x00",
    }


def checks_find_nothing(content: bytes, name: str) -> bool:
    return blocked_type(content, name, EVERY_KIND) is None and encryption_of(content) is None


@pytest.mark.parametrize("size", [SMALL_FROM - 1, SMALL_FROM, 2 * SMALL_FROM + 123, 3 * MiB])
@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED],
                         ids=["stored", "deflated"])
def test_a_member_left_out_is_one_the_checks_find_nothing_in(size: int, method: int) -> None:
    members = shapes(size)
    data = make_zip(members, method)
    whole = dict(iter_members(data, "a.zip", LIMITS))
    surveyed = dict(iter_members(data, "a.zip", LIMITS, surveyor=SMALL))
    assert set(whole) == {f"a.zip/{name}" for name in members}
    for name, content in members.items():
        path = f"a.zip/{name}"
        assert whole[path] == content
        if path in surveyed:
            assert surveyed[path] == content  # whole, byte for byte
        else:
            assert size >= SMALL_FROM, "a small member is always held"
            assert checks_find_nothing(content, name), name
    if size >= SMALL_FROM:
        # What the survey is for: plain data and text are not held.
        assert "a.zip/plain.bin" not in surveyed and "a.zip/text.txt" not in surveyed
        # And what it must not miss, though only the end or the middle shows it.
        for name in ("armor-middle.bin", "armor-on-a-step.bin", "armor-at-the-end.bin",
                     "program.exe", "report.pdf", "appended.bin", "script.js"):
            assert f"a.zip/{name}" in surveyed, name


def test_a_member_read_twice_is_counted_once_against_the_limit() -> None:
    # Armor near the end: the member is read a second time, whole. Counted twice it would
    # break a limit it keeps.
    size = 3 * MiB
    content = armored_at(size, size - 100, 9)
    data = make_zip({"akte.bin": content}, zipfile.ZIP_DEFLATED)
    limits = ArchiveLimits(max_uncompressed_bytes=size + MiB)
    assert dict(iter_members(data, "a.zip", limits, surveyor=SMALL)) == {
        "a.zip/akte.bin": content}
    too_small = ArchiveLimits(max_uncompressed_bytes=size - MiB)
    with pytest.raises(ArchiveRejected, match="bytes uncompressed"):
        list(iter_members(data, "a.zip", too_small, surveyor=SMALL))


def test_nested_archives_are_still_opened_and_their_members_surveyed() -> None:
    inner = make_zip({"drin.bin": noise(SMALL_FROM * 2, 10), "drin.exe": b"MZ" + bytes(100)},
                     zipfile.ZIP_STORED)
    data = make_zip({"inner.zip": inner, "daneben.bin": noise(SMALL_FROM * 2, 11)},
                    zipfile.ZIP_STORED)
    paths = [path for path, _ in iter_members(data, "a.zip", LIMITS, surveyor=SMALL)]
    assert paths == ["a.zip/inner.zip", "a.zip/inner.zip/drin.exe"]


def test_members_of_a_tar_and_a_gzip_are_surveyed_alike() -> None:
    import gzip
    import tarfile

    content = noise(SMALL_FROM * 2, 12)
    armored = armored_at(SMALL_FROM * 2, SMALL_FROM + 5, 13)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("plain.bin", content), ("armored.bin", armored)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    members = dict(iter_members(buffer.getvalue(), "a.tar", LIMITS, surveyor=SMALL))
    assert members == {"a.tar/armored.bin": armored}
    assert dict(iter_members(gzip.compress(content), "a.bin.gz", LIMITS, surveyor=SMALL)) == {}
    assert dict(iter_members(gzip.compress(armored), "a.bin.gz", LIMITS,
                             surveyor=SMALL)) == {"a.bin.gz/a.bin": armored}


def test_the_real_threshold() -> None:
    size = MEMBER_SURVEY.from_bytes + HEAD
    plain, armored = noise(size, 14), armored_at(size, size - 200, 15)
    data = make_zip({"plain.bin": plain, "armored.bin": armored}, zipfile.ZIP_STORED)
    small = make_zip({"small.bin": noise(MEMBER_SURVEY.from_bytes - 1, 16)}, zipfile.ZIP_STORED)
    assert dict(iter_members(data, "a.zip", LIMITS, surveyor=MEMBER_SURVEY)) == {
        "a.zip/armored.bin": armored}
    assert len(dict(iter_members(small, "b.zip", LIMITS, surveyor=MEMBER_SURVEY))) == 1


# --- the scanner, against a real clamd ------------------------------------------------------


@pytest.fixture(scope="module")
def scanner() -> Iterator[MessageScanner]:
    clamd = RunningClamd.start(max_message_bytes=40 * MiB, clamd_max_file_size_mb=100,
                               clamd_max_scan_size_mb=200)
    scanner = MessageScanner(clamd.client(timeout=120), ScannerConfig())
    yield scanner
    scanner.close()
    clamd.close()


def words_text(size: int) -> bytes:
    """Random words, a block repeated past deflate's window: about 10:1, within the ratio
    limit."""
    words = [b"Hilfeplan", b"Jugendamt", b"Kind", b"Bericht", b"Termin", b"Akte",
             b"Gespraech", b"Familie"]
    rng = random.Random(17)
    block = b" ".join(rng.choice(words) for _ in range(40_000)) + b"\n"
    return (block * (size // len(block) + 1))[:size]


def _message(name: str, data: bytes) -> bytes:
    return (b"From: a@partner.example\r\nTo: kita@jugendamt.example\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nDie Akte im Anhang.\r\n"
            b"--b\r\nContent-Type: application/zip; name=\"" + name.encode() + b"\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(data).replace(b"\n", b"\r\n") + b"\r\n--b--\r\n")


@pytest.mark.slow
def test_a_small_zip_of_text_is_scanned_without_holding_its_64_mib_member(
        scanner: MessageScanner) -> None:
    data = make_zip({"protokoll.txt": words_text(64 * MiB)}, zipfile.ZIP_DEFLATED)
    assert len(data) < 8 * MiB
    raw = _message("protokolle.zip", data)
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    with traced() as peak:
        result = scanner.scan(parsed, raw)
        used = peak()
    assert result.verdict is Verdict.CLEAN, result.findings
    # Held whole, the member alone was 64 MiB; the survey holds at most 16 MiB of it.
    assert used < 40 * MiB, f"peak {used / MiB:.0f} MiB"


@pytest.mark.slow
def test_the_same_zip_with_a_program_is_still_blocked(scanner: MessageScanner) -> None:
    data = make_zip({"protokoll.txt": words_text(20 * MiB),
                   "setup.exe": b"MZ" + bytes(62) + b"PE\x00\x00" + bytes(200)},
                  zipfile.ZIP_DEFLATED)
    raw = _message("protokolle.zip", data)
    result = scanner.scan(BytesParser(policy=policy.default).parsebytes(raw), raw)
    assert result.verdict is Verdict.BLOCKED, result.findings
