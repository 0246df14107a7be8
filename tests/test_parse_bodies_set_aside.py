"""The parse with leaf bodies set aside (``gateway.mime.parsed.parse_message`` given the
spans ``scanning.parts.raw_structure`` found) builds the very tree the email package builds
from the message as it is: the same parts, header fields, payloads, preambles, epilogues,
default types and defects, for every line ending, nesting and malformed structure the
generator below makes. Where the two could disagree the stand-ins do not come back one by
one as leaf payloads, and the message is parsed as it is."""

from __future__ import annotations

from email.message import Message
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.mime.parsed as parsed_module
import scanning.parts as parts_module
from gateway.mime.parsed import parse_message
from gateway.pipeline.stages.parse import STRUCTURAL_DEFECTS
from scanning.parts import MimeLimits, raw_structure, scan_leaves

LIMITS = MimeLimits(max_parts=10_000, max_depth=200)


def tree(message: Message) -> list[tuple[Any, ...]]:
    """Everything the parser decided about ``message``, part by part."""
    out: list[tuple[Any, ...]] = []
    for part in message.walk():
        payload = part._payload  # type: ignore[attr-defined]
        out.append((
            [(name, str(value)) for name, value in part._headers],  # type: ignore[attr-defined]
            part.get_unixfrom(), part.preamble, part.epilogue, part.get_default_type(),
            sorted(type(defect).__name__ for defect in part.defects),
            payload if isinstance(payload, str) else ("parts", len(payload)),
        ))
    return out


def both_ways(raw: bytes) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    structure = raw_structure(raw, LIMITS)
    set_aside = parse_message(raw, structure.leaf_bodies)
    return tree(parse_message(raw)), tree(set_aside), len(structure.leaf_bodies)


# Lines of header blocks, boundaries (with trailing white space and near misses), bodies.
HEADERS = [
    b"Content-Type: multipart/mixed; boundary=a", b"Content-Type: multipart/mixed; boundary=b",
    b'Content-Type: multipart/alternative;\r\n boundary="b"',
    b"Content-Type: multipart/digest; boundary=d",
    b"Content-Type: message/rfc822", b"Content-Type: text/plain", b"Content-Type: application/pdf",
    b"Content-Type: message/delivery-status", b"Content-Transfer-Encoding: base64",
    b"Content-Type: multipart/mixed", b"Content-Type: multipart/mixed; boundary=\"a\"; x=y",
    b"X-Feld: wert", b" gefaltet", b"From a@b", b"Content-Type: text/plain; charset=\xff",
]
FRAMES = [b"--a", b"--b", b"--d", b"--a--", b"--b--", b"--d--", b"--a \t", b"--b--  ", b"--ab",
          b"--a-", b"---a", b"-- a", b"--"]
BODIES = [b"Zeile", b"QUJDRA==" * 9, b"Text mit -- Strichen", b"\x00\xff\x80", b"-", b" ", b"",
          b"=3D=\r", b"xgate-body-0"]
LINES = [*HEADERS, *FRAMES, *BODIES, *[b""] * 6, *FRAMES[:3] * 3, *HEADERS[:3] * 2]
NEWLINES = [b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""]


@pytest.fixture
def every_body_set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every leaf body, however short, so the generator's small messages test the stand-ins.
    monkeypatch.setattr(parts_module, "_MIN_LEAF_BODY", 1)


