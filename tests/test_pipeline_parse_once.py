"""One full parse per message: the parse stage reads only the header block of a single-part
message (an S/MIME envelope, a plain text mail), the reparse stage parses what decryption
and verification left once, the raw structure check runs once per distinct byte string, and
header fields are parsed once per part, with exactly what ``policy.default`` makes of them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from gateway.db import session_scope
from gateway.keydir.models import InvalidSignature
from gateway.keydir.partners import add_partner, delete_partner, partner_for, update_partner
from gateway.mime.parsed import FieldCachingMessage, parse_header_block, parse_message
from gateway.models import Direction, MessageState
from gateway.pipeline.context import MessageContext
from gateway.pipeline.stages import parse as parse_stage
from gateway.pipeline.stages import scan as scan_stage
from gateway.pipeline.worker import Worker
from gateway.services import Services
from gateway.settings import OutboundPolicy, Settings
from mailboxes.directory import add_mailbox
from scanning import scanner as scanner_module
from tests.conftest import make_settings
from tests.support import crypto_setup
from tests.support.openssl_partner import OpensslPartner, crlf, mail
from tests.support.pipeline import drain, enqueue, filed_copies, load_message
from tests.support.smime_pki import Party, make_ca, make_person

MAILBOX = "hilfeplan@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
ENTITY = (b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
          b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHilfeplan, vertraulich.\r\n"
          b"--b1\r\nContent-Type: application/pdf; name=\"plan.pdf\"\r\n"
          b"Content-Disposition: attachment; filename=\"plan.pdf\"\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n")
PLAIN = (b"From: a@partner.example\r\nTo: " + MAILBOX.encode() + b"\r\nSubject: Hallo\r\n"
         b"Message-ID: <1@partner.example>\r\n\r\nBody line\r\n")

# Header fields the header value parser reads in different ways: comments, RFC 2231 and
# RFC 2047 parameters, folding, odd case and spacing, duplicates, no value, garbage.
HOSTILE = (
    b"From: =?utf-8?q?M=C3=BCller?= <a@partner.example>\r\n"
    b"Subject: =?utf-8?b?SMO2bGxl?= und mehr\r\n"
    b"Content-Type: Multipart/Mixed (a comment); boundary=\"outer\"\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"--outer\r\n"
    b"Content-Type: application/octet-stream;\r\n name*=utf-8''b%C3%A9richt.exe\r\n"
    b"Content-Disposition: attachment;\r\n\tfilename=\"=?utf-8?q?evil=2Eexe?=\"\r\n"
    b"\r\nMZ\r\n"
    b"--outer\r\n"
    b"Content-Type: text / html ; charset = \"utf-8\"\r\n"
    b"Content-Disposition: ATTACHMENT; FILENAME*0=\"a\"; filename*1=\".js\"\r\n"
    b"\r\n<p>x</p>\r\n"
    b"--outer\r\n"
    b"Content-Type:\r\n"
    b"Content-Disposition: inline; filename=\r\n"
    b"\r\nnothing\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n\r\n"
    b"Content-Type: multipart/alternative; boundary=inner; boundary=other\r\n\r\n"
    b"--inner\r\nContent-Type: text/plain; charset=\"\xff\xfe\"\r\n\r\nx\r\n--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pkcs7-mime; smime-type=\"Enveloped-Data\"; name=smime.p7m\r\n"
    b"\r\nMIIB\r\n"
    b"--outer--\r\n"
)


def _reads(part: Message) -> list[Any]:
    """What the stages and the scanner ask of a part."""
    return [part.get_content_type(), part.get_content_maintype(), part.get_default_type(),
            part.get_params(), part.get_param("smime-type"), part.get_param("protocol"),
            part.get_filename(), part.get_boundary(), part.get_content_charset(),
            part.get_content_disposition(), part.is_multipart(),
            [str(v) for v in part.get_all("content-type") or []],
            str(part.get("subject")), str(part.get("from")), part.get("x-missing", "none"),
            [type(d).__name__ for d in part.defects]]


@pytest.mark.parametrize("raw", [HOSTILE, PLAIN, ENTITY], ids=["hostile", "plain", "entity"])
def test_every_part_reads_as_under_policy_default(raw: bytes) -> None:
    reference = list(BytesParser(policy=policy.default).parsebytes(raw).walk())
    ours = list(parse_message(raw).walk())
    assert [_reads(p) for p in ours] == [_reads(p) for p in reference]
    assert all(isinstance(p, FieldCachingMessage) for p in ours)
    # Read twice: the second answer is the first, from the cache.
    assert [_reads(p) for p in ours] == [_reads(p) for p in reference]
    head = parse_header_block(raw)
    assert _reads(head)[:10] == _reads(reference[0])[:10]


def test_each_field_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    message = parse_message(HOSTILE)
    calls: list[str] = []
    fetch = policy.default.header_fetch_parse

    def counting(name: str, value: str) -> Any:
        calls.append(name.lower())
        return fetch(name, value)

    # The policy object is shared (policy.default); counted on this message's own copy.
    counted = policy.default.clone()
    object.__setattr__(counted, "header_fetch_parse", counting)
    for part in message.walk():
        part.policy = counted

    def read_all() -> None:
        for part in message.walk():
            part.get_content_type()
            part.get_filename()
            part.get_param("charset")
            part.get_content_disposition()

    read_all()
    first = len(calls)
    assert first > 0
    read_all()
    read_all()
    assert len(calls) == first  # nothing parsed again


def test_a_changed_field_is_read_again() -> None:
    message = parse_message(ENTITY)
    part = message.get_payload(1)
    assert isinstance(part, Message)
    assert part.get_filename() == "plan.pdf"
    part.set_param("filename", "other.exe", header="Content-Disposition")
    assert part.get_filename() == "other.exe"
    part.replace_header("Content-Type", "text/plain; charset=latin-1")
    assert part.get_content_type() == "text/plain"
    assert part.get_content_charset() == "latin-1"
    del part["Content-Type"]
    assert part.get_content_type() == "text/plain" and part.get_content_charset() is None
    part["Content-Type"] = "image/png"
    assert part.get_content_type() == "image/png"


# --- through the worker -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Party, Party, Party]:
    d = tmp_path_factory.mktemp("parse-once")
    ca = make_ca(d, "ca", bits=2048)
    return (d, ca, make_person(d, "partner", PARTNER, ca, bits=2048),
            make_person(d, "ours", MAILBOX, ca))


@pytest.fixture
def settings(tmp_path: Path, database_url: str,
             parties: tuple[Path, Party, Party, Party]) -> Settings:
    return make_settings(tmp_path / "var", database_url,
                         crypto={"trust_anchors_file": str(parties[1].cert_pem)})


@pytest.fixture
def gw(services: Services, parties: tuple[Path, Party, Party, Party]) -> Services:
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Hilfeplanung")
    crypto_setup.own_smime(services, MAILBOX, parties[3])
    return services


class Counted:
    """Calls of functions, wherever the modules named call them (a module and the name it
    calls the function by), with the identity of their first argument."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, str]]) -> None:
        self.arguments: list[bytes] = []
        for module, name in calls:
            monkeypatch.setattr(module, name, self._counting(getattr(module, name)))

    def _counting(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def counting(data: bytes, *args: Any, **kwargs: Any) -> Any:
            self.arguments.append(data)
            return original(data, *args, **kwargs)

        return counting


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Counted, Counted]]:
    # The structure check wherever it runs: the parse stages and the scan stage (which also
    # learn where the leaf bodies stand from it), the scanner.
    yield (Counted(monkeypatch, [(parse_stage, "parse_message")]),
           Counted(monkeypatch, [(parse_stage, "raw_structure"), (scan_stage, "raw_structure"),
                                 (scanner_module, "check_raw_structure")]))


