"""``xgate ticket``: the tickets of a shared mailbox, for admins at the console.

Metadata (number, state, who holds it, who wrote, dates, history, outcomes) is shown freely;
content (subjects, messages, notes) only with ``--content``, and each such read is recorded
in the audit trail under ``operator:NAME``, as the web app records a caseworker's.
"""

from __future__ import annotations

import argparse
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from sqlalchemy import select

from gateway import audit
from gateway.audit import AuditAction
from gateway.cli.common import (
    CliError,
    command_session,
    master_key,
    operator_actor,
    positive_int,
    settings_from_args,
)
from gateway.models import StaffUser
from mailboxes.directory import find_mailbox, normalise_address
from mailboxes.tickets.queries import TicketFilter, TicketRow, list_tickets, ticket_view
from mailboxes.tickets.reads import attachments_of, open_article
from mailboxes.tickets.records import find_ticket
from mailboxes.tickets.states import parse_state


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ticket = commands.add_parser("ticket", help="tickets of shared mailboxes",
                                 description="List and show the tickets of a shared mailbox. "
                                             "Content only with --content, audited.")
    sub = ticket.add_subparsers(dest="ticket_command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", help="list a mailbox's tickets, newest first")
    ls.add_argument("mailbox", metavar="MAILBOX", help="the mailbox's address")
    ls.add_argument("--state", help="new, open, waiting or closed")
    who = ls.add_mutually_exclusive_group()
    who.add_argument("--assignee", metavar="USER", help="only tickets this user holds")
    who.add_argument("--unassigned", action="store_true", help="only tickets nobody holds")
    ls.add_argument("--search", metavar="TEXT",
                    help="whole words of the subject, or part of the sender's address")
    ls.add_argument("--before", type=positive_int, metavar="ID",
                    help="the page after this ticket id (printed at the end of a page)")
    ls.add_argument("--limit", type=positive_int, default=50, help="tickets per page")
    ls.add_argument("--content", action="store_true",
                    help="also print the subjects (content; recorded in the audit trail)")
    ls.set_defaults(handler=cmd_ticket_list)
    show = sub.add_parser("show", help="a ticket, its history and its articles")
    show.add_argument("number", metavar="NUMBER", help="e.g. XG-2026-000123")
    show.add_argument("--content", action="store_true",
                      help="also print the subject, the messages' text and the notes "
                           "(recorded in the audit trail)")
    show.set_defaults(handler=cmd_ticket_show)
    from gateway.cli import ticket_relations  # it imports this module's helpers

    ticket_relations.register(sub)


def cmd_ticket_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    state = parse_state(args.state) if args.state else None
    master = master_key(settings)
    with command_session(settings) as session:
        mailbox = find_mailbox(session, args.mailbox)
        if mailbox is None:
            raise CliError(f"no mailbox {normalise_address(args.mailbox)}")
        assignee_id = None
        if args.assignee:
            assignee_id = session.scalar(select(StaffUser.id).where(
                StaffUser.username == args.assignee))
            if assignee_id is None:
                raise CliError(f"no staff user {args.assignee!r}")
        page = list_tickets(session, master, mailbox.id, TicketFilter(
            state=state, assignee_id=assignee_id, unassigned=args.unassigned,
            search=args.search), before=args.before, limit=args.limit)
        if args.content and page.rows:
            audit.record(session, actor=operator_actor(), action=AuditAction.TICKET_CONTENT_READ,
                         detail={"mailbox": mailbox.address, "part": "subjects",
                                 "tickets": [r.number for r in page.rows]})
    if not page.rows:
        print("no tickets")
        return 0
    for row in page.rows:
        print(_line(row, content=args.content))
    if page.next_before is not None:
        print(f"more: --before {page.next_before}")
    return 0


def _line(row: TicketRow, *, content: bool) -> str:
    line = (f"{row.number}  {row.state.value:<7}  {row.assignee or '-':<12}  "
            f"{row.updated_at:%Y-%m-%d %H:%M}  {row.requester}")
    if row.linked_to:
        line += f"  (links to {row.linked_to})"
    return f"{line}  {row.subject}" if content else line


def cmd_ticket_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    master = master_key(settings)
    actor = operator_actor()
    lines: list[str] = []
    with command_session(settings) as session:
        ticket = find_ticket(session, args.number)
        view = ticket_view(session, master, ticket.id)
        t = view.ticket
        lines += [f"ticket   {t.number}", f"state    {t.state.value}",
                  f"assignee {t.assignee or '-'}", f"from     {t.requester}",
                  f"created  {t.created_at:%Y-%m-%d %H:%M}",
                  f"updated  {t.updated_at:%Y-%m-%d %H:%M}"]
        if t.linked_to:
            lines.append(f"links to {t.linked_to} (quoted its number from another address)")
        if args.content:
            lines.append(f"subject  {t.subject}")
        lines += ["", "history:"]
        for h in view.history:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(h.detail.items()))
            lines.append(f"  {h.at:%Y-%m-%d %H:%M}  {h.actor}  {h.action}  {detail}".rstrip())
        lines += ["", "articles:"]
        for a in view.articles:
            outcome = f"  {a.outcome}" if a.outcome else ""
            reason = f" ({a.reason})" if a.outcome and a.reason else ""
            queue = f"  queue {a.queue_id}" if a.queue_id else ""
            lines.append(f"  #{a.id}  {a.created_at:%Y-%m-%d %H:%M}  {a.kind:<7}  "
                         f"{a.author}{queue}{outcome}{reason}")
            if args.content:
                opened = open_article(session, master, ticket_id=ticket.id,
                                      article_id=a.id, actor=actor)
                lines += ["    " + x for x in _readable(opened.kind.value, opened.data)]
    print("\n".join(lines))
    return 0


def _readable(kind: str, data: bytes) -> list[str]:
    """A note's text, or a message's first text part and its attachments' names."""
    if kind == "note":
        return data.decode("utf-8", "replace").splitlines()
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else "(no plain text part)"
    names = [p.get_filename() or "(unnamed)" for p in attachments_of(data)]
    return [*str(text).splitlines(), *(f"[attachment {i}: {n}]" for i, n in enumerate(names))]
