"""The second look at a message (scanning.residue), against the real clamd.

Evidence for what scanning the message as a whole adds to scanning its decoded parts: each
case below hides the test file where no decoded leaf part shows it, and each is checked
three ways: every leaf part alone misses it, the raw message as one stream finds it (what
the earlier whole-message pass relied on), and MessageScanner.scan finds it through the
residue, the message without the bodies it already saw decoded. The residue itself leaves
out exactly those bodies and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import quopri
from collections.abc import Callable, Iterable, Iterator
from email import policy
from email.message import Message
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanning.clamd_client import Chunk, ClamdAnswer, ClamdClient
from scanning.config import ScannerConfig
from scanning.parts import MimeLimits, scan_leaves
from scanning.residue import body_spans, residue_chunks, residue_size
from scanning.scanner import MessageScanner
from scanning.verdict import Verdict
from tests.support.clamd import EICAR, EICAR_NAME, RunningClamd, shared_clamd

HEAD = (b"From: a@partner.example\r\nTo: kita@jugendamt.example\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n")
TEXT = b"--b\r\nContent-Type: text/plain\r\n\r\nAnbei die Unterlagen.\r\n"
EICAR_B64 = base64.encodebytes(EICAR).replace(b"\n", b"\r\n")


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def attachment(body: bytes, encoding: bytes = b"base64", name: bytes = b"akte.bin") -> bytes:
    return (b"--b\r\nContent-Type: application/octet-stream; name=\"" + name + b"\"\r\n"
            b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body)


def uu(data: bytes) -> bytes:
    return b"".join(binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)) \
        .replace(b"\n", b"\r\n")


HIDING_PLACES: dict[str, bytes] = {
    "a header of the message": HEAD.replace(b"From:", b"X-Hinweis: " + EICAR + b"\r\nFrom:")
    + b"\r\n" + TEXT + b"--b--\r\n",
    "a header of a part": HEAD + b"\r\n--b\r\nContent-Type: text/plain\r\nX-Hinweis: " + EICAR
    + b"\r\n\r\nHallo\r\n--b--\r\n",
    "the preamble": HEAD + b"\r\n" + EICAR + b"\r\n" + TEXT + b"--b--\r\n",
    "the epilogue": HEAD + b"\r\n" + TEXT + b"--b--\r\n" + EICAR + b"\r\n",
    "a part after the closing boundary": HEAD + b"\r\n" + TEXT + b"--b--\r\n"
    + attachment(EICAR_B64) + b"--b--\r\n",
    "a base64 body with foreign text in it": HEAD + b"\r\n" + TEXT
    + attachment(b64(b"Hilfeplan " * 20) + EICAR + b"\r\n") + b"--b--\r\n",
    "a second uuencoded block of an x-uuencode part": HEAD + b"\r\n" + TEXT
    + attachment(b"begin 644 a.txt\r\n" + uu(b"harmlos") + b"`\r\nend\r\nbegin 644 e.com\r\n"
                 + uu(EICAR) + b"`\r\nend\r\n", b"x-uuencode") + b"--b--\r\n",
    "a body under two Content-Transfer-Encodings": HEAD + b"\r\n" + TEXT
    + attachment(EICAR_B64, b"7bit\r\nContent-Transfer-Encoding: base64") + b"--b--\r\n",
}


def parse(raw: bytes) -> Message:
    parsed: Message = BytesParser(policy=policy.default).parsebytes(raw)
    return parsed


def last_part_decoded(message: Message) -> object:
    """What the email package itself decodes from the message's last part."""
    *_, last = message.walk()
    return last.get_payload(decode=True)


class RecordingClient(ClamdClient):
    """The real client, remembering how many bytes each stream had."""

    def __init__(self, clamd: RunningClamd) -> None:
        super().__init__(socket_path=clamd.socket_path, timeout=30)
        self.streams: list[int] = []

    def instream_chunks(self, chunks: Callable[[], Iterable[Chunk]]) -> ClamdAnswer:
        self.streams.append(sum(len(memoryview(c)) for c in chunks()))
        return super().instream_chunks(chunks)


@pytest.fixture
def clamd() -> RunningClamd:
    return shared_clamd()