def _facts(gw: Services, qid: str) -> dict[str, str]:
    facts = load_message(gw, qid).facts
    assert facts is not None
    result: dict[str, str] = json.loads(facts)
    return result


def test_signed_then_encrypted_is_parsed_in_full_once(
        gw: Services, parties: tuple[Path, Party, Party, Party],
        counted: tuple[Counted, Counted]) -> None:
    directory, ca, partner, ours = parties
    openssl = OpensslPartner(directory)
    signed = openssl.sign(ENTITY, partner, ca, opaque=True)
    sealed = openssl.encrypt(crlf(signed), ours)
    qid = enqueue(gw, [MAILBOX], mail(sealed, sender=PARTNER, to=MAILBOX), mail_from=PARTNER)
    # This message only, not the notices it may cause.
    assert Worker(gw, "w1").process_one()
    assert load_message(gw, qid).state == MessageState.DELIVERED
    filed = filed_copies(gw, MAILBOX)
    assert len(filed) == 1 and b"Hilfeplan, vertraulich." in filed[0]
    full, structure = counted
    # The envelope is not parsed in full; what decryption and verification left is, once.
    assert len(full.arguments) == 1
    assert b"Hilfeplan, vertraulich." in full.arguments[0]
    # Checked: the envelope, and what was opened; never the same bytes twice.
    assert len(structure.arguments) == 2
    assert len({id(data) for data in structure.arguments}) == 2
    facts = _facts(gw, qid)
    assert facts["mime_type"] == "application/pkcs7-mime"
    assert facts["inner_mime_type"] == "multipart/mixed"
    assert facts["signature"] == "valid"


@pytest.mark.parametrize("raw", [PLAIN, mail(ENTITY, sender="a@partner.example", to=MAILBOX)],
                         ids=["single-part", "multipart"])
def test_plain_mail_is_parsed_and_checked_once(
        gw: Services, counted: tuple[Counted, Counted], raw: bytes) -> None:
    qid = enqueue(gw, [MAILBOX], raw)
    assert Worker(gw, "w1").process_one()
    assert load_message(gw, qid).state == MessageState.DELIVERED
    full, structure = counted
    assert len(full.arguments) == 1
    assert len(structure.arguments) == 1
    facts = _facts(gw, qid)
    assert facts["mime_type"] == ("text/plain" if raw is PLAIN else "multipart/mixed")
    assert "inner_mime_type" not in facts


