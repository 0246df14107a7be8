"""``xgate mailbox``: shared mailboxes. Creating one and changing it are recorded in the audit
trail under ``operator:NAME`` (mailboxes.actions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli import mailbox_sla, mailbox_topic
from gateway.cli.common import CliError, command_session, operator_actor, settings_from_args
from gateway.clock import system_clock
from mailboxes.actions import create_mailbox, update_mailbox
from mailboxes.directory import count_messages, list_mailboxes, normalise_address
from mailboxes.members import add_member, list_members, parse_role, remove_member
from mailboxes.outreach import TICKET_PLACEHOLDER, set_outreach


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
    receipt = change.add_mutually_exclusive_group()
    receipt.add_argument("--receipt", dest="receipt", action="store_const", const=True,
                         help="send a receipt (Eingangsbestätigung) for every new ticket")
    receipt.add_argument("--no-receipt", dest="receipt", action="store_const", const=False,
                         help="send no receipts")
    text = change.add_mutually_exclusive_group()
    text.add_argument("--receipt-text", type=Path, metavar="FILE",
                      help=f"the receipt's text (UTF-8), with {TICKET_PLACEHOLDER} where the "
                           "ticket number goes")
    text.add_argument("--default-receipt-text", action="store_true",
                      help="back to the default German receipt text")
    change.add_argument("--signature", type=Path, metavar="FILE",
                        help="the signature block under replies (UTF-8; an empty file "
                             "removes it)")
    change.set_defaults(handler=cmd_mailbox_set)
    _register_members(sub)
    mailbox_topic.register(sub)
    mailbox_sla.register(sub)


def _register_members(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    member = sub.add_parser("member", help="who works in a mailbox",
                            description="Add, change or remove the members of a shared "
                                        "mailbox (lead or agent); every change is audited.")
    msub = member.add_subparsers(dest="member_command", required=True, metavar="COMMAND")
    add = msub.add_parser("add", help="make a staff user a member, or change their role")
    add.add_argument("address", metavar="ADDRESS")
    add.add_argument("username", metavar="USER")
    add.add_argument("--role", default="agent", help="lead or agent (default: agent)")
    add.set_defaults(handler=cmd_member_add)
    remove = msub.add_parser("remove", help="remove a member")
    remove.add_argument("address", metavar="ADDRESS")
    remove.add_argument("username", metavar="USER")
    remove.set_defaults(handler=cmd_member_remove)
    ls = msub.add_parser("list", help="list a mailbox's members")
    ls.add_argument("address", metavar="ADDRESS")
    ls.set_defaults(handler=cmd_member_list)


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
    outreach = (args.receipt is not None or args.receipt_text is not None
                or args.default_receipt_text or args.signature is not None)
    if args.name is None and args.sensitive is None and not outreach:
        raise CliError("nothing to change: give --name, --sensitive, --not-sensitive, "
                       "--receipt, --no-receipt, --receipt-text, --default-receipt-text "
                       "or --signature")
    template = _read_text(args.receipt_text) if args.receipt_text is not None else None
    signature = _read_text(args.signature) if args.signature is not None else None
    settings = settings_from_args(args)
    with command_session(settings) as session:
        changes = update_mailbox(session, args.address, name=args.name,
                                 sensitive=args.sensitive, actor=operator_actor())
        if outreach:
            changes.update(set_outreach(
                session, args.address, actor=operator_actor(), receipt_enabled=args.receipt,
                receipt_template=template, reset_template=args.default_receipt_text,
                signature=signature))
    address = normalise_address(args.address)
    if not changes:
        print(f"mailbox {address} unchanged")
        return 0
    said = [f"{field} {before!r} -> {after!r}" for field, (before, after) in changes.items()]
    print(f"mailbox {address} changed: " + ", ".join(said))
    return 0


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None


def cmd_member_add(args: argparse.Namespace) -> int:
    role = parse_role(args.role)
    settings = settings_from_args(args)
    with command_session(settings) as session:
        changed = add_member(session, args.address, args.username, role,
                             actor=operator_actor(), now=system_clock())
    address = normalise_address(args.address)
    print(f"{args.username} is {role.value} of {address}" + ("" if changed else " already"))
    return 0


def cmd_member_remove(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        removed = remove_member(session, args.address, args.username, actor=operator_actor())
    address = normalise_address(args.address)
    if not removed:
        raise CliError(f"{args.username} is no member of {address}")
    print(f"{args.username} removed from {address}")
    return 0


def cmd_member_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        members = list_members(session, args.address)
    if not members:
        print(f"{normalise_address(args.address)} has no members")
        return 0
    width = max(len(m.username) for m in members)
    for m in members:
        print(f"{m.username:<{width}}  {m.role.value:<5}  since {m.added_at:%Y-%m-%d}")
    return 0
