"""Virus scanning in the pipeline, against the session's real clamd with the test signatures.

Every case of the issue's list: EICAR in each place and encoding is found; hostile structures
end UNSCANNABLE; blocked types are quarantined; with clamd down nothing is delivered and
everything is once it is back (fail closed); outbound mail is scanned before it is signed.
"""

from __future__ import annotations

import base64
import gzip
import quopri
from pathlib import Path

import pytest
from sqlalchemy import select

from crypto.at_rest import open_sealed
from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.models import Direction, Message, MessageState, SealedContent
from gateway.quarantine.records import ReleaseResult
from gateway.queue.spool import content_context
from gateway.services import Services
from mailboxes.directory import add_mailbox
from tests.support import crypto_setup
from tests.support.clamd import CLAMAV_TESTFILES, EICAR, EICAR_NAME, encrypted_zip, shared_clamd
from tests.support.openssl_partner import OpensslPartner, mail
from tests.support.pipeline import bounces, drain, enqueue, filed_copies, load_message
from tests.support.smime_pki import make_ca, make_person
from tests.test_scan_limits import make_zip, nested_bomb, nested_zips

MAILBOX = "kita@jugendamt.example"
SENDER = "a@partner.example"


@pytest.fixture
def gw(services: Services) -> Services:
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Kita")
    return services