@pytest.mark.parametrize("raw", [
    # A line that is no header ends the header block: the parser would have to guess.
    b"From: a@partner.example\r\nthis is no header\r\nSubject: x\r\n\r\nBody\r\n",
    b"From: a@partner.example\r\nContent-Type: application/pkcs7-mime\r\n"
    b"garbage line\r\n\r\nMIIB\r\n",
], ids=["text", "smime-envelope"])
def test_a_single_part_with_a_broken_header_block_is_quarantined(
        gw: Services, raw: bytes) -> None:
    qid = enqueue(gw, [MAILBOX], raw)
    drain(gw)
    message = load_message(gw, qid)
    assert message.state == MessageState.QUARANTINED
    assert message.reason == "malformed MIME structure: MissingHeaderBodySeparatorDefect"
    assert filed_copies(gw, MAILBOX) == []


# --- the partner's policy, read for every message -------------------------------------------


def test_a_partner_change_holds_for_the_next_message(gw: Services) -> None:
    """The clock stands still: a change at the same instant as the last one still counts."""
    crypto_setup.partner(gw, "Partner", "partner.example")
    first = enqueue(gw, [MAILBOX], PLAIN)
    drain(gw)
    assert load_message(gw, first).state == MessageState.DELIVERED
    with session_scope(gw.sessions) as s:
        update_partner(s, "Partner", actor="admin", now=gw.clock(),
                       inbound_require_encryption=True)
    second = enqueue(gw, [MAILBOX], PLAIN.replace(b"<1@", b"<2@"))
    drain(gw)
    message = load_message(gw, second)
    assert message.state == MessageState.QUARANTINED
    assert "encrypt" in (message.reason or "")
    with session_scope(gw.sessions) as s:
        found = partner_for(s, "A@Partner.Example")
        assert found is not None and found.inbound_require_encryption
        assert found.outbound_policy is OutboundPolicy.EITHER
        assert found.inbound_invalid_signature is InvalidSignature.QUARANTINE
        assert found.pattern == "partner.example"
        add_partner(s, "Person", actor="admin", now=gw.clock(),
                    patterns=["a@partner.example"], inbound_require_signature=True)
    with session_scope(gw.sessions) as s:
        exact = partner_for(s, "a@partner.example")
        assert exact is not None and exact.name == "Person" and exact.pattern == "a@partner.example"
        assert partner_for(s, "a@sub.partner.example") is None
        delete_partner(s, "Person", actor="admin")
    with session_scope(gw.sessions) as s:
        again = partner_for(s, "a@partner.example")
        assert again is not None and again.name == "Partner"


@pytest.mark.parametrize("direction", [Direction.INBOUND, Direction.OUTBOUND])
def test_only_inbound_leaves_the_parse_to_the_reparse_stage(services: Services,
                                                           direction: Direction) -> None:
    """Outbound there is no reparse stage: the parse stage parses in full, and the scan and
    consent stages use that parse instead of parsing again each."""
    ctx = MessageContext(message_id=1, queue_id="Q", direction=direction,
                         mail_from="a@partner.example", received_at=services.clock(),
                         attempt=1, raw=PLAIN, pending=[MAILBOX])
    parse_stage.ParseStage().run(ctx, services)
    assert ctx.facts["mime_type"] == "text/plain"
    assert (ctx.parsed is None) == (direction == Direction.INBOUND)
    parse_stage.ReparseStage().run(ctx, services)
    assert ctx.parsed is not None and ctx.parsed.get_content_type() == "text/plain"
    assert "inner_mime_type" not in ctx.facts


def test_another_policy_set_afterwards_reads_anew() -> None:
    message = parse_message(HOSTILE)
    assert str(message.get("subject")) == "Hölle und mehr"
    message.policy = policy.compat32
    assert message.get("subject") == "=?utf-8?b?SMO2bGxl?= und mehr"


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, 1 << 16])
@pytest.mark.parametrize("raw", [HOSTILE, PLAIN, ENTITY, HOSTILE.replace(b"\r\n", b"\n"),
                                 HOSTILE.replace(b"\r\n", b"\r"), b"", b"no header\r\n"],
                         ids=["hostile", "plain", "entity", "lf", "cr", "empty", "garbage"])
def test_fed_in_pieces_it_parses_as_parsebytes(raw: bytes, piece: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser is fed in pieces to bound its memory (gateway.mime.parsed._FEED_BYTES);
    wherever a piece ends, inside a CRLF too, the result is the whole-message parse's."""
    monkeypatch.setattr("gateway.mime.parsed._FEED_BYTES", piece)
    reference = BytesParser(policy=policy.default).parsebytes(raw)
    ours = parse_message(raw)
    assert [_reads(p) for p in ours.walk()] == [_reads(p) for p in reference.walk()]
    assert [p.get_payload(decode=True) for p in ours.walk() if not p.is_multipart()] == \
        [p.get_payload(decode=True) for p in reference.walk() if not p.is_multipart()]
    assert ours.as_bytes() == reference.as_bytes()
