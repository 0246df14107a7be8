"""End to end through SMTP: the consent gate between a caseworker and a partner office.

A caseworker submits reports over STARTTLS and AUTH to the real submission listener; a worker
runs the pipeline; the real relay delivers S/MIME-encrypted mail to an SMTP sink standing in
for the partner office, whose openssl decrypts what arrived. The five cases of the issue:

1. a report without a release is held, and the notice reaches the sender;
2. a release is registered, and the report is relayed;
3. a revocation while a second report waits in the queue stops that report;
4. a statutory transfer without a second approver does not leave;
5. with the approver, it does;

and a report its sender forgot to tag: it names a case the register knows (whose release was
revoked) and is held; the same mail naming a case the register does not know leaves.

And the other direction: a handover from the partner, encrypted for us, shows its case and
release in X-Xgate-Handover-* headers of what we file.
"""

from __future__ import annotations

import smtplib
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.consent.actions import record_release, record_revocation
from gateway.consent.holds import approve_statutory
from gateway.consent.records import ReleaseInput
from gateway.db import session_scope
from gateway.models import Message, MessageState
from gateway.policy.consent import RecipientRef, local_date
from gateway.services import Services
from gateway.settings import Settings
from tests.support import crypto_setup
from tests.support.openssl_partner import OpensslPartner, mail
from tests.support.pipeline import drain, filed_copies, load_message
from tests.support.sink import Delivery, SmtpSink
from tests.support.smime_pki import Party, make_ca, make_person
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    Edge,
    edge_fixture,
    partner_relay_settings,
    relaying_services,
    start_edge_fixture,
    tls_files_fixture,
)

STAFF = "sachbearbeitung@jugendamt.example"
LEAD = "leitung@jugendamt.example"
MAILBOX = "uebergaben@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
CASE = "51.2-1234/2026"
PASSWORD = "Sehr-geheimes-Passwort-1"
ENTITY = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
          b"Psychologisches Gutachten zu Kind C. Vertraulich.\r\n")
TEXT = b"Psychologisches Gutachten zu Kind C."


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    return partner_relay_settings(tmp_path, database_url, sink)


@pytest.fixture
def services(settings: Settings) -> Services:
    return relaying_services(settings, mailboxes={MAILBOX: "Fallübergaben"},
                             users={"sb": (PASSWORD, [STAFF]), "leitung": (PASSWORD, [LEAD])})


class Office:
    """Our office's keys and the partner office (its key, its openssl) for one test."""

    def __init__(self, services: Services, tmp_path: Path) -> None:
        self.ca: Party = make_ca(tmp_path, "ca")
        (tmp_path / "ca.pem").write_bytes(self.ca.cert_pem.read_bytes())
        self.partner: Party = make_person(tmp_path, "partner", PARTNER, self.ca)
        self.staff = make_person(tmp_path, "staff", STAFF, self.ca)
        self.mailbox = make_person(tmp_path, "mailbox", MAILBOX, self.ca)
        crypto_setup.own_smime(services, STAFF, self.staff)
        crypto_setup.own_smime(services, MAILBOX, self.mailbox)
        crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                             outbound_policy="require-smime")
        crypto_setup.partner_key(services, self.partner.der)
        self.openssl = OpensslPartner(tmp_path)

    def read(self, delivery: Delivery) -> bytes:
        """What the partner office reads: decrypted with its key, signature checked."""
        return self.openssl.verify(self.openssl.decrypt(delivery.content, self.partner),
                                   self.ca)


@pytest.fixture
def office(services: Services, tmp_path: Path) -> Office:
    return Office(services, tmp_path)


def submit(edge: Edge, raw: bytes, *, user: str = "sb", sender: str = STAFF) -> None:
    edge.submit(user, PASSWORD, sender, [PARTNER], raw)


def text_of(delivery: Delivery) -> str:
    message = BytesParser(policy=policy.default).parsebytes(delivery.content)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def newest_queue_id(services: Services) -> str:
    with session_scope(services.sessions) as s:
        return s.scalars(select(Message.queue_id).where(Message.mail_from == STAFF)
                         .order_by(Message.id.desc())).first() or ""


def register(services: Services) -> int:
    today = local_date(services.clock())
    data = ReleaseInput(case=CASE, data_subjects=("C. K.",), grantor_name="M. K.",
                        grantor_role="parent", categories=("psychologisches Gutachten",),
                        recipients=(RecipientRef("partner", "Jugendamt B"),),
                        purpose="Fallübergabe bei Umzug", valid_from=today,
                        valid_until=today + timedelta(days=90))
    with session_scope(services.sessions) as s:
        return record_release(s, services.master_key, services.settings, data, document=None,
                              actor="sb", now=services.clock()).version.release.id


