"""``xgate audit``: verify and read the hash-chained audit trail."""

from __future__ import annotations

import argparse
import sys

from gateway import audit
from gateway.audit.keys import valid_period
from gateway.audit.retention import forget_before
from gateway.audit.view import recent_entries
from gateway.cli.common import (
    CliError,
    command_session,
    operator_actor,
    positive_int,
    settings_from_args,
)
from gateway.clock import system_clock


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("audit", help="verify and show the audit trail",
                                 description="Verify and show the hash-chained audit trail.")
    sub = parser.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = sub.add_parser(
        "verify", help="check that no audit entry was altered, removed or reordered",
        description="Recompute the hash chain over every entry. Exit status 0 if it is "
                    "intact; 1 naming the first broken entry (its sequence number and the "
                    "problem) if any entry was altered, removed or reordered.")
    verify.set_defaults(handler=cmd_verify)
    show = sub.add_parser("show", help="show the latest audit entries",
                          description="Show the latest audit entries, oldest first.")
    show.add_argument("--queue-id", metavar="Q", help="only entries about this message")
    show.add_argument("--limit", type=positive_int, default=50, metavar="N",
                      help="show at most the last N entries (default: 50)")
    show.set_defaults(handler=cmd_show)
    forget = sub.add_parser(
        "forget", help="delete the personal data of entries before a month",
        description="Destroy the keys of every month before MONTH: the addresses, names and "
                    "other personal data of those months' entries become unreadable for good "
                    "(shown as '(deleted)'). The entries and their hash chain stay, so "
                    "'audit verify' still passes. The deletion is itself recorded.")
    forget.add_argument("--before", required=True, type=_month, metavar="YYYY-MM",
                        help="forget every month before this one (at most the current month)")
    forget.add_argument("--yes", action="store_true",
                        help="really destroy the keys (without it, nothing is changed)")
    forget.set_defaults(handler=cmd_forget)


def _month(text: str) -> str:
    try:
        return valid_period(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_verify(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        result = audit.verify(session)
    if result.ok:
        print(f"audit chain intact: {result.checked} entries")
        return 0
    print(f"audit chain BROKEN at entry {result.first_broken_seq}: {result.problem} "
          f"({result.checked} entries before it are intact)", file=sys.stderr)
    return 1


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        entries = recent_entries(session, queue_id=args.queue_id, limit=args.limit)
        lines = [f"#{e.seq:<6} {e.at:%Y-%m-%d %H:%M:%S}  {e.action:<14} {e.queue_id or '-':<16}"
                 f"  {e.actor}  {e.detail}" for e in entries]
    print("\n".join(lines) if lines else "no audit entries")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"this destroys the personal data of every audit entry before {args.before} "
              "for good; run again with --yes to do it", file=sys.stderr)
        return 1
    settings = settings_from_args(args)
    with command_session(settings) as session:
        try:
            periods = forget_before(session, args.before, actor=operator_actor(),
                                    now=system_clock())
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if periods:
        print(f"personal data deleted for {', '.join(periods)}")
    else:
        print(f"no audit keys before {args.before} left to destroy")
    return 0
