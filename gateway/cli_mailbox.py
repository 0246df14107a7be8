"""``xgate mailbox`` and ``xgate user``: shared mailboxes and staff accounts."""

from __future__ import annotations

import argparse
import getpass
import sys

from gateway import audit, staff
from gateway.cli_common import CliError, command_session, operator_name, settings_from_args
from mailboxes.directory import add_mailbox, count_messages, list_mailboxes


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mailbox = commands.add_parser("mailbox", help="manage shared mailboxes",
                                  description="Manage shared mailboxes (Sammelpostfächer).")
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

    user = commands.add_parser("user", help="manage staff accounts",
                               description="Manage staff accounts (SMTP AUTH on submission).")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    uadd = usub.add_parser("add", help="create a staff account",
                           description="Create a staff account. The password is read from "
                                       "standard input with --password-stdin, else prompted "
                                       "for twice.")
    uadd.add_argument("username", metavar="USERNAME")
    uadd.add_argument("--password-stdin", action="store_true",
                      help="read the password from the first line of standard input")
    uadd.add_argument("--address", action="append", default=[], metavar="ADDRESS",
                      help="an envelope sender this user may submit with (repeatable); a "
                           "user without any cannot submit mail")
    uadd.add_argument("--admin", action="store_true",
                      help="the user may manage the key directory through the admin API")
    uadd.set_defaults(handler=cmd_user_add)
    uadmin = usub.add_parser("admin", help="grant or revoke a staff user's admin right",
                             description="Grant a staff user the admin right (managing the "
                                         "key directory through the admin API), or revoke "
                                         "it with --revoke. Recorded in the audit trail.")
    uadmin.add_argument("username", metavar="USERNAME")
    uadmin.add_argument("--revoke", action="store_true", help="take the right away")
    uadmin.set_defaults(handler=cmd_user_admin)
    uaddr = usub.add_parser("address", help="let a staff user submit with another sender",
                            description="Add an envelope sender address a staff user may "
                                        "submit with.")
    uaddr.add_argument("username", metavar="USERNAME")
    uaddr.add_argument("address", metavar="ADDRESS")
    uaddr.set_defaults(handler=cmd_user_address)


def cmd_mailbox_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        mailbox = add_mailbox(session, args.address, args.name, sensitive=args.sensitive)
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


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise CliError("the passwords do not match")
    if not password:
        raise CliError("the password must not be empty")
    return password


def cmd_user_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    password = read_password(args.password_stdin)
    with command_session(settings) as session:
        staff.add_user(session, args.username, password, addresses=args.address,
                       admin=args.admin)
        if args.admin:
            audit.record(session, actor=operator_name(), action="admin-granted",
                         detail={"user": args.username})
    senders = ", ".join(a.lower() for a in args.address) or "none yet (see 'xgate user address')"
    role = " (admin)" if args.admin else ""
    print(f"staff user {args.username} created{role}; may submit as: {senders}")
    return 0


def cmd_user_admin(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    admin = not args.revoke
    with command_session(settings) as session:
        before = staff.set_admin(session, args.username, admin)
        if before != admin:
            # Who may approve keys is itself worth a record.
            audit.record(session, actor=operator_name(),
                         action="admin-granted" if admin else "admin-revoked",
                         detail={"user": args.username})
    state = "is an admin" if admin else "is no admin"
    print(f"staff user {args.username} {state}{' now' if before != admin else ' already'}")
    return 0


def cmd_user_address(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        staff.add_address(session, args.username, args.address)
    print(f"staff user {args.username} may now submit as {args.address.lower()}")
    return 0