def test_report_held_released_and_revocation_stops_the_next(
        services: Services, edge: Edge, sink: SmtpSink, office: Office) -> None:
    subject = f"[AZ {CASE}][Gutachten] Umzug der Familie K."
    # 1. No release yet: held, and the sender's notice is relayed to the sender.
    submit(edge, mail(ENTITY, sender=STAFF, to=PARTNER, subject=subject))
    drain(services)
    first = newest_queue_id(services)
    assert load_message(services, first).state == MessageState.HELD
    [notice] = sink.deliveries
    assert notice.rcpt_tos == (STAFF,)
    assert f"no release for case {CASE}" in text_of(notice) and first in text_of(notice)

    # 2. The release is registered: the held report leaves by itself, encrypted.
    release_id = register(services)
    drain(services)
    assert load_message(services, first).state == MessageState.DELIVERED
    [report] = [d for d in sink.deliveries if d.rcpt_tos == (PARTNER,)]
    assert TEXT not in report.content
    headers = BytesHeaderParser().parsebytes(report.content)
    assert headers["Subject"] == "Umzug der Familie K."
    assert "X-Xgate-Case" not in headers  # the case travels inside the encryption only
    inside = office.read(report)
    assert TEXT in inside
    assert f"X-Xgate-Case: {CASE}".encode() in inside
    assert f"X-Xgate-Release: {release_id} v1".encode() in inside

    # 3. A second report waits in the queue (not yet processed) when the release is revoked.
    submit(edge, mail(ENTITY, sender=STAFF, to=PARTNER, subject=subject))
    second = newest_queue_id(services)
    assert second != first
    with session_scope(services.sessions) as s:
        record_revocation(s, services.master_key, release_id, actor="sb",
                          reason="Widerruf der Mutter", now=services.clock())
    drain(services)
    assert load_message(services, second).state == MessageState.REJECTED
    assert len([d for d in sink.deliveries if d.rcpt_tos == (PARTNER,)]) == 1
    dsn = [d for d in sink.deliveries if d.rcpt_tos == (STAFF,)][-1]
    assert b"was revoked" in dsn.content


def test_statutory_transfer_leaves_only_with_a_second_approver(
        services: Services, edge: Edge, sink: SmtpSink, office: Office) -> None:
    extra = (f"X-Xgate-Case: {CASE}\r\nX-Xgate-Category: Stellungnahme\r\n"
             "X-Xgate-Legal-Basis: § 8a SGB VIII\r\n"
             "X-Xgate-Justification: akute Gefährdung, Inobhutnahme erfolgt\r\n").encode()
    submit(edge, mail(ENTITY, sender=STAFF, to=PARTNER, subject="Mitteilung",
                      extra_headers=extra))
    drain(services)
    queue_id = newest_queue_id(services)
    # 4. Without the second approver it does not leave.
    held = load_message(services, queue_id)
    assert held.state == MessageState.HELD
    assert held.reason is not None and "second person" in held.reason
    assert not [d for d in sink.deliveries if d.rcpt_tos == (PARTNER,)]

    # 5. With the approver it does, and the partner sees the legal basis inside.
    with session_scope(services.sessions) as s:
        approve_statutory(s, queue_id, approver="leitung", reason="Gefährdung bestätigt",
                          now=services.clock())
    drain(services)
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    [report] = [d for d in sink.deliveries if d.rcpt_tos == (PARTNER,)]
    inside = office.read(report)
    assert TEXT in inside
    assert b"X-Xgate-Legal-Basis:" in inside


def test_untagged_report_naming_a_known_case_is_held(
        services: Services, edge: Edge, sink: SmtpSink, office: Office) -> None:
    release_id = register(services)
    with session_scope(services.sessions) as s:
        record_revocation(s, services.master_key, release_id, actor="sb",
                          reason="Widerruf der Mutter", now=services.clock())
    submit(edge, mail(ENTITY, sender=STAFF, to=PARTNER,
                      subject=f"Psychologisches Gutachten zu L. M. (AZ {CASE})"))
    drain(services)
    held = load_message(services, newest_queue_id(services))
    assert held.state == MessageState.HELD
    assert held.reason is not None and f"names case {CASE}" in held.reason
    [notice] = sink.deliveries
    assert notice.rcpt_tos == (STAFF,)
    assert f"names case {CASE} known to the consent register, but no category" in text_of(
        notice)

    # Naming a case the register does not know, the same mail leaves as before.
    submit(edge, mail(ENTITY, sender=STAFF, to=PARTNER,
                      subject="Psychologisches Gutachten zu L. M. (AZ 51.2-9999/2026)"))
    drain(services)
    assert load_message(services, newest_queue_id(services)).state == MessageState.DELIVERED
    [report] = [d for d in sink.deliveries if d.rcpt_tos == (PARTNER,)]
    assert TEXT in office.read(report)


def test_handover_from_a_partner_shows_its_case_and_release(
        services: Services, edge: Edge, office: Office) -> None:
    """The partner's gateway put the case and release inside the encryption; we show them
    as the partner's statements, and drop the same fields if they come unprotected."""
    inner = (f"X-Xgate-Case: {CASE}\r\nX-Xgate-Category: Hilfeplan\r\n"
             "X-Xgate-Release: 17 v2\r\n").encode() + ENTITY
    sealed = office.openssl.encrypt(office.openssl.sign(inner, office.partner, office.ca,
                                                        opaque=True), office.mailbox)
    forged = b"X-Xgate-Handover-Case: forged\r\nX-Xgate-Case: forged-outside\r\n"
    with smtplib.SMTP(*edge.inbound) as client:
        client.sendmail(PARTNER, [MAILBOX], mail(sealed, sender=PARTNER, to=MAILBOX,
                                                  extra_headers=forged))
        client.sendmail(PARTNER, [MAILBOX], mail(ENTITY, sender=PARTNER, to=MAILBOX,
                                                  extra_headers=forged))
    drain(services)
    filed = filed_copies(services, MAILBOX, notices=True)
    by_encryption = {BytesHeaderParser().parsebytes(f)["X-Xgate-Encryption"] != "none": f
                     for f in filed}
    protected = BytesHeaderParser().parsebytes(by_encryption[True])
    assert protected["X-Xgate-Handover-Case"] == CASE
    assert protected["X-Xgate-Handover-Release"] == "17 v2"
    assert protected["X-Xgate-Signature"] == "valid"
    assert protected.get_all("X-Xgate-Handover-Case") == [CASE]
    plain = BytesHeaderParser().parsebytes(by_encryption[False])
    assert plain["X-Xgate-Handover-Case"] is None and plain["X-Xgate-Case"] is None