@pytest.fixture
def client(clamd: RunningClamd) -> RecordingClient:
    return RecordingClient(clamd)


@pytest.fixture
def scanner(client: RecordingClient) -> Iterator[MessageScanner]:
    scanner = MessageScanner(client, ScannerConfig())
    yield scanner
    scanner.close()


@pytest.mark.parametrize("where", HIDING_PLACES)
def test_what_only_the_whole_message_shows_is_found_in_the_residue(
        where: str, client: RecordingClient, scanner: MessageScanner) -> None:
    raw = HIDING_PLACES[where]
    parts = [leaf.part for leaf in scan_leaves(parse(raw), MimeLimits())]
    assert parts, where
    assert all(client.instream(part.data).infected is None for part in parts), where
    assert client.instream(raw).infected == EICAR_NAME, where
    result = scanner.scan(parse(raw), raw)
    assert result.verdict == Verdict.INFECTED, (where, result.detail)
    # Found in the message stream, not in a part.
    assert any(f.verdict == Verdict.INFECTED and f.part is None and f.reason == EICAR_NAME
               for f in result.findings), result.detail


def test_an_attachment_is_not_sent_twice(client: RecordingClient,
                                         scanner: MessageScanner) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    raw = HEAD + b"\r\n" + TEXT + attachment(b64(data)) + b"--b--\r\n"
    result = scanner.scan(parse(raw), raw)
    assert result.clean, result.detail
    # The decoded parts, then the residue: headers and boundaries only.
    assert len(client.streams) == 3
    assert sorted(client.streams)[-1] == len(data)
    assert sum(client.streams) < len(data) + 1024


def test_the_residue_is_the_message_without_the_decoded_bodies() -> None:
    pdf = b"%PDF-1.7\r\n" + bytes(range(256)) * 40
    qp = b"Gr=C3=BC=C3=9Fe aus dem Jugendamt=\r\nweiter\r\n"
    raw = (HEAD + b"\r\nVorspann\r\n" + TEXT
           + b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: "
             b"quoted-printable\r\n\r\n" + qp
           + attachment(b64(pdf), name=b"bericht.pdf") + b"--b--\r\nNachspann\r\n")
    leaves = list(scan_leaves(parse(raw), MimeLimits(), raw))
    assert [leaf.body is not None for leaf in leaves] == [True, True, True]
    spans = body_spans(raw, (leaf.body for leaf in leaves))
    assert spans == [leaf.span for leaf in leaves]
    residue = b"".join(residue_chunks(raw, spans))
    assert len(residue) == residue_size(raw, spans)
    expected = raw
    for body in (b"Anbei die Unterlagen.", qp.removesuffix(b"\r\n"),
                 b64(pdf).removesuffix(b"\r\n")):
        assert expected.count(body) == 1
        expected = expected.replace(body, b"")
    assert residue == expected
    assert b"Vorspann" in residue and b"Nachspann" in residue
    assert residue.count(b"--b") == 4  # three parts and the close


def test_a_decoy_of_a_body_before_it_is_not_cut_out(scanner: MessageScanner) -> None:
    # The preamble starts like the attachment's base64 and then carries the test file: the
    # residue must keep it, because it is not the body that was decoded.
    body = b64(b"Jugendamt " * 200)
    raw = (HEAD + b"\r\n" + body[:400] + EICAR + b"\r\n" + TEXT + attachment(body)
           + b"--b--\r\n")
    result = scanner.scan(parse(raw), raw)
    assert result.verdict == Verdict.INFECTED, result.detail
    assert result.part is None


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_plain_base64_stands_for_its_body(newline: bytes) -> None:
    data = bytes(range(256)) * 3
    raw = (HEAD + b"\r\n" + attachment(b64(data).replace(b"\r\n", newline)) + b"--b--"
           + newline)
    (leaf,) = scan_leaves(parse(raw), MimeLimits())
    assert leaf.part.data == data
    assert leaf.body is not None and len(body_spans(raw, [leaf.body])) == 1


