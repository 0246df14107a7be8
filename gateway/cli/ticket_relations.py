"""``xgate ticket follow-up|link|merge``: a ticket's follow-up (Wiedervorlage), and tickets
that belong together. Registered into ``xgate ticket`` (gateway.cli.ticket); each change is
in the ticket's history and the audit trail under ``operator:NAME``."""

from __future__ import annotations

import argparse

from gateway.cli.common import (
    CliError,
    command_session,
    master_key,
    operator_actor,
    settings_from_args,
)
from gateway.clock import system_clock
from gateway.staff.users import find_user
from mailboxes.hotline.follow_ups import clear_follow_up, parse_day, set_follow_up
from mailboxes.hotline.links import link, merge
from mailboxes.tickets.records import find_ticket


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    follow = sub.add_parser("follow-up", help="set or clear a ticket's follow-up date",
                            description="On the date the ticket comes back to its holder "
                                        "(the follow-ups list, the morning digest).")
    follow.add_argument("number", metavar="NUMBER")
    what = follow.add_mutually_exclusive_group(required=True)
    what.add_argument("--on", metavar="YYYY-MM-DD", help="the follow-up date")
    what.add_argument("--done", action="store_true", help="clear the follow-up")
    follow.add_argument("--note", default="", help="what to look at then (sealed)")
    follow.add_argument("--holder", metavar="USER",
                        help="whose list it comes back to on an unassigned ticket")
    follow.set_defaults(handler=cmd_ticket_follow_up)
    ln = sub.add_parser("link", help="link two tickets of one mailbox")
    ln.add_argument("number", metavar="NUMBER")
    ln.add_argument("other", metavar="OTHER")
    ln.set_defaults(handler=cmd_ticket_link)
    mg = sub.add_parser("merge", help="merge a duplicate into another ticket",
                        description="The duplicate is closed with a pointer; mail threading "
                                    "into it lands in the ticket it was merged into.")
    mg.add_argument("duplicate", metavar="DUPLICATE")
    mg.add_argument("into", metavar="INTO")
    mg.set_defaults(handler=cmd_ticket_merge)


def cmd_ticket_follow_up(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    master = master_key(settings)
    with command_session(settings) as session:
        ticket = find_ticket(session, args.number)
        if args.done:
            done = clear_follow_up(session, ticket, actor=operator_actor(), now=system_clock())
            message = "follow-up cleared" if done else f"{ticket.number} has no follow-up"
        else:
            holder_id = None
            if args.holder:
                user = find_user(session, args.holder)
                if user is None:
                    raise CliError(f"no staff user {args.holder!r}")
                holder_id = user.id
            day = parse_day(args.on)
            set_follow_up(session, master, ticket, day, args.note, actor=operator_actor(),
                          actor_id=holder_id, now=system_clock())
            message = f"{ticket.number} comes back on {day.isoformat()}"
    print(message)
    return 0


def cmd_ticket_link(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        a, b = find_ticket(session, args.number), find_ticket(session, args.other)
        done = link(session, a, b, actor=operator_actor(), now=system_clock())
    print(f"linked {a.number} and {b.number}" if done else "linked already")
    return 0


def cmd_ticket_merge(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        dup, into = find_ticket(session, args.duplicate), find_ticket(session, args.into)
        merge(session, master_key(settings), dup, into, actor=operator_actor(),
              now=system_clock())
    print(f"merged {dup.number} into {into.number}")
    return 0
