"""A ticket's opened content made ready for the page: a message's sender, recipients,
subject, date and text (an HTML part only as text, admin_ui.pages.tickets.html_text) and its
attachments as names and sizes; a note's text. Nothing of it is ever live HTML: the template
escapes every value."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from admin_ui.pages.tickets.html_text import html_to_text
from mailboxes.tickets.replies import safe_filename

MAX_SHOWN = 200_000


@dataclass(frozen=True)
class AttachmentInfo:
    index: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Shown:
    text: str
    sender: str = ""
    to: str = ""
    subject: str = ""
    date: str = ""
    # The text came from an HTML part (converted; nothing of the HTML is active).
    from_html: bool = False
    attachments: list[AttachmentInfo] = field(default_factory=list)


def _decoded(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def show_message(data: bytes) -> Shown:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain", "html"))
    text, from_html = "", False
    if isinstance(body, EmailMessage):
        text = _decoded(body)
        if body.get_content_type() == "text/html":
            text, from_html = html_to_text(text), True
    attachments = []
    # The same order as mailboxes.tickets.reads.open_attachment counts them.
    for index, part in enumerate(message.iter_attachments()):
        assert isinstance(part, EmailMessage)
        payload = part.get_payload(decode=True)
        attachments.append(AttachmentInfo(
            index, safe_filename(part.get_filename() or ""), part.get_content_type(),
            len(payload) if isinstance(payload, bytes) else 0))
    return Shown(text=text[:MAX_SHOWN], sender=str(message.get("From", "")),
                 to=str(message.get("To", "")), subject=str(message.get("Subject", "")),
                 date=str(message.get("Date", "")), from_html=from_html,
                 attachments=attachments)


def show_note(data: bytes) -> Shown:
    return Shown(text=data.decode("utf-8", "replace"))