def _attachment(data: bytes, name: str, *, encoding: str = "base64",
                content_type: str = "application/octet-stream") -> bytes:
    if encoding == "base64":
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    else:
        body = quopri.encodestring(data).replace(b"\n", b"\r\n")
    return (f"Content-Type: {content_type}; name=\"{name}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + body


def _multipart(*parts: bytes, boundary: str = "b0") -> bytes:
    body = b"".join(f"--{boundary}\r\n".encode() + p + b"\r\n" for p in parts)
    return (f"From: {SENDER}\r\nTo: {MAILBOX}\r\nSubject: Unterlagen\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").encode() + \
        body + f"--{boundary}--\r\n".encode()


TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nAnbei die Unterlagen.\r\n"


def _verdict(gw: Services, raw: bytes, *, mail_from: str = SENDER,
             direction: Direction = Direction.INBOUND, rcpt: str = MAILBOX) -> Message:
    qid = enqueue(gw, [rcpt], raw, mail_from=mail_from, direction=direction)
    drain(gw)
    return load_message(gw, qid)


def _zip(name: str, data: bytes) -> bytes:
    return make_zip({name: data})


@pytest.mark.parametrize(("attachment", "where"), [
    (_attachment(EICAR, "eicar.com"), "base64"),
    (_attachment(EICAR, "eicar.txt", encoding="quoted-printable",
                 content_type="text/plain"), "quoted-printable"),
    (_attachment(_zip("eicar.com", EICAR), "eicar.zip"), "zip"),
    (_attachment(gzip.compress(EICAR), "eicar.com.gz"), "gzip"),
    (_attachment(_zip("inner.zip", _zip("eicar.com", EICAR)), "outer.zip"), "zip in zip"),
])
def test_eicar_is_found(gw: Services, attachment: bytes, where: str) -> None:
    message = _verdict(gw, _multipart(TEXT, attachment))
    assert message.state == MessageState.QUARANTINED, (where, message.reason)
    assert message.reason is not None and message.reason.startswith("infected: ")
    assert EICAR_NAME in message.reason
    assert filed_copies(gw, MAILBOX) == []


def test_clamav_testfile_in_7z_is_found(gw: Services) -> None:
    data = (CLAMAV_TESTFILES / "clam.7z").read_bytes()
    message = _verdict(gw, _multipart(TEXT, _attachment(data, "clam.7z")))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and "ClamAV-TestFile" in message.reason


def test_eicar_in_a_forwarded_message(gw: Services) -> None:
    inner = _multipart(TEXT, _attachment(EICAR, "eicar.com"), boundary="inner")
    forwarded = b"Content-Type: message/rfc822\r\n\r\n" + inner
    message = _verdict(gw, _multipart(TEXT, forwarded))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and EICAR_NAME in message.reason


def test_eicar_in_an_smime_encrypted_message(gw: Services, tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca", bits=2048)
    ours = make_person(tmp_path, "ours", MAILBOX, ca)
    crypto_setup.own_smime(gw, MAILBOX, ours)
    entity = (b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n' + TEXT
              + b"\r\n--x\r\n" + _attachment(EICAR, "eicar.com") + b"\r\n--x--\r\n")
    sealed = OpensslPartner(tmp_path).encrypt(entity, ours, cipher="-aes-256-gcm")
    message = _verdict(gw, mail(sealed, sender=SENDER, to=MAILBOX))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and EICAR_NAME in message.reason


def test_eicar_in_an_openpgp_encrypted_message(gw: Services, tmp_path: Path) -> None:
    from gateway.keydir.models import KeyKind
    from gateway.keydir.own_keys import own_keys_for
    from gateway.keydir.own_openpgp import generate_own_openpgp
    from tests.support.gpg_partner import GpgPartner

    with session_scope(gw.sessions) as s:
        generate_own_openpgp(s, gw.master_key, MAILBOX, actor="test", now=gw.clock())
        [own] = own_keys_for(s, gw.master_key, MAILBOX, KeyKind.OPENPGP)
    entity = (b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n' + TEXT
              + b"\r\n--x\r\n" + _attachment(EICAR, "eicar.com") + b"\r\n--x--\r\n")
    with GpgPartner.create(tmp_path / "gpg") as gpg:
        gpg.import_keys(own.public)
        raw = gpg.pgp_mime_encrypted(entity, [own.fingerprint])
    message = _verdict(gw, raw.replace(b"jugendamt@xgate.example", MAILBOX.encode()))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and EICAR_NAME in message.reason


def _unscannable(gw: Services, raw: bytes) -> str:
    message = _verdict(gw, raw)
    assert message.state == MessageState.QUARANTINED, message.reason
    assert message.reason is not None and message.reason.startswith("unscannable: ")
    return message.reason


def test_password_protected_zip(gw: Services) -> None:
    data = encrypted_zip("bericht.pdf", b"%PDF-1.4 vertraulich")
    assert "encrypted" in _unscannable(gw, _multipart(TEXT, _attachment(data, "b.zip")))


def test_zip_with_20000_members(gw: Services) -> None:
    members = {f"f{i}.txt": b"x" for i in range(20_000)}
    reason = _unscannable(gw, _multipart(TEXT, _attachment(make_zip(members), "many.zip")))
    assert "members" in reason


def test_nested_zip_bomb(gw: Services) -> None:
    bomb = nested_bomb(levels=4)
    _unscannable(gw, _multipart(TEXT, _attachment(bomb, "42.zip")))


def test_archive_nested_20_deep(gw: Services) -> None:
    reason = _unscannable(gw, _multipart(TEXT, _attachment(nested_zips(20), "deep.zip")))
    assert "deep" in reason or "depth" in reason or "nest" in reason


def test_message_with_too_many_parts(gw: Services) -> None:
    limit = gw.settings.scanning.max_mime_parts
    parts = [TEXT] * (limit + 1)
    assert "parts" in _unscannable(gw, _multipart(*parts))


def test_multipart_nested_too_deep(gw: Services) -> None:
    depth = gw.settings.scanning.max_mime_depth + 1
    body = TEXT
    for level in range(depth):
        b = f"n{level}"
        body = (f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n--{b}\r\n').encode() + \
            body + f"\r\n--{b}--\r\n".encode()
    raw = f"From: {SENDER}\r\nTo: {MAILBOX}\r\nMIME-Version: 1.0\r\n".encode() + body
    reason = _unscannable(gw, raw)
    assert "nest" in reason or "deep" in reason or "depth" in reason, reason


def test_blocked_executable(gw: Services) -> None:
    pe = b"MZ" + b"\x90" * 58 + (64).to_bytes(4, "little") + b"PE\x00\x00" + b"\x00" * 200
    message = _verdict(gw, _multipart(TEXT, _attachment(pe, "rechnung.pdf")))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and message.reason.startswith("blocked: ")


def test_clean_message_is_delivered_with_the_scan_fact(gw: Services) -> None:
    message = _verdict(gw, _multipart(TEXT, _attachment(b"%PDF-1.4 harmlos", "a.pdf")))
    assert message.state == MessageState.DELIVERED
    assert message.facts is not None and '"scan": "clean"' in message.facts
    assert len(filed_copies(gw, MAILBOX)) == 1


def test_notices_sender_without_details_and_mailbox_with_them(gw: Services) -> None:
    message = _verdict(gw, _multipart(TEXT, _attachment(EICAR, "eicar.com")))
    notices = {m.recipients[0].address: m for m in bounces(gw)}
    assert set(notices) == {SENDER, MAILBOX}
    with session_scope(gw.sessions) as s:
        texts = {}
        for address, notice in notices.items():
            sealed = s.scalars(select(SealedContent.sealed).where(
                SealedContent.message_id == notice.id)).one()
            texts[address] = open_sealed(gw.master_key, sealed,
                                         content_context(notice.queue_id))
    assert message.queue_id.encode() in texts[SENDER]
    assert EICAR_NAME.encode() not in texts[SENDER]
    assert EICAR_NAME.encode() in texts[MAILBOX]


def test_outbound_is_scanned_before_signing(gw: Services) -> None:
    raw = _multipart(TEXT, _attachment(EICAR, "eicar.com")).replace(
        SENDER.encode(), b"sb@jugendamt.example")
    assert isinstance(gw.transport, RecordingTransport)
    message = _verdict(gw, raw, mail_from="sb@jugendamt.example",
                       direction=Direction.OUTBOUND, rcpt="x@partner.example")
    assert message.state == MessageState.QUARANTINED
    assert gw.transport.sent[:1] == [] or all(
        rcpts != ("x@partner.example",) for _, _, rcpts, _ in gw.transport.sent)


def test_fail_closed_while_clamd_is_down(gw: Services, clock: FakeClock,
                                         caplog: pytest.LogCaptureFixture) -> None:
    clamd = shared_clamd()
    raws = [_multipart(TEXT, _attachment(f"Dokument {i}".encode(), f"d{i}.txt"))
            for i in range(3)]
    with clamd.stopped():
        qids = [enqueue(gw, [MAILBOX], raw, mail_from=SENDER) for raw in raws]
        drain(gw)
        states = {load_message(gw, q).state for q in qids}
        assert states == {MessageState.DEFERRED}
        assert filed_copies(gw, MAILBOX) == []
        # Still failing after the alert time: an error is logged once.
        clock.advance(gw.settings.scanning.alert_after_seconds + 1)
        drain(gw)
        assert gw.scanner_health.alerting
        assert any("virus scanner failing" in r.getMessage() for r in caplog.records)
    clock.advance(2 * 3600)
    drain(gw)
    assert {load_message(gw, q).state for q in qids} == {MessageState.DELIVERED}
    assert len(filed_copies(gw, MAILBOX)) == 3
    assert not gw.scanner_health.alerting


def test_blocked_executable_inside_a_zip(gw: Services) -> None:
    pe = b"MZ" + b"\x90" * 58 + (64).to_bytes(4, "little") + b"PE\x00\x00" + b"\x00" * 200
    message = _verdict(gw, _multipart(TEXT, _attachment(_zip("rechnung.pdf.exe", pe),
                                                        "post.zip")))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and message.reason.startswith("blocked: ")
    assert "rechnung.pdf.exe" in message.reason


def _admins(gw: Services) -> None:
    from gateway.staff.users import add_user

    with session_scope(gw.sessions) as s:
        for name in ("alice", "bob"):
            add_user(s, name, f"{name}-sehr-geheim-123", admin=True)


def _approve(gw: Services, queue_id: str, admin: str) -> ReleaseResult:
    from gateway.quarantine.records import approve_release
    from gateway.quarantine.rescan import PipelineRescanner

    with session_scope(gw.sessions) as s:
        return approve_release(s, queue_id, admin=admin, reason=f"checked by {admin}",
                               now=gw.clock(), master_key=gw.master_key,
                               rescan=PipelineRescanner(gw))


def test_released_blocked_attachment_goes_out_after_two_admins(gw: Services) -> None:
    from gateway.quarantine.records import QuarantineError, ReleaseOutcome

    _admins(gw)
    pe = b"MZ" + b"\x90" * 58 + (64).to_bytes(4, "little") + b"PE\x00\x00" + b"\x00" * 200
    message = _verdict(gw, _multipart(TEXT, _attachment(pe, "tool.exe")))
    assert message.state == MessageState.QUARANTINED
    first = _approve(gw, message.queue_id, "alice")
    assert first.outcome == ReleaseOutcome.APPROVAL_RECORDED
    with pytest.raises(QuarantineError, match="second, different admin"):
        _approve(gw, message.queue_id, "alice")
    assert load_message(gw, message.queue_id).state == MessageState.QUARANTINED
    second = _approve(gw, message.queue_id, "bob")
    assert second.outcome == ReleaseOutcome.RELEASED
    drain(gw)
    released = load_message(gw, message.queue_id)
    assert released.state == MessageState.DELIVERED
    assert released.facts is not None and "released from quarantine" in released.facts


def test_infected_message_is_not_released_even_by_two_admins(gw: Services) -> None:
    from gateway.quarantine.records import ReleaseOutcome

    _admins(gw)
    message = _verdict(gw, _multipart(TEXT, _attachment(_zip("a.com", EICAR), "a.zip")))
    _approve(gw, message.queue_id, "alice")
    refused = _approve(gw, message.queue_id, "bob")
    assert refused.outcome == ReleaseOutcome.REFUSED
    assert EICAR_NAME in refused.detail
    assert load_message(gw, message.queue_id).state == MessageState.QUARANTINED
