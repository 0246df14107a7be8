"""What a mailbox says when it answers: the receipt (on/off, its text) and the signature
under replies. Changes are recorded in the audit trail like every other mailbox change."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from mailboxes.directory import MailboxError, find_mailbox, normalise_address

TICKET_PLACEHOLDER = "{ticket}"
MAX_TEMPLATE_LENGTH = 4000
MAX_SIGNATURE_LENGTH = 2000


def set_outreach(session: Session, address: str, *, actor: str,
                 receipt_enabled: bool | None = None, receipt_template: str | None = None,
                 reset_template: bool = False, signature: str | None = None
                 ) -> dict[str, tuple[object, object]]:
    """Change the receipt switch, the receipt text (``reset_template``: back to the
    default) or the signature; what changed, as (before, after)."""
    mailbox = find_mailbox(session, address)
    if mailbox is None:
        raise MailboxError(f"no mailbox {normalise_address(address)}")
    changes: dict[str, tuple[object, object]] = {}
    if receipt_enabled is not None and receipt_enabled != mailbox.receipt_enabled:
        changes["receipt"] = (mailbox.receipt_enabled, receipt_enabled)
        mailbox.receipt_enabled = receipt_enabled
    if reset_template or receipt_template is not None:
        new = None if reset_template else checked_template(receipt_template or "")
        if new != mailbox.receipt_template:
            # The texts themselves are the office's own words, not personal data; the audit
            # entry records that they changed, and their length, not the text.
            changes["receipt_template"] = (_size(mailbox.receipt_template), _size(new))
            mailbox.receipt_template = new
    if signature is not None:
        new_signature = checked_signature(signature)
        if new_signature != mailbox.signature:
            changes["signature"] = (_size(mailbox.signature), _size(new_signature))
            mailbox.signature = new_signature
    session.flush()
    if changes:
        audit.record(session, actor=actor, action=AuditAction.MAILBOX_CHANGED, detail={
            "mailbox": mailbox.address,
            **{field: {"from": before, "to": after}
               for field, (before, after) in changes.items()}})
    return changes


def checked_template(text: str) -> str:
    text = text.replace("\r\n", "\n").strip()
    if TICKET_PLACEHOLDER not in text:
        raise MailboxError(f"a receipt text must name the ticket number as {TICKET_PLACEHOLDER}")
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise MailboxError(f"a receipt text may have at most {MAX_TEMPLATE_LENGTH} characters")
    return text


def checked_signature(text: str) -> str | None:
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_SIGNATURE_LENGTH:
        raise MailboxError(f"a signature may have at most {MAX_SIGNATURE_LENGTH} characters")
    return text or None


def _size(text: str | None) -> str:
    return "default" if text is None else f"{len(text)} characters"
