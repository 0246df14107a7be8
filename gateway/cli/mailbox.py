"""``xgate mailbox``: shared mailboxes. Creating one and changing it are recorded in the audit
trail under ``operator:NAME`` (mailboxes.actions)."""

from __future__ import annotations

import argparse

from gateway.cli.common import CliError, command_session, operator_actor, settings_from_args
from mailboxes.actions import create_mailbox, update_mailbox
from mailboxes.directory import count_messages, list_mailboxes, normalise_address


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mailbox = commands.add_parser("mailbox", help="manage shared mailboxes",
                                  description="Manage shared mailboxes (Sammelpostfächer). "
                                              "Every change is recorded in the audit trail.")
    sub = mailbox.add_subparsers(dest="mailbox_command", required=True, metavar="COMMAND")
    add = sub.add_parser("add", help="create a shared mailbox",
                         description="Create a shared mailbox that partners can write to.")
    add.add_argument("address", metavar="ADDRESS", help="e.g. kindertagespflege@jugendamt.de")
    add.add_argument("--name", required=True, help="the team or purpose, shown to staff")
    add.add_argument("--sensitive", action="store_true",
                     help="everything this mailbox sends out is treated as a sensitive report")
    add.set_defaults(handler=cmd_mailbox_add)
    ls = sub.add_parser("list", help="list shared mailboxes",
                        description="List shared mailboxes with their message counts.")
    ls.set_defaults(handler=cmd_mailbox_list)
    change = sub.add_parser("set", help="rename a mailbox or change its sensitive mark",
                            description="Rename a shared mailbox, or mark it sensitive "
                                        "(everything it sends outside is a report that must "
                                        "pass the consent gate) or no longer sensitive.")
    change.add_argument("address", metavar="ADDRESS")
    change.add_argument("--name", help="the team or purpose, shown to staff")
    mark = change.add_mutually_exclusive_group()
    mark.add_argument("--sensitive", dest="sensitive", action="store_const", const=True,
                      help="mark the mailbox sensitive")
    mark.add_argument("--not-sensitive", dest="sensitive", action="store_const", const=False,
                      help="remove the sensitive mark")
    change.set_defaults(handler=cmd_mailbox_set)


def cmd_mailbox_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        mailbox = create_mailbox(session, args.address, args.name, sensitive=args.sensitive,
                                 actor=operator_actor())
        address = mailbox.address
    print(f"mailbox {address} created" + (" (sensitive)" if args.sensitive else ""))
    return 0


def cmd_mailbox_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        rows = [(m.address, m.name, m.sensitive, count_messages(session, m.id))
                for m in list_mailboxes(session)]
    if not rows:
        print("no mailboxes")
        return 0
    width = max(len(r[0]) for r in rows)
    for address, name, sensitive, count in rows:
        flag = "  [sensitive]" if sensitive else ""
        print(f"{address:<{width}}  {count:>6} messages  {name}{flag}")
    return 0


def cmd_mailbox_set(args: argparse.Namespace) -> int:
    if args.name is None and args.sensitive is None:
        raise CliError("nothing to change: give --name, --sensitive or --not-sensitive")
    settings = settings_from_args(args)
    with command_session(settings) as session:
        changes = update_mailbox(session, args.address, name=args.name,
                                 sensitive=args.sensitive, actor=operator_actor())
    address = normalise_address(args.address)
    if not changes:
        print(f"mailbox {address} unchanged")
        return 0
    said = [f"{field} {before!r} -> {after!r}" for field, (before, after) in changes.items()]
    print(f"mailbox {address} changed: " + ", ".join(said))
    return 0
