"""A citizen's submission becomes an inbound message in the queue, sealed like mail the SMTP
listener received, addressed to the topic's shared mailbox: the worker scans it and files it
into a ticket as any mail. Its receipt (without content) goes to the citizen's address, if
given, through the gateway's own notice path.

Runs in the caller's transaction (the request owns it).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy, utils
from email.headerregistry import Address
from email.message import EmailMessage

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway.delivery import notices
from gateway.delivery.dsn import build_notice
from gateway.models import Direction
from gateway.portal import mime_files
from gateway.portal.models import PortalSubmission
from gateway.queue.spool import Envelope, store_received
from gateway.settings import Settings
from gateway.web.templates import office_time

ACTOR = "portal"


@dataclass(frozen=True)
class UploadedFile:
    name: str
    content_type: str
    # A view into the request's body (gateway.portal.upload_form): never copied whole.
    data: bytes | memoryview

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Submission:
    topic: str
    mailbox: str
    name: str
    email: str | None
    case_reference: str | None
    message: str
    files: Sequence[UploadedFile]


@dataclass(frozen=True)
class FileReceipt:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Receipt:
    reference: str
    queue_id: str
    topic: str
    received_at: datetime
    files: tuple[FileReceipt, ...]
    mailed_to: str | None


def new_reference() -> str:
    # 80 random bits, grouped for reading aloud on the phone: "P-7KQ2-M9XD-4TRA-H3"; no
    # 0/O or 1/I to mix up.
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    chars = "".join(secrets.choice(alphabet) for _ in range(16))
    return "P-" + "-".join(chars[i:i + 4] for i in range(0, 16, 4))


def build_message(settings: Settings, submission: Submission, reference: str,
                  now: datetime) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    sender = submission.email or settings.portal.noreply_address
    msg["From"] = Address(display_name=submission.name, addr_spec=sender)
    msg["To"] = submission.mailbox
    subject = f"Bürgerportal: {submission.topic}"
    if submission.case_reference:
        subject += f" ({submission.case_reference})"
    msg["Subject"] = subject
    msg["Date"] = utils.format_datetime(now)
    msg["Message-ID"] = utils.make_msgid(domain=settings.smtp.hostname)
    msg["X-Xgate-Portal-Reference"] = reference
    # Written by the portal, not by the citizen's mail program (RFC 3834), so the new ticket
    # sends no automatic receipt (mailboxes.tickets.receipts): with an address the citizen
    # already has the portal's receipt (one mail, not two); without one it would go to the
    # portal's no-reply address and end as a dead letter.
    msg["Auto-Submitted"] = "auto-generated"
    lines = [
        f"Eingang über das Bürgerportal, Referenz {reference}",
        "",
        f"Thema: {submission.topic}",
        f"Name: {submission.name}",
        f"E-Mail: {submission.email or '(keine angegeben)'}",
        f"Aktenzeichen: {submission.case_reference or '(keines angegeben)'}",
        "",
        submission.message,
    ]
    if submission.files:
        lines += ["", "Dateien (SHA-256):"]
        lines += [f"- {f.name}: {f.sha256}" for f in submission.files]
    msg.set_content("\n".join(lines) + "\n", charset="utf-8", cte="quoted-printable")
    markers = []
    for upload in submission.files:
        maintype, _, subtype = upload.content_type.partition("/")
        if not maintype or not subtype or maintype == "multipart" or maintype == "message":
            maintype, subtype = "application", "octet-stream"
        # The file goes in after the generator ran (gateway.portal.mime_files).
        markers.append(mime_files.new_marker())
        msg.add_attachment(markers[-1], maintype=maintype, subtype=subtype,
                           filename=upload.name, cte="base64")
    # One copy of the filled buffer: the queue takes bytes (sealing then needs two more).
    return bytes(mime_files.fill(msg.as_bytes(), markers, [f.data for f in submission.files]))


@dataclass(frozen=True)
class Built:
    """A submission as the message to queue: no longer needs the request's body."""

    reference: str
    topic: str
    mailbox: str
    email: str | None
    data: bytes
    files: tuple[FileReceipt, ...]


def build(settings: Settings, submission: Submission, now: datetime) -> Built:
    reference = new_reference()
    files = tuple(FileReceipt(f.name, len(f.data), f.sha256) for f in submission.files)
    return Built(reference, submission.topic, submission.mailbox, submission.email,
                 build_message(settings, submission, reference, now), files)


def submit(session: Session, master: MasterKey, settings: Settings, submission: Submission,
           now: datetime) -> Receipt:
    return queue(session, master, settings, build(settings, submission, now), now)


def queue(session: Session, master: MasterKey, settings: Settings, built: Built,
          now: datetime) -> Receipt:
    """Seal the built message into the queue, with its submission row and, given an
    address, the receipt notice; ``now`` as given to ``build``."""
    sender = built.email or settings.portal.noreply_address
    stored = store_received(session, master, Envelope(
        direction=Direction.INBOUND, mail_from=sender, rcpt_tos=[built.mailbox],
        data=built.data, peer="portal", helo="portal"), actor=ACTOR, now=now)
    session.add(PortalSubmission(reference=built.reference, queue_id=stored.queue_id,
                                 topic=built.topic, files=len(built.files), submitted_at=now))
    if built.email:
        notice = notices.portal_receipt(reference=built.reference, received=office_time(now),
                                        files=len(built.files))
        store_received(session, master, Envelope(
            direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[built.email],
            data=build_notice(reporting_mta=settings.smtp.hostname,
                              postmaster=settings.delivery.postmaster, to=built.email,
                              subject=notice.subject, text=notice.text, now=now)),
            actor=ACTOR, now=now)
    return Receipt(built.reference, stored.queue_id, built.topic, now, built.files, built.email)