@pytest.mark.parametrize("raw", [
    HEAD + b"\r\n" + TEXT + attachment(b64(b"harmlos") + b"QQ==\r\n") + b"--b--\r\n",
    HEAD + b"\r\n" + TEXT + attachment(b64(b"harmlos").replace(b"\r\n", b" \r\n"))
    + b"--b--\r\n",
    HEAD + b"\r\n" + TEXT + attachment(b"QUJD\r\nQQ\r\n") + b"--b--\r\n",
])
def test_base64_that_is_not_plain_keeps_its_body_in_the_residue(raw: bytes) -> None:
    leaf = list(scan_leaves(parse(raw), MimeLimits()))[-1]
    assert leaf.body is None
    assert leaf.part.data == last_part_decoded(parse(raw))


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


_NOISE = [b"=", b"==", b" ", b"\t", b"!", b"\r", b"\n", b"\xff", b"-", b"A", b"\r\n"]


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300), line=st.integers(4, 80),
       newline=st.sampled_from([b"\r\n", b"\n"]),
       noise=st.lists(st.tuples(st.integers(0, 400), st.sampled_from(_NOISE)), max_size=3),
       with_raw=st.booleans())
def test_base64_decodes_as_the_email_package_does(data: bytes, line: int, newline: bytes,
                                                  noise: list[tuple[int, bytes]],
                                                  with_raw: bool) -> None:
    encoded = base64.b64encode(data)
    body = newline.join(encoded[i:i + line] for i in range(0, len(encoded), line)) + newline
    for at, extra in noise:
        body = body[:at] + extra + body[at:]
    raw = HEAD + b"\r\n" + attachment(body) + newline + b"--b--" + newline
    message = parse(raw)
    # With the raw bytes, plain base64 is decoded from them by pybase64; without, binascii.
    (leaf,) = scan_leaves(message, MimeLimits(), raw if with_raw else None)
    assert leaf.part.data == last_part_decoded(message)
    if leaf.body is not None:
        # Only bodies of the alphabet, line breaks and final padding are left out.
        text = leaf.body.encode() if isinstance(leaf.body, str) else leaf.body
        assert text.rstrip(b"\r\n").rstrip(b"=").translate(None, b"\r\n" + _ALPHABET) == b""
        assert raw.count(text) >= 1
        if with_raw and text:
            assert leaf.span is not None and raw[leaf.span[0]:leaf.span[1]] == text


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300), newline=st.sampled_from([b"\r\n", b"\n"]),
       noise=st.lists(st.tuples(st.integers(0, 400), st.sampled_from(
           [b"=", b"=4", b"=ZZ", b" ", b"\t", b"\r", b"\xfc", b"=\r\n"])), max_size=3))
def test_quoted_printable_decodes_as_the_email_package_does(
        data: bytes, newline: bytes, noise: list[tuple[int, bytes]]) -> None:
    body = quopri.encodestring(data).replace(b"\n", newline)
    for at, extra in noise:
        body = body[:at] + extra + body[at:]
    raw = HEAD + b"\r\n" + attachment(body, b"quoted-printable") + newline + b"--b--" + newline
    message = parse(raw)
    (leaf,) = scan_leaves(message, MimeLimits(), raw)
    assert leaf.part.data == last_part_decoded(message)
    if leaf.body:  # an empty body has nothing to leave out
        assert leaf.span is not None and body_spans(raw, [leaf.body]) == [leaf.span]


def test_a_body_far_after_the_one_before_stays_in_the_residue() -> None:
    # The search for a body reads at most 64 KiB past the previous one, so that no message
    # can make it read the whole message once per part; what it does not find is sent.
    preamble = b"Vorspann ohne Ende\r\n" * 5000  # 100 KB before the first part
    raw = HEAD + b"\r\n" + preamble + TEXT + attachment(b64(b"Akte " * 100)) + b"--b--\r\n"
    first, second = scan_leaves(parse(raw), MimeLimits(), raw)
    assert first.body is not None and first.span is None
    # The search goes on from the last body found (here none), so the second stays too.
    assert second.body is not None and second.span is None
    assert second.part.data == b"Akte " * 100
    near = HEAD + b"\r\n" + TEXT + attachment(b64(b"Akte " * 100)) + b"--b--\r\n"
    assert all(leaf.span is not None for leaf in scan_leaves(parse(near), MimeLimits(), near))
