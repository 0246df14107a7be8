"""``xgate call``: the hotline at the console: log a call, list the callbacks due, log a
callback attempt. Recorded in the audit trail under ``operator:NAME``; the callers' names
and numbers are content and are printed only by ``callbacks`` (the list people work from).
"""

from __future__ import annotations

import argparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cli.common import (
    CliError,
    command_session,
    master_key,
    operator_actor,
    positive_int,
    settings_from_args,
)
from gateway.clock import system_clock
from gateway.staff.users import find_user
from mailboxes.directory import find_mailbox, normalise_address
from mailboxes.hotline.callbacks import callbacks_due, get_call, record_attempt
from mailboxes.hotline.calls import CallForm, log_call, record_reads
from mailboxes.hotline.days import OFFICE_ZONE, parse_office_time
from mailboxes.hotline.models import Call, CallerRole
from mailboxes.models import Mailbox
from mailboxes.tickets.models import Ticket
from mailboxes.tickets.records import find_ticket


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = commands.add_parser("call", help="hotline calls and callbacks",
                               description="Log hotline calls as tickets and work through "
                                           "the callbacks due. Every step is audited.")
    sub = call.add_subparsers(dest="call_command", required=True, metavar="COMMAND")
    log = sub.add_parser("log", help="log a call (a new phone ticket, or on --ticket)")
    log.add_argument("mailbox", metavar="MAILBOX", help="the mailbox's address")
    log.add_argument("--caller", required=True, help="the caller's name")
    log.add_argument("--role", required=True,
                     help=", ".join(r.value for r in CallerRole))
    log.add_argument("--number", default="",
                     help="the call-back number (leave out if the caller gives none)")
    log.add_argument("--topic", help="a topic of the mailbox's catalogue")
    log.add_argument("--notes", default="", help="what was said (sealed like a note)")
    log.add_argument("--case-ref", help="the case reference (Aktenzeichen), if any")
    log.add_argument("--callback-by", metavar="'YYYY-MM-DD HH:MM'",
                     help="a callback is needed by then (office time)")
    log.add_argument("--ticket", metavar="NUMBER",
                     help="add the call to this open ticket instead of opening one")
    log.set_defaults(handler=cmd_call_log)
    ls = sub.add_parser("list", help="the mailbox's calls, newest first (no names or numbers)")
    ls.add_argument("mailbox", metavar="MAILBOX")
    ls.add_argument("--limit", type=positive_int, default=50, help="calls to show")
    ls.set_defaults(handler=cmd_call_list)
    due = sub.add_parser("callbacks", help="the callbacks due, soonest first")
    due.add_argument("mailbox", metavar="MAILBOX")
    due.add_argument("--holder", metavar="USER", help="only the tickets this user holds")
    due.set_defaults(handler=cmd_call_callbacks)
    attempt = sub.add_parser("attempt", help="log a callback attempt")
    attempt.add_argument("call_id", type=int, metavar="CALL", help="the call's id (callbacks)")
    outcome = attempt.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--reached", action="store_true", help="reached: the callback is done")
    outcome.add_argument("--not-reached", action="store_true", help="not reached: stays due")
    attempt.add_argument("--note", default="", help="a short note (sealed)")
    attempt.add_argument("--again-by", metavar="'YYYY-MM-DD HH:MM'",
                         help="not reached: due again by then")
    attempt.set_defaults(handler=cmd_call_attempt)


def mailbox_of(session: Session, address: str) -> Mailbox:
    mailbox = find_mailbox(session, address)
    if mailbox is None:
        raise CliError(f"no mailbox {normalise_address(address)}")
    return mailbox


def cmd_call_log(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    master = master_key(settings)
    due = parse_office_time(args.callback_by) if args.callback_by else None
    with command_session(settings) as session:
        mailbox = mailbox_of(session, args.mailbox)
        attach = None
        if args.ticket:
            attach = find_ticket(session, args.ticket)
            if attach.mailbox_id != mailbox.id:
                raise CliError(f"no ticket {attach.number} in {mailbox.address}")
        logged = log_call(session, master, mailbox, CallForm(
            caller=args.caller, role=args.role, number=args.number, topic=args.topic,
            notes=args.notes, case_ref=args.case_ref, callback_due=due),
            actor=operator_actor(), now=system_clock(),
            attach_to=None if attach is None else attach.id)
    print(f"{'logged as' if logged.new_ticket else 'added to'} {logged.number} "
          f"(call {logged.call_id})")
    return 0


def cmd_call_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        mailbox = mailbox_of(session, args.mailbox)
        rows = list(session.execute(
            select(Call.id, Call.taken_at, Ticket.number, Call.taken_by, Call.caller_role,
                   Call.topic, Call.callback_due_at, Call.callback_done_at)
            .join(Ticket, Ticket.id == Call.ticket_id).where(Ticket.mailbox_id == mailbox.id)
            .order_by(Call.id.desc()).limit(args.limit)))
    if not rows:
        print("no calls")
    for cid, at, number, by, role, topic, due, done in rows:
        callback = ("-" if due is None else "called back" if done is not None
                    else f"callback by {due.astimezone(OFFICE_ZONE):%Y-%m-%d %H:%M}")
        print(f"{cid:>6}  {at.astimezone(OFFICE_ZONE):%Y-%m-%d %H:%M}  {number}  {by:<12}  "
              f"{role:<11}  {topic or '-'}  {callback}")
    return 0


def cmd_call_callbacks(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    master = master_key(settings)
    with command_session(settings) as session:
        mailbox = mailbox_of(session, args.mailbox)
        holder_id = None
        if args.holder:
            user = find_user(session, args.holder)
            if user is None:
                raise CliError(f"no staff user {args.holder!r}")
            holder_id = user.id
        rows = callbacks_due(session, master, mailbox.id, holder_id=holder_id)
        record_reads(session, actor=operator_actor(),
                     shown=[(r.ticket_number, r.call_id) for r in rows])
    if not rows:
        print("no callbacks due")
    for r in rows:
        print(f"{r.call_id:>6}  {r.due_at.astimezone(OFFICE_ZONE):%Y-%m-%d %H:%M}  "
              f"{r.ticket_number}  {r.holder or '-':<12}  {r.caller}  {r.number}  "
              f"attempts {r.attempts}")
    return 0


def cmd_call_attempt(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    master = master_key(settings)
    again = parse_office_time(args.again_by) if args.again_by else None
    with command_session(settings) as session:
        call = get_call(session, args.call_id)
        record_attempt(session, master, call, reached=args.reached, note=args.note,
                       new_due=again, actor=operator_actor(), now=system_clock())
    print("callback done" if args.reached else "not reached: the callback stays due")
    return 0
