"""End to end through SMTP: encrypted mail in from a partner, encrypted mail out to one.

In: openssl (S/MIME) and gpg (OpenPGP) make the partner's message, smtplib delivers it to the
real inbound listener, a worker decrypts and verifies it, and the shared mailbox holds the
plain message with the gateway's note. Out: a staff member submits over STARTTLS and AUTH,
the worker signs and encrypts, the real relay delivers to an SMTP sink on loopback, and
openssl / gpg on the partner's side decrypt and verify what arrived.
"""

from __future__ import annotations

import smtplib
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.db import session_scope
from gateway.keydir.models import KeyKind
from gateway.keydir.own_keys import own_keys_for
from gateway.keydir.own_openpgp import generate_own_openpgp
from gateway.models import Direction, Message, MessageState
from gateway.services import Services
from gateway.settings import Settings
from tests.support import crypto_setup
from tests.support.gpg_partner import GpgPartner
from tests.support.openssl_partner import OpensslPartner, crlf, mail
from tests.support.pipeline import bounces, drain, filed_copies
from tests.support.sink import SmtpSink
from tests.support.smime_pki import make_ca, make_person
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    Edge,
    edge_fixture,
    partner_relay_settings,
    relaying_services,
    start_edge_fixture,
    tls_files_fixture,
)
from tests.support.warned import assert_warned

MAILBOX = "hilfeplan@jugendamt.example"
STAFF = "sachbearbeitung@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
USER, PASSWORD = "sb", "Sehr-geheimes-Passwort-1"
ENTITY = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
          b"Stellungnahme zu Kind C. Vertraulich.\r\n")
TEXT = b"Stellungnahme zu Kind C. Vertraulich."


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    return partner_relay_settings(tmp_path, database_url, sink)


@pytest.fixture
def services(settings: Settings) -> Services:
    return relaying_services(settings, mailboxes={MAILBOX: "Hilfeplanung"},
                             users={USER: (PASSWORD, [STAFF])})


def test_smime_both_ways_through_smtp(services: Services, edge: Edge, sink: SmtpSink,
                                      tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.read_bytes())
    partner = make_person(tmp_path, "partner", PARTNER, ca)
    ours = make_person(tmp_path, "ours", MAILBOX, ca)
    staff = make_person(tmp_path, "staff", STAFF, ca)
    crypto_setup.own_smime(services, MAILBOX, ours)
    crypto_setup.own_smime(services, STAFF, staff)
    crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                         outbound_policy="require-smime", smime_gcm=True,
                         inbound_require_encryption=True, inbound_require_signature=True)
    crypto_setup.partner_key(services, partner.der)
    openssl = OpensslPartner(tmp_path)

    # In: signed by the partner, then encrypted for the mailbox.
    signed = openssl.sign(ENTITY, partner, ca, opaque=True)
    sealed = openssl.encrypt(signed, ours, cipher="-aes-256-gcm",
                             keyopt=("-keyopt", "rsa_padding_mode:oaep"))
    with smtplib.SMTP(*edge.inbound) as client:
        client.sendmail(PARTNER, [MAILBOX], mail(sealed, sender=PARTNER, to=MAILBOX))
    drain(services)
    [filed] = filed_copies(services, MAILBOX, notices=True)
    assert TEXT in filed
    headers = BytesHeaderParser().parsebytes(filed)
    assert headers["X-Xgate-Signature"] == "valid"
    assert str(headers["X-Xgate-Encryption"]).startswith("S/MIME aes256-gcm, rsaes-oaep")

    # Out: the staff member answers; the partner's openssl reads it.
    edge.submit(USER, PASSWORD, STAFF, [PARTNER],
                mail(ENTITY, sender=STAFF, to=PARTNER, subject="Antwort"))
    drain(services)
    # The mailbox's receipt to the partner (null sender) aside.
    [delivered] = [d for d in sink.deliveries if d.mail_from]
    assert delivered.rcpt_tos == (PARTNER,) and TEXT not in delivered.content
    content = openssl.verify(openssl.decrypt(delivered.content, partner), ca)
    assert TEXT in content


