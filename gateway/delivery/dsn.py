"""Delivery status notifications (RFC 3464) and notices to senders.

A DSN quotes only the original's header block (text/rfc822-headers), never its body: the body
may be a sensitive report, and the sender has it already. The texts people read are German
first, English below (``notices.py``), in UTF-8 and quoted-printable, so they pass every hop
whether it offers 8BITMIME or not; the machine-readable part is RFC 3464's and unchanged.
"""

from __future__ import annotations

import email.utils
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.message import EmailMessage
from email.policy import SMTP

from gateway.delivery.notices import dsn_text
from gateway.mime.headers import header_block_alone


@dataclass(frozen=True)
class Failure:
    recipient: str
    # "5.1.1" style status and the remote's (or our) diagnostic.
    status: str
    diagnostic: str
    remote_mta: str | None = None


def build_dsn(*, reporting_mta: str, postmaster: str, to: str, queue_id: str,
              failures: Sequence[Failure], original: bytes, arrival: datetime,
              now: datetime) -> bytes:
    # Composed directly: the report's shape is fixed, and the stdlib generator cannot write a
    # message/delivery-status part built from scratch.
    boundary = "=_xgate_dsn_" + secrets.token_hex(12)
    human = dsn_text(reporting_mta=reporting_mta, queue_id=queue_id,
                     failures=[(f.recipient, _one_line(f.diagnostic)) for f in failures])
    status = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Xgate-Queue-ID: {queue_id}",
        f"Arrival-Date: {email.utils.format_datetime(arrival)}",
    ]
    for f in failures:
        status += ["", f"Final-Recipient: rfc822; {f.recipient}", "Action: failed",
                   f"Status: {f.status}"]
        if f.remote_mta:
            status.append(f"Remote-MTA: dns; {f.remote_mta}")
        status.append(f"Diagnostic-Code: smtp; {_one_line(f.diagnostic)}")
    header_block = header_block_alone(original)
    head = [
        f"From: Mail Delivery System <{postmaster}>",
        f"To: {to}",
        "Subject: Unzustellbare Nachricht / Undelivered Mail Returned to Sender",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: {email.utils.make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a delivery status notification in MIME format.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        *_quoted_printable(human),
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *status,
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Transfer-Encoding: " + ("8bit" if _has_8bit(header_block) else "7bit"),
        "",
    ]
    tail = ["", f"--{boundary}--", ""]
    return (_lines(head) + header_block + b"\r\n" + _lines(tail))


def _lines(lines: list[str]) -> bytes:
    return "\r\n".join(_no_crlf(line) for line in lines).encode("utf-8") + b"\r\n"


def _no_crlf(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _quoted_printable(lines: list[str]) -> list[str]:
    # Each line on its own has no CR or LF left to be mistaken for a line end; the encoder
    # works on octets written as latin-1 characters, as the email package's does.
    octets = "\r\n".join(_no_crlf(line) for line in lines).encode("utf-8").decode("latin-1")
    return quoprimime.body_encode(octets, maxlinelen=76, eol="\r\n").split("\r\n")


def build_notice(*, reporting_mta: str, postmaster: str, to: str, subject: str, text: str,
                 now: datetime) -> bytes:
    """A plain notice (held, quarantined) to a sender or mailbox owner."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"xgate <{postmaster}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=reporting_mta)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    return msg.as_bytes()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _has_8bit(data: bytes) -> bool:
    return any(b > 127 for b in data)
