"""The morning digest of due follow-ups: one mail per agent and day, German first, English
below, queued as the gateway's own notice (gateway.delivery.notices, gateway.delivery.dsn).

It names tickets by number, mailbox and day only: subjects and notes are content, read in
the web app where each read is audited, not copied into mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit import AuditAction
from gateway.db import table_of
from gateway.delivery.dsn import build_notice
from gateway.delivery.notices import Bilingual, Notice
from gateway.models import Direction, StaffAddress, StaffUser
from gateway.queue.spool import Envelope, store_received
from gateway.settings import Settings
from mailboxes.hotline.days import office_day
from mailboxes.hotline.follow_ups import DueFollowUp, due_follow_ups, holder_column
from mailboxes.hotline.models import DigestSent, FollowUp
from mailboxes.tickets.models import Ticket

_INSERT_SENT = insert(table_of(DigestSent))


def digest_notice(username: str, day: date, due: Sequence[DueFollowUp]) -> Notice:
    """The digest's text for one agent (pure: tested without a database)."""
    lines = [f"  {d.number}  ({d.mailbox})  "
             + (f"fällig seit {d.due_on:%d.%m.%Y}" if d.due_on < day else "heute fällig")
             for d in due]
    lines_en = [f"  {d.number}  ({d.mailbox})  "
                + (f"due since {d.due_on:%Y-%m-%d}" if d.due_on < day else "due today")
                for d in due]
    de = (f"Guten Morgen {username},\n\nheute ({day:%d.%m.%Y}) liegen Ihnen {len(due)} "
          "Wiedervorlage(n) vor:\n\n" + "\n".join(lines)
          + "\n\nDie Vorgänge finden Sie in xgate unter \"Wiedervorlagen\".")
    en = (f"Good morning {username},\n\ntoday ({day:%Y-%m-%d}) {len(due)} follow-up(s) "
          "are due for you:\n\n" + "\n".join(lines_en)
          + "\n\nYou find them in xgate under \"Follow-ups\".")
    return Notice(f"Wiedervorlagen / follow-ups {day:%d.%m.%Y}: {len(due)}",
                  Bilingual(de, en).render())


def own_address(session: Session, user_id: int) -> str | None:
    """The user's own address: one no other user shares (a team's function address would
    tell the whole team whose follow-ups are due)."""
    shared = (select(StaffAddress.address).group_by(StaffAddress.address)
              .having(func.count(StaffAddress.user_id) > 1))
    return session.scalar(select(StaffAddress.address).where(
        StaffAddress.user_id == user_id, StaffAddress.address.not_in(shared))
        .order_by(StaffAddress.id).limit(1))


def send_digests(session: Session, master: MasterKey, settings: Settings, *, now: datetime,
                 actor: str) -> list[str]:
    """Queue today's digest to every holder of due follow-ups who has not had it; the
    usernames told. A ``follow_up_digests`` row per user and day is written first, so a
    second run (another worker, a retry) sends nothing twice."""
    day = office_day(now)
    already = select(DigestSent.user_id).where(DigestSent.day == day)
    holder = holder_column()
    holders = list(session.scalars(
        select(holder).select_from(FollowUp).join(Ticket, Ticket.id == FollowUp.ticket_id)
        .where(FollowUp.due_on <= day, holder.is_not(None), holder.not_in(already))
        .distinct()))
    told: list[str] = []
    for holder_id in holders:
        user = None if holder_id is None else session.get(StaffUser, holder_id)
        if holder_id is None or user is None or user.disabled:
            continue
        due = due_follow_ups(session, None, today=day, holder_id=holder_id)
        to = own_address(session, holder_id)
        if not due or to is None:
            continue
        try:
            with session.begin_nested():
                session.execute(_INSERT_SENT, {"user_id": holder_id, "day": day,
                                               "sent_at": now})
        except IntegrityError:
            continue  # another worker sent it
        notice = digest_notice(user.username, day, due)
        data = build_notice(reporting_mta=settings.smtp.hostname,
                            postmaster=settings.delivery.postmaster, to=to,
                            subject=notice.subject, text=notice.text, now=now)
        stored = store_received(session, master, Envelope(
            direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[to], data=data),
            actor=actor, now=now)
        audit.record(session, actor=actor, action=AuditAction.FOLLOW_UP_DIGEST_SENT,
                     queue_id=stored.queue_id, detail={
                         "user": user.username, "tickets": [d.number for d in due]})
        told.append(user.username)
    return told


