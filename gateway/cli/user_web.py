"""``xgate user role|token|second-factor``: what a staff user may do in the web app and the
JSON API: global roles (admin, auditor, dpo), API tokens (shown once, stored hashed), and
resetting a lost second factor (which ends the user's web sessions). Every change is recorded
in the audit trail."""

from __future__ import annotations

import argparse
import json

from gateway.cli.common import command_session, operator_actor, settings_from_args
from gateway.clock import system_clock
from gateway.staff import actions as staff_actions
from gateway.staff import roles, tokens
from gateway.staff import users as staff


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    role = sub.add_parser("role", help="grant or revoke a global role",
                          description="Grant a staff user a global role: admin (keys, "
                                      "partners, quarantine approvals), auditor, or dpo "
                                      "(data-protection officer); --revoke takes it away "
                                      "(not the last active admin's admin role). "
                                      "Mailbox roles are granted with 'xgate mailbox member'.")
    role.add_argument("username", metavar="USERNAME")
    role.add_argument("role", metavar="ROLE", help="admin, auditor or dpo")
    role.add_argument("--revoke", action="store_true", help="take the role away")
    role.set_defaults(handler=cmd_role)

    token = sub.add_parser("token", help="API tokens of a staff user",
                           description="Tokens for the JSON API (Authorization: Bearer). "
                                       "A new token is printed once and stored only as a "
                                       "hash.")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token and print it once")
    create.add_argument("username", metavar="USERNAME")
    create.add_argument("--name", default="api", help="what the token is for (default: api)")
    create.set_defaults(handler=cmd_token_create)
    ls = actions.add_parser("list", help="list a user's tokens (never the tokens themselves)")
    ls.add_argument("username", metavar="USERNAME")
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    ls.set_defaults(handler=cmd_token_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("username", metavar="USERNAME")
    revoke.add_argument("token_id", metavar="ID", type=int)
    revoke.set_defaults(handler=cmd_token_revoke)

    reset = sub.add_parser("second-factor-reset",
                           help="remove a user's second factor (a lost phone)",
                           description="Remove a staff user's TOTP second factor and recovery "
                                       "codes; their web sessions end, and they set up a "
                                       "new one at their next login.")
    reset.add_argument("username", metavar="USERNAME")
    reset.set_defaults(handler=cmd_second_factor_reset)


def cmd_role(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    role = roles.parse_role(args.role)
    with command_session(settings) as session:
        if args.revoke:
            changed = roles.revoke(session, args.username, role, actor=operator_actor())
        else:
            changed = roles.grant(session, args.username, role, actor=operator_actor())
    state = "no longer has" if args.revoke else "has"
    print(f"staff user {args.username} {state} the role {role.value}"
          f"{'' if changed else ' (unchanged)'}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        row, token = tokens.create(session, args.username, args.name, actor=operator_actor(),
                                   now=system_clock())
        token_id = row.id
    print(f"API token {token_id} for {args.username} (shown only now):")
    print(token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        if staff.find_user(session, args.username) is None:
            raise staff.StaffError(f"no staff user {args.username}")
        found = [{"id": t.id, "name": t.name, "created_at": t.created_at.isoformat(),
                  "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                  "revoked": t.revoked_at is not None}
                 for t in tokens.list_tokens(session, args.username)]
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for t in found:
        state = "revoked" if t["revoked"] else f"last used {t['last_used_at'] or 'never'}"
        print(f"{t['id']}\t{t['name']}\tcreated {t['created_at']}\t{state}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        changed = tokens.revoke(session, args.username, args.token_id, actor=operator_actor(),
                                now=system_clock())
    print(f"API token {args.token_id} of {args.username} "
          f"{'revoked' if changed else 'was revoked already'}")
    return 0


def cmd_second_factor_reset(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        had = staff_actions.reset_second_factor(session, args.username,
                                                actor=operator_actor())
    print(f"staff user {args.username} " + ("must set up a new second factor at the next login"
                                            if had else "had no second factor"))
    return 0
