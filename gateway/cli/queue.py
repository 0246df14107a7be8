"""``xgate queue``: look at queued messages and send them back to the workers.

Output shows envelopes, states and reasons, never message content.

``list --json`` and ``show --json`` are for scripts, so they need not read the database.
The shape is stable (fields are added, never renamed or removed); times are ISO 8601 in UTC,
absent values null. ``list --json`` prints an array of message objects:

    queue_id, state, reason (why it is in its state: the last error of a deferred message),
    direction, sender ("" for the null sender), recipients (array of {address, state,
    response, delivered_at}), size (bytes as received), received_at, updated_at,
    next_attempt_at, attempts

``show --json`` prints one such object with these fields added:

    peer, helo, auth_user, claimed_by ({worker, until} or null), facts (object of what the
    stages established), audit (array of {seq, at, actor, action, detail}; detail is the
    audit entry's facts as an object)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.audit.view import ReadableEntry, entries_for_message
from gateway.cli.common import command_session, operator_name, positive_int, settings_from_args
from gateway.clock import system_clock
from gateway.models import Message, MessageState
from gateway.queue.admin import RETRYABLE_STATES, get_message, list_messages, retry


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    queue = commands.add_parser("queue", help="inspect and retry queued messages",
                                description="Inspect queued messages and retry them. Shows "
                                            "envelopes and states, never message content.")
    sub = queue.add_subparsers(dest="queue_command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", help="list messages, oldest first",
                        description="List queued messages, oldest first.")
    ls.add_argument("--state", choices=[s.value for s in MessageState],
                    help="only messages in this state")
    ls.add_argument("--limit", type=positive_int, default=100, metavar="N",
                    help="show at most N messages (default: 100)")
    ls.add_argument("--json", action="store_true",
                    help="print a JSON array instead of a table (see the README for its shape)")
    ls.set_defaults(handler=cmd_list)
    show = sub.add_parser("show", help="show one message's envelope, recipients and audit trail",
                          description="Show a message's envelope, state and reason, its "
                                      "recipients with their states and last responses, and "
                                      "its audit entries.")
    show.add_argument("queue_id", metavar="QUEUEID", help="the message's queue id")
    show.add_argument("--json", action="store_true",
                      help="print a JSON object instead of text (see the README for its shape)")
    show.set_defaults(handler=cmd_show)
    states = ", ".join(s.value for s in RETRYABLE_STATES)
    again = sub.add_parser("retry", help="process a message again now",
                           description=f"Send a message that is {states} back to the workers "
                                       "at once. Recorded in the audit trail with your user "
                                       "name ($SUDO_USER or $USER). Delivered and rejected "
                                       "messages cannot be retried.")
    again.add_argument("queue_id", metavar="QUEUEID", help="the message's queue id")
    again.set_defaults(handler=cmd_retry)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    state = MessageState(args.state) if args.state else None
    with command_session(settings, read_only=True) as session:
        messages = list_messages(session, state, limit=args.limit)
        if args.json:
            _print_json([_as_json(m) for m in messages])
            return 0
        rows = [_list_row(m) for m in messages]
    if not rows:
        print("no messages" + (f" in state {state.value}" if state else ""))
        return 0
    print(f"{'QUEUE ID':<16}  {'STATE':<11}  {'DIR':<8}  {'RECEIVED (UTC)':<19}  "
          f"{'SIZE':>8}  FROM -> TO")
    for row in rows:
        print(row)
    return 0


def _list_row(m: Message) -> str:
    rcpts = ", ".join(r.address for r in m.recipients)
    sender = m.mail_from or "<>"
    line = (f"{m.queue_id:<16}  {m.state.value:<11}  {m.direction.value:<8}  "
            f"{_when(m.received_at):<19}  {m.size:>8}  {sender} -> {rcpts}")
    return line + (f"\n{'':<18}reason: {m.reason}" if m.reason else "")


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        message = get_message(session, args.queue_id)
        entries = entries_for_message(session, message.queue_id)
        if args.json:
            _print_json(_as_json_in_full(message, entries))
            return 0
        lines = _describe(message)
        lines.append("audit trail:")
        for entry in entries:
            lines.append(f"  #{entry.seq:<6} {_when(entry.at)}  {entry.action:<12} "
                         f"{entry.actor}  {entry.detail}")
    print("\n".join(lines))
    return 0


def _describe(m: Message) -> list[str]:
    lines = [
        f"queue id:      {m.queue_id}",
        f"state:         {m.state.value}",
        f"reason:        {m.reason or '-'}",
        f"direction:     {m.direction.value}",
        f"from:          {m.mail_from or '<>'}",
        f"peer:          {m.peer or '-'} (helo {m.helo or '-'})",
        f"auth user:     {m.auth_user or '-'}",
        f"size:          {m.size} bytes",
        f"received:      {_when(m.received_at)} UTC",
        f"updated:       {_when(m.updated_at)} UTC",
        f"next attempt:  {_when(m.next_attempt_at)} UTC",
        f"attempts:      {m.attempts}",
    ]
    if m.lease_owner:
        lines.append(f"claimed by:    {m.lease_owner} until {_when(m.lease_until)} UTC")
    if m.facts:
        lines.append("facts:")
        lines.extend(f"  {name}: {value}" for name, value in sorted(json.loads(m.facts).items()))
    lines.append("recipients:")
    for r in m.recipients:
        done = f" at {_when(r.delivered_at)} UTC" if r.delivered_at else ""
        lines.append(f"  {r.address}: {r.state.value}{done}; {r.response or 'no response yet'}")
    return lines


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _as_json(m: Message) -> dict[str, Any]:
    """One message for ``list --json``; the module docstring documents the shape."""
    return {
        "queue_id": m.queue_id,
        "state": m.state.value,
        "reason": m.reason,
        "direction": m.direction.value,
        "sender": m.mail_from,
        "recipients": [{"address": r.address, "state": r.state.value,
                        "response": r.response, "delivered_at": _iso(r.delivered_at)}
                       for r in m.recipients],
        "size": m.size,
        "received_at": _iso(m.received_at),
        "updated_at": _iso(m.updated_at),
        "next_attempt_at": _iso(m.next_attempt_at),
        "attempts": m.attempts,
    }


def _as_json_in_full(m: Message, entries: Sequence[ReadableEntry]) -> dict[str, Any]:
    """One message for ``show --json``: the list fields, the rest of the envelope, the
    facts and the audit trail, as ``show`` prints them."""
    return {
        **_as_json(m),
        "peer": m.peer or None,
        "helo": m.helo or None,
        "auth_user": m.auth_user,
        "claimed_by": ({"worker": m.lease_owner, "until": _iso(m.lease_until)}
                       if m.lease_owner else None),
        "facts": json.loads(m.facts) if m.facts else {},
        "audit": [{"seq": e.seq, "at": _iso(e.at), "actor": e.actor, "action": e.action,
                   "detail": _detail(e.detail)} for e in entries],
    }


def _detail(detail: str) -> object:
    # Canonical JSON by construction (gateway.audit); kept as text if it ever is not.
    try:
        return json.loads(detail)
    except ValueError:
        return detail


def cmd_retry(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    operator = operator_name()
    with command_session(settings) as session:
        message = retry(session, args.queue_id, operator=f"operator:{operator}",
                        now=system_clock())
        queue_id = message.queue_id
    print(f"message {queue_id} will be processed again now (retry by {operator})")
    return 0
