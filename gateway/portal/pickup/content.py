"""What the citizen sees of a pickup item: the text and the attachments of its message."""

from __future__ import annotations

import email
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage


@dataclass(frozen=True)
class Attachment:
    part: int  # its place among the message's attachments, as downloads record it
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class PickupMessage:
    subject: str
    text: str
    attachments: tuple[Attachment, ...]


def parse(raw: bytes) -> PickupMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    attachments = []
    for number, part in enumerate(msg.iter_attachments()):
        if not isinstance(part, EmailMessage):
            continue
        data = part.get_payload(decode=True)
        attachments.append(Attachment(
            number, part.get_filename() or f"anhang-{number + 1}",
            part.get_content_type(), data if isinstance(data, bytes) else b""))
    return PickupMessage(str(msg.get("Subject", "")), str(text), tuple(attachments))