# The fixture's patch holds for every example alike; nothing in it needs resetting.
SETTINGS = settings(max_examples=1000, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(lines=st.lists(st.tuples(st.sampled_from(LINES), st.sampled_from(NEWLINES)),
                      max_size=80),
       multipart=st.booleans())
def test_the_same_tree_from_any_lines(every_body_set_aside: None,
                                      lines: list[tuple[bytes, bytes]],
                                      multipart: bool) -> None:
    start = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" if multipart else b""
    raw = start + b"".join(line + newline for line, newline in lines)
    plain, set_aside, _ = both_ways(raw)
    assert set_aside == plain


@st.composite
def entity(draw: st.DrawFn, depth: int = 0) -> list[bytes]:
    """The lines of a MIME entity, mostly well formed: multiparts (boundaries shared with
    enclosing ones at times), attached messages, digests, leaves with near-miss lines."""
    kind = draw(st.sampled_from(["leaf", "leaf", "multipart", "message"] if depth < 4
                                else ["leaf"]))
    extra = draw(st.lists(st.sampled_from([b"X-Feld: wert", b" gefaltet",
                                           b"Content-Transfer-Encoding: base64"]), max_size=2))
    if kind == "leaf":
        head = draw(st.sampled_from([[], [b"Content-Type: text/plain"],
                                     [b"Content-Type: application/pdf"],
                                     [b"Content-Type: message/delivery-status"],
                                     [b"Content-Type: text/plain;\r\n name=x"]]))
        body = draw(st.lists(st.sampled_from([*BODIES, *FRAMES]), max_size=6))
        blank = [b""] if draw(st.integers(0, 9)) else []
        return [*head, *extra, *blank, *body]
    if kind == "message":
        return [b"Content-Type: message/rfc822", *extra, b"", *draw(entity(depth + 1))]
    boundary = draw(st.sampled_from([b"a", b"b", b"c"]))
    subtype = draw(st.sampled_from([b"mixed", b"digest", b"alternative"]))
    lines = [b"Content-Type: multipart/" + subtype + b"; boundary=" + boundary, *extra, b""]
    lines += draw(st.lists(st.sampled_from(BODIES), max_size=2))  # a preamble
    for _ in range(draw(st.integers(0, 3))):
        lines.append(b"--" + boundary + draw(st.sampled_from([b"", b"", b" ", b"\t "])))
        lines += draw(entity(depth + 1))
    if draw(st.integers(0, 7)):
        lines.append(b"--" + boundary + b"--" + draw(st.sampled_from([b"", b"  "])))
        lines += draw(st.lists(st.sampled_from(BODIES), max_size=2))  # an epilogue
    return lines


@SETTINGS
@given(lines=entity(), newlines=st.lists(st.sampled_from(NEWLINES), min_size=1),
       cut=st.integers(0, 200), repeat=st.integers(0, 200))
def test_the_same_tree_for_generated_structures(every_body_set_aside: None, lines: list[bytes],
                                                newlines: list[bytes], cut: int,
                                                repeat: int) -> None:
    if cut < len(lines) and cut % 3 == 0:
        del lines[cut]  # a line lost: a missing delimiter, blank line or header
    if repeat < len(lines) and repeat % 4 == 0:
        lines.insert(repeat, lines[repeat])  # a line doubled
    raw = b"".join(line + newlines[i % len(newlines)] for i, line in enumerate(lines))
    plain, set_aside, _ = both_ways(raw)
    assert set_aside == plain


def signed_report(eol: bytes = b"\r\n") -> bytes:
    attachment = (b"JVBERi0xLjQK" * 6 + eol) * 400
    lines = [
        b"From: jugendamt@partner.example", b"Subject: Bericht", b"MIME-Version: 1.0",
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=s',
        b"", b"--s", b"Content-Type: multipart/mixed; boundary=m", b"", b"Vorspann", b"--m",
        b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: 8bit", b"",
        "Guten Tag,\r\nanbei der Bericht. -- Grüße".encode() * 30, b"", b"--m",
        b"Content-Type: message/rfc822", b"", b"Subject: innen", b"", b"innerer Text " * 80,
        b"--m", b"Content-Type: application/pdf", b"Content-Transfer-Encoding: base64", b"",
        attachment + b"--m--", b"Nachspann", b"--s",
        b"Content-Type: application/pkcs7-signature", b"Content-Transfer-Encoding: base64", b"",
        b"MIIB" * 200, b"--s--", b"",
    ]
    return eol.join(lines)


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_a_report_with_attachments_is_parsed_with_its_bodies_set_aside(eol: bytes) -> None:
    raw = signed_report(eol)
    plain, set_aside, bodies = both_ways(raw)
    # The text, the attached message's body, the PDF and the signature.
    assert bodies == 4
    assert set_aside == plain
    structure = raw_structure(raw, LIMITS)
    pdf_start, pdf_end = structure.leaf_bodies[2]
    assert raw[pdf_start:pdf_end].startswith(b"JVBERi0xLjQK")
    assert raw[pdf_end:].startswith(eol + b"--m--")


def test_the_stand_ins_are_what_the_parser_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    fed: list[int] = []
    real = parsed_module._parse_fed

    def counting(data: bytes) -> Any:
        fed.append(len(data))
        return real(data)

    monkeypatch.setattr(parsed_module, "_parse_fed", counting)
    raw = signed_report()
    parse_message(raw, raw_structure(raw, LIMITS).leaf_bodies)
    # One parse, of the message less its bodies.
    assert len(fed) == 1 and fed[0] < len(raw) // 10


def test_spans_the_parser_does_not_confirm_fall_back_to_the_plain_parse() -> None:
    raw = signed_report()
    spans = raw_structure(raw, LIMITS).leaf_bodies
    plain = tree(parse_message(raw))
    start, end = spans[2]
    wrong = [
        # A span over the delimiter line after it: the stand-in and the next part merge.
        (*spans[:2], (start, end + 20), *spans[3:]),
        # Out of order, and past the end.
        (spans[1], spans[0]),
        ((start, len(raw) + 5),),
        # Inside a header block: the stand-in is no payload of its own.
        ((0, 10),),
    ]
    for bodies in wrong:
        assert tree(parse_message(raw, bodies)) == plain


def test_a_message_cannot_carry_a_stand_in_of_its_own() -> None:
    # The tag is new for every parse: text that looks like a stand-in stays text.
    raw = signed_report().replace(b"Vorspann", b"xgate-body-00-0")
    plain, set_aside, _ = both_ways(raw)
    assert set_aside == plain


@pytest.mark.parametrize("raw", [
    # Bodies the parser keeps whole: no multipart around them, or no delimiter after them.
    b"Content-Type: text/plain\r\n\r\n" + b"x" * 4000,
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\n" + b"x" * 4000,
    # An attached message's body, and a delivery report (read as header blocks).
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: message/rfc822"
    b"\r\n\r\nSubject: x\r\n\r\n" + b"y" * 4000 + b"\r\n--a--\r\n",
    b"Content-Type: multipart/report; boundary=a\r\n\r\n--a\r\nContent-Type: message/"
    b"delivery-status\r\n\r\n" + b"Status: 5.0.0\r\n" * 300 + b"\r\n--a--\r\n",
])
def test_structures_without_a_set_aside_body_parse_as_before(raw: bytes) -> None:
    plain, set_aside, _ = both_ways(raw)
    assert set_aside == plain


def test_a_limit_broken_sets_nothing_aside() -> None:
    raw = signed_report()
    structure = raw_structure(raw, MimeLimits(max_parts=3))
    assert structure.problem == "more than 3 MIME parts"
    assert structure.leaf_bodies == ()


def test_the_structural_defects_are_the_same() -> None:
    # A missing closing delimiter: the parser's defect survives the stand-ins.
    raw = signed_report().replace(b"--s--", b"--t--")
    message = parse_message(raw, raw_structure(raw, LIMITS).leaf_bodies)
    found = {type(d) for part in message.walk() for d in part.defects}
    assert found & set(STRUCTURAL_DEFECTS)


def _large_report() -> bytes:
    attachment = (b"JVBERi0xLjQK" * 6 + b"\r\n") * 30_000  # 2.2 MB of base64
    return (b"From: a@partner.example\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n"
            b"--m\r\nContent-Type: text/plain\r\n\r\nIm Anhang.\r\n"
            b"--m\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + attachment + b"--m--\r\n")


def test_a_large_body_is_read_only_when_asked_for() -> None:
    raw = _large_report()
    message = parse_message(raw, raw_structure(raw, LIMITS).leaf_bodies)
    text, pdf = message.get_payload()
    assert text.unread_body is None  # small: read at the parse
    unread = pdf.unread_body
    assert unread is not None and unread[0] is raw
    # Walking the tree and reading its header fields leave it unread.
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/mixed", "text/plain", "application/pdf"]
    assert not pdf.is_multipart() and pdf.unread_body is not None
    # Asked for, it is the parser's text of it, byte for byte.
    assert pdf.get_payload() == raw[unread[1]:unread[2]].decode("ascii")
    assert pdf.unread_body is None
    assert tree(message) == tree(parse_message(raw))


def test_a_body_set_again_is_not_read_from_the_message() -> None:
    raw = _large_report()
    message = parse_message(raw, raw_structure(raw, LIMITS).leaf_bodies)
    pdf = message.get_payload()[1]
    pdf.set_payload("neu")
    assert pdf.unread_body is None and pdf.get_payload() == "neu"


def test_the_scanner_decodes_an_unread_body_from_the_message() -> None:
    raw = _large_report()
    unread = parse_message(raw, raw_structure(raw, LIMITS).leaf_bodies)
    found = [(leaf.part.data, leaf.span) for leaf in scan_leaves(unread, LIMITS, raw)]
    assert all(part.unread_body is None or part.unread_body[0] is raw
               for part in unread.walk())
    assert unread.get_payload()[1].unread_body is not None  # still not read as text
    plain = [(leaf.part.data, leaf.span) for leaf in scan_leaves(parse_message(raw), LIMITS,
                                                                  raw)]
    assert found == plain and found[1][1] is not None
    # Other bytes than the parse's: the body is read as text, same answer.
    copy = bytes(bytearray(raw))
    assert [(leaf.part.data, leaf.span) for leaf in scan_leaves(unread, LIMITS, copy)] == plain