def test_openpgp_both_ways_through_smtp(services: Services, edge: Edge, sink: SmtpSink,
                                        tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(make_ca(tmp_path, "ca", bits=2048).cert_pem.read_bytes())
    with session_scope(services.sessions) as s:
        generate_own_openpgp(s, services.master_key, MAILBOX, actor="test",
                             now=services.clock())
        generate_own_openpgp(s, services.master_key, STAFF, actor="test",
                             now=services.clock())
        [mailbox_key] = own_keys_for(s, services.master_key, MAILBOX, KeyKind.OPENPGP)
        [staff_key] = own_keys_for(s, services.master_key, STAFF, KeyKind.OPENPGP)
    with GpgPartner.create(tmp_path / "gpg") as gpg:
        fpr = gpg.generate(f"Fachdienst <{PARTNER}>", "rsa3072")
        gpg.import_keys(mailbox_key.public)
        gpg.import_keys(staff_key.public)
        crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                             outbound_policy="require-openpgp")
        crypto_setup.partner_key(services, gpg.export_public(fpr))

        raw = gpg.pgp_mime_encrypted(ENTITY, [mailbox_key.fingerprint], signer=fpr)
        raw = raw.replace(b"From: asd@partner.example", f"From: {PARTNER}".encode(), 1)
        with smtplib.SMTP(*edge.inbound) as client:
            client.sendmail(PARTNER, [MAILBOX], raw)
        drain(services)
        [filed] = filed_copies(services, MAILBOX, notices=True)
        assert TEXT in filed
        headers = BytesHeaderParser().parsebytes(filed)
        assert headers["X-Xgate-Signature"] == "valid" and fpr in headers["X-Xgate-Signer"]

        edge.submit(USER, PASSWORD, STAFF, [PARTNER],
                    mail(ENTITY, sender=STAFF, to=PARTNER, subject="Antwort"))
        drain(services)
        [delivered] = [d for d in sink.deliveries if d.mail_from]  # not the receipt
        content = delivered.content
        armored = content[content.index(b"-----BEGIN PGP MESSAGE-----"):]
        outcome = gpg.decrypt(armored[: armored.index(b"-----END PGP MESSAGE-----") + 25])
        assert outcome.has("GOODSIG") and TEXT in outcome.stdout, outcome.stderr


def test_tampered_signature_through_smtp_quarantined_then_warned(
        services: Services, edge: Edge, tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.read_bytes())
    partner = make_person(tmp_path, "partner", PARTNER, ca)
    signed = crlf(OpensslPartner(tmp_path).sign(ENTITY, partner, ca, opaque=False))
    tampered = mail(signed.replace(b"Kind C.", b"Kind D.", 1), sender=PARTNER, to=MAILBOX)
    reason = "tampered: the content was altered after signing (content digest mismatch)"

    # By default (and for a sender no partner record names) it is kept for an admin.
    with smtplib.SMTP(*edge.inbound) as client:
        client.sendmail(PARTNER, [MAILBOX], tampered)
    drain(services)
    with session_scope(services.sessions) as s:
        message = s.scalars(select(Message).where(Message.direction == Direction.INBOUND,
                                                  Message.mail_from == PARTNER)).one()
        assert message.state == MessageState.QUARANTINED
        assert message.reason == f"S/MIME signature fails: {reason}"
    told = sorted(m.recipients[0].address for m in bounces(services))
    assert told == sorted([PARTNER, MAILBOX])
    assert not [m for m in filed_copies(services, MAILBOX, notices=True) if b"Kind D." in m]

    # The partner's admin chose warnings instead: delivered, and every reader sees why.
    crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                         inbound_invalid_signature="warn")
    with smtplib.SMTP(*edge.inbound) as client:
        client.sendmail(PARTNER, [MAILBOX], tampered)
    drain(services)
    [filed] = [m for m in filed_copies(services, MAILBOX, notices=True) if b"Kind D." in m]
    assert_warned(filed, reason, "der Inhalt wurde nach dem Signieren verändert",
                  sender=PARTNER, to=MAILBOX, original_text="Kind D.")
