"""``xgate user``: staff accounts, for SMTP AUTH on submission, the JSON API, and ``--by`` /
``--admin`` on the command line.

Every change is recorded in the audit trail under ``operator:NAME`` (gateway.staff.actions).
``list --json`` prints an array of ``{username, admin, disabled, addresses, created_at}``
(``created_at`` ISO 8601 in UTC); never a password hash.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from gateway.cli import user_web
from gateway.cli.common import CliError, command_session, operator_actor, settings_from_args
from gateway.models import StaffUser
from gateway.staff import actions as staff_actions
from gateway.staff import users as staff


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = commands.add_parser("user", help="manage staff accounts",
                               description="Manage staff accounts (SMTP AUTH on submission, "
                                           "the JSON API, --by/--admin on the command line). "
                                           "Every change is recorded in the audit trail.")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="create a staff account",
                         description="Create a staff account. The password is read from "
                                     "standard input with --password-stdin, else prompted "
                                     "for twice on the terminal.")
    add.add_argument("username", metavar="USERNAME")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    add.add_argument("--address", action="append", default=[], metavar="ADDRESS",
                     help="an envelope sender this user may submit with (repeatable); a "
                          "user without any cannot submit mail")
    add.add_argument("--admin", action="store_true",
                     help="the user may manage the key directory through the admin API "
                          "and approve quarantine releases")
    add.set_defaults(handler=cmd_add)

    ls = sub.add_parser("list", help="list staff accounts",
                        description="List staff accounts: name, admin right, disabled or "
                                    "not, sender addresses, when created. Never passwords "
                                    "or their hashes.")
    ls.add_argument("--json", action="store_true",
                    help="print a JSON array of {username, admin, disabled, addresses, "
                         "created_at}")
    ls.set_defaults(handler=cmd_list)

    address = sub.add_parser("address", help="grant or remove a sender address of a staff user",
                             description="Add an envelope sender address a staff user may "
                                         "submit with, or take it away with --remove.")
    address.add_argument("username", metavar="USERNAME")
    address.add_argument("address", metavar="ADDRESS")
    address.add_argument("--remove", action="store_true",
                         help="the user may no longer submit with this address")
    address.set_defaults(handler=cmd_address)

    admin = sub.add_parser("admin", help="grant or revoke a staff user's admin right",
                           description="Grant a staff user the admin right (managing the key "
                                       "directory through the admin API, approving "
                                       "quarantine releases), or revoke it with --revoke. "
                                       "The last active admin keeps it.")
    admin.add_argument("username", metavar="USERNAME")
    admin.add_argument("--revoke", action="store_true", help="take the right away")
    admin.set_defaults(handler=cmd_admin)

    disable = sub.add_parser("disable", help="stop a staff user from logging in anywhere",
                             description="Disable a staff account: its password no longer "
                                         "works for SMTP AUTH, the JSON API or --by/--admin "
                                         "on the command line, and its pending quarantine "
                                         "approvals stop counting; their web sessions end. "
                                         "Nothing is deleted; 'xgate user enable' undoes "
                                         "it. The last active admin cannot be disabled.")
    disable.add_argument("username", metavar="USERNAME")
    disable.set_defaults(handler=cmd_disable)

    enable = sub.add_parser("enable", help="let a disabled staff user log in again",
                            description="Enable a disabled staff account again.")
    enable.add_argument("username", metavar="USERNAME")
    enable.set_defaults(handler=cmd_enable)

    password = sub.add_parser("password", help="give a staff user a new password",
                              description="Set a new password for a staff account. It is "
                                          "read from standard input with --password-stdin, "
                                          "else prompted for twice on the terminal.")
    password.add_argument("username", metavar="USERNAME")
    password.add_argument("--password-stdin", action="store_true",
                          help="read the password from the first line of standard input")
    password.set_defaults(handler=cmd_password)

    user_web.register(sub)


def read_new_password(from_stdin: bool) -> str:
    """A new password: the first line of standard input, or typed twice on the terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        # getpass would fall back to reading the pipe without echo control, or prompt on a
        # terminal while the piped password is silently ignored.
        raise CliError("no terminal to ask for the password; pipe it with --password-stdin")
    else:
        try:
            password = getpass.getpass("password: ")
            again = getpass.getpass("again: ")
        except EOFError:
            raise CliError("no password given") from None
        if again != password:
            raise CliError("the passwords do not match")
    if not password:
        raise CliError("the password must not be empty")
    return password


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    password = read_new_password(args.password_stdin)
    with command_session(settings) as session:
        user = staff_actions.create_user(session, args.username, password,
                                         actor=operator_actor(), addresses=args.address,
                                         admin=args.admin)
        addresses = [a.address for a in user.addresses]
    senders = ", ".join(addresses) or "none yet (see 'xgate user address')"
    role = " (admin)" if args.admin else ""
    print(f"staff user {args.username} created{role}; may submit as: {senders}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        rows = [_as_json(u) for u in staff.list_users(session)]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no staff users")
        return 0
    width = max(len(r["username"]) for r in rows)
    for row in rows:
        role = "admin" if row["admin"] else "staff"
        state = "DISABLED" if row["disabled"] else "active"
        senders = ", ".join(row["addresses"]) or "-"
        print(f"{row['username']:<{width}}  {role:<5}  {state:<8}  "
              f"created {row['created_at'][:10]}  {senders}")
    return 0


def _as_json(user: StaffUser) -> dict[str, Any]:
    # Named fields only, so a new column (a hash, a second factor) never slips out.
    return {"username": user.username, "admin": user.admin, "disabled": user.disabled,
            "addresses": [a.address for a in user.addresses],
            "created_at": user.created_at.isoformat()}


def cmd_address(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    address = staff.normalise_address(args.address)
    with command_session(settings) as session:
        if args.remove:
            changed = staff_actions.remove_address(session, args.username, args.address,
                                                   actor=operator_actor())
        else:
            changed = staff_actions.grant_address(session, args.username, args.address,
                                                  actor=operator_actor())
    if args.remove:
        outcome = "may no longer submit as {}" if changed else "could not submit as {} anyway"
    else:
        outcome = "may now submit as {}" if changed else "may submit as {} already"
    print(f"staff user {args.username} " + outcome.format(address))
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    admin = not args.revoke
    with command_session(settings) as session:
        changed = staff_actions.set_admin(session, args.username, admin, actor=operator_actor())
    state = "is an admin" if admin else "is no admin"
    print(f"staff user {args.username} {state}{' now' if changed else ' already'}")
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, disabled=True)


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, disabled=False)


def _set_disabled(args: argparse.Namespace, *, disabled: bool) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        changed = staff_actions.set_disabled(session, args.username, disabled,
                                             actor=operator_actor())
    state = "disabled" if disabled else "enabled"
    print(f"staff user {args.username} {state}" if changed
          else f"staff user {args.username} is {state} already")
    return 0


def cmd_password(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    password = read_new_password(args.password_stdin)
    with command_session(settings) as session:
        staff_actions.change_password(session, args.username, password, actor=operator_actor())
    print(f"staff user {args.username} has a new password")
    return 0
