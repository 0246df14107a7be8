"""For the console's consent pages: a small real PDF (what a scanner's driver writes, in
miniature) and the two teams' releases and held reports the page tests start from."""

from __future__ import annotations

from datetime import date

from gateway.consent.actions import record_release
from gateway.consent.records import Document, ReleaseInput
from gateway.db import session_scope
from gateway.keydir.partners import add_partner
from gateway.models import Direction, HoldKind
from gateway.policy.consent import RecipientRef, normalise_case
from gateway.queue.spool import Envelope
from gateway.services import Services
from mailboxes.directory import find_mailbox
from tests.support.db import store_held


def small_pdf(line: str = "Schweigepflichtentbindung") -> bytes:
    """A one-page PDF 1.4 with one line of text and a correct cross-reference table."""
    stream = f"BT /F1 18 Tf 72 720 Td ({line}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


PARTNER = "Jugendamt B"
PARTNER_ADDRESS = "asd@jugendamt-b.example"


def partner(services: Services) -> None:
    with session_scope(services.sessions) as s:
        add_partner(s, PARTNER, actor="test", now=services.clock(),
                    patterns=["jugendamt-b.example"])


def release_input(case: str, *, subject: str = "Mia Muster", start: date, end: date,
                  category: str = "Hilfeplan") -> ReleaseInput:
    return ReleaseInput(case=case, data_subjects=(subject,), grantor_name="Petra Muster",
                        grantor_role="parent", categories=(category,),
                        recipients=(RecipientRef("partner", PARTNER),),
                        purpose="Hilfeplanung", valid_from=start, valid_until=end)


def recorded(services: Services, data: ReleaseInput, mailbox: str | None, *,
             actor: str = "test") -> int:
    """A release recorded (with a PDF scan) in the mailbox at ``mailbox`` (None: in none,
    as the CLI records); its id."""
    with session_scope(services.sessions) as s:
        box = find_mailbox(s, mailbox) if mailbox else None
        result = record_release(s, services.master_key, services.settings, data,
                                document=Document("entbindung.pdf", "application/pdf",
                                                  small_pdf()),
                                actor=actor, now=services.clock(),
                                mailbox_id=box.id if box else None)
        return result.version.release.id


def held_report(services: Services, sender: str, case: str, *, auth_user: str,
                kind: HoldKind = HoldKind.STATUTORY_APPROVAL) -> str:
    """A report to the partner the consent gate holds, sent from ``sender``; its queue id."""
    reason = ("consent: statutory transfer on § 8a SGB VIII awaits approval" if
              kind == HoldKind.STATUTORY_APPROVAL else "consent: no current release covers it")
    return store_held(services.settings, Envelope(
        Direction.OUTBOUND, sender, [PARTNER_ADDRESS], b"Subject: Bericht\r\n\r\nx\r\n",
        auth_user=auth_user), kind=kind, reason=reason, now=services.clock(), facts={
            "consent:case": case, "consent:category": "Hilfeplan",
            "consent:legal_basis": "§ 8a SGB VIII"}, case_reference=normalise_case(case))
