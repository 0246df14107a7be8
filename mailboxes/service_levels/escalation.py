"""Escalating breached deadlines: once per ticket and deadline, to the mailbox's escalation
contacts (default: its leads), in the audit trail, in the app (sla_escalations, shown on the
lead's findings page) and by mail through the gateway's own notice path (German first,
English below). The mail names the mailbox and the ticket numbers, never content.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit import AuditAction
from gateway.delivery.dsn import build_notice
from gateway.delivery.notices import Bilingual, Notice
from gateway.models import Direction, StaffAddress, StaffUser
from gateway.queue.spool import Envelope, store_received
from gateway.settings import Settings
from mailboxes.models import Mailbox
from mailboxes.scheduler.jobs import OFFICE_TIME
from mailboxes.service_levels.config import ServiceLevels, contacts_of
from mailboxes.service_levels.models import Escalation
from mailboxes.service_levels.rules.sla import FIRST_RESPONSE
from mailboxes.service_levels.sla_pass import Breach

_KIND_DE = {FIRST_RESPONSE: "Erste Antwort", "resolution": "Erledigung"}
_KIND_EN = {FIRST_RESPONSE: "first response", "resolution": "resolution"}


# A mailbox configured for the first time may have thousands of overdue tickets: the mail
# names the first ones and says how many more the findings page lists.
MAX_LISTED = 50


def escalation_notice(mailbox: Mailbox, breaches: Sequence[Breach]) -> Notice:
    def when(at: datetime) -> str:
        return at.astimezone(OFFICE_TIME).strftime("%d.%m.%Y %H:%M")
    listed, more = breaches[:MAX_LISTED], len(breaches) - MAX_LISTED
    lines_de = "\n".join(f"- {b.ticket_number}: {_KIND_DE[b.kind]} fällig seit "
                         f"{when(b.due_at)}" for b in listed)
    lines_en = "\n".join(f"- {b.ticket_number}: {_KIND_EN[b.kind]} due since "
                         f"{when(b.due_at)}" for b in listed)
    if more > 0:
        lines_de += f"\n- ... und {more} weitere"
        lines_en += f"\n- ... and {more} more"
    de = (f"Im Postfach {mailbox.name} <{mailbox.address}> sind Fristen überschritten:\n\n"
          f"{lines_de}\n\nSie erhalten diese Nachricht als Eskalationskontakt des Postfachs. "
          "Die Vorgänge und alle Hinweise finden Sie in der Web-Anwendung unter "
          "„Hinweise und Eskalationen“ des Postfachs.")
    en = (f"Deadlines have passed in the mailbox {mailbox.name} <{mailbox.address}>:\n\n"
          f"{lines_en}\n\nYou receive this as an escalation contact of the mailbox. The "
          "tickets and all findings are on the mailbox's \"Findings and escalations\" page of "
          "the web app.")
    subject = (f"Frist überschritten: {len(breaches)} Vorgang/Vorgänge in {mailbox.name} / "
               f"Deadline passed: {len(breaches)} ticket(s) in {mailbox.name}")
    return Notice(subject, Bilingual(de, en).render())


def _address_of(session: Session, user: StaffUser, mailbox: Mailbox) -> str | None:
    """The user's own address: the first one that is not the mailbox's (a function address
    would tell the whole team)."""
    for address in session.execute(select(StaffAddress.address).where(
            StaffAddress.user_id == user.id).order_by(StaffAddress.address)).scalars():
        if address.lower() != mailbox.address.lower():
            return address
    return None


def escalate(session: Session, breaches: Sequence[Breach], *, levels: dict[int, ServiceLevels],
             settings: Settings, master: MasterKey, actor: str, now: datetime) -> int:
    """Store, audit and mail the breaches (new ones only: the pass filtered them)."""
    by_mailbox: dict[int, list[Breach]] = defaultdict(list)
    for breach in breaches:
        by_mailbox[breach.mailbox_id].append(breach)
    for mailbox_id, found in by_mailbox.items():
        mailbox = session.get(Mailbox, mailbox_id)
        if mailbox is None:
            continue
        contacts = contacts_of(session, mailbox_id, levels[mailbox_id])
        told = [u.username for u in contacts]
        session.execute(insert(Escalation), [
            {"ticket_id": b.ticket_id, "mailbox_id": mailbox_id, "kind": b.kind,
             "due_at": b.due_at, "escalated_at": now, "told": json.dumps(told)}
            for b in found])
        audit.record_many(session, [audit.Event(actor, AuditAction.SLA_ESCALATED, None, {
            "mailbox": mailbox.address, "ticket": b.ticket_number, "kind": b.kind,
            "due_at": b.due_at.isoformat(), "told": told}) for b in found])
        notice = escalation_notice(mailbox, found)
        for user in contacts:
            address = _address_of(session, user, mailbox)
            if address is None:
                continue  # told in the app only: the page lists the escalation
            data = build_notice(reporting_mta=settings.smtp.hostname,
                                postmaster=settings.delivery.postmaster, to=address,
                                subject=notice.subject, text=notice.text, now=now)
            store_received(session, master, Envelope(
                direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[address], data=data),
                actor=actor, now=now)
    return len(breaches)
