"""``xgate quarantine``: look at quarantined messages, release (four eyes), delete, re-scan.

Output shows envelopes, states, reasons and verdicts, never message content. Releasing and
deleting name the acting admin with --admin and prove it with that admin's password, so one
person at the console cannot be both pairs of eyes by typing two names; the OS user running
the command is recorded in the audit trail as well.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import datetime
from typing import Any, TextIO

from crypto.at_rest import MasterKey
from gateway.cli.common import (
    CliError,
    authenticate,
    command_session,
    open_database,
    operator_name,
    settings_from_args,
)
from gateway.clock import system_clock
from gateway.db import make_session_factory
from gateway.models import Direction, MessageState
from gateway.quarantine.records import (
    REQUIRED_APPROVALS,
    QuarantineView,
    ReleaseOutcome,
    Rescanner,
    ScanOutcome,
    approve_release,
    delete,
    list_quarantined,
    rescan_all,
    show,
)
from gateway.settings import Settings

SCANNER_MODULE = "scanning.scanner"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    quarantine = commands.add_parser(
        "quarantine", help="look at, release, delete and re-scan quarantined messages",
        description="Quarantined messages stay sealed in the queue. Releasing one needs two "
                    "different admins, each with a reason, and a clean re-scan; deleting "
                    "one needs one admin and a reason. Never shows message content.")
    sub = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="list quarantined messages, oldest first",
                        description="List quarantined messages with pending approvals and "
                                    "the latest re-scan verdict.")
    ls.add_argument("--held", action="store_true", help="list held messages too")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=cmd_list)

    one = sub.add_parser("show", help="show a message's quarantine history",
                         description="Show a message's envelope, state, approvals, decisions "
                                     "and re-scans.")
    one.add_argument("queue_id", metavar="QUEUEID", help="the message's queue id")
    one.set_defaults(handler=cmd_show)

    release = sub.add_parser(
        "release", help="approve releasing a message (two different admins release it)",
        description="Record an admin's approval to release a quarantined message. The "
                    "second approval, by a different admin, re-scans the "
                    "stored content and, if it is clean, sends the message back to the "
                    "workers; if not, the release is refused and the approvals are void.")
    _admin_arguments(release)
    release.set_defaults(handler=cmd_release)

    remove = sub.add_parser(
        "delete", help="delete a quarantined message's content for good",
        description="Delete a quarantined message's content. The message ends rejected, its "
                    "pending recipients failed (no bounce is sent: the sender was told when "
                    "it was quarantined); the record stays for the audit trail.")
    _admin_arguments(remove)
    remove.set_defaults(handler=cmd_delete)

    rescan = sub.add_parser(
        "rescan", help="re-scan all quarantined and held messages (after a signature update)",
        description="Scan every quarantined and held message again, showing progress on "
                    "standard error. Nothing is released: messages that now scan clean are "
                    "marked for an admin.")
    rescan.set_defaults(handler=cmd_rescan)


def _admin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue_id", metavar="QUEUEID", help="the message's queue id")
    parser.add_argument("--admin", required=True, metavar="NAME",
                        help="the acting admin's staff user name")
    parser.add_argument("--reason", required=True, metavar="TEXT",
                        help="why (recorded in the audit trail)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the admin's password from the first line of standard "
                             "input instead of prompting for it")


# -- the commands ------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        views = list_quarantined(session, include_held=args.held)
    if args.json:
        print(json.dumps([_as_json(v) for v in views], indent=2, ensure_ascii=False))
        return 0
    if not views:
        print("no quarantined" + (" or held" if args.held else "") + " messages")
        return 0
    print(f"{'QUEUE ID':<16}  {'STATE':<11}  {'RECEIVED (UTC)':<19}  {'APPROVALS':<9}  "
          f"{'RE-SCAN':<10}  FROM -> TO")
    for view in views:
        print(_list_row(view))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        view = show(session, args.queue_id)
    print("\n".join(_describe(view)))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    authenticate(settings, args.admin, args.password_stdin, admin_only=True)
    with command_session(settings) as session:
        result = approve_release(session, args.queue_id, admin=args.admin, reason=args.reason,
                                 now=system_clock(), master_key=_master_key(settings),
                                 rescan=_CliRescanner(settings), operator=operator_name())
    qid = result.queue_id
    if result.outcome == ReleaseOutcome.APPROVAL_RECORDED:
        print(f"approval 1 of {REQUIRED_APPROVALS} recorded for {qid} by {args.admin}; "
              "a second, different admin must approve")
        return 0
    if result.outcome == ReleaseOutcome.RELEASED:
        print(f"{qid} released after a clean re-scan (approved by "
              f"{' and '.join(result.approvals)}); it will be processed again now")
        return 0
    # Refused, but committed: the failed re-scan and the voided approvals are on record.
    print(f"xgate: error: release of {qid} refused: the re-scan is not clean "
          f"({result.detail}); the message stays quarantined and the approvals are void",
          file=sys.stderr)
    return 1


def cmd_delete(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    authenticate(settings, args.admin, args.password_stdin, admin_only=True)
    with command_session(settings) as session:
        message = delete(session, args.queue_id, admin=args.admin, reason=args.reason,
                         now=system_clock(), operator=operator_name())
        qid = message.queue_id
    print(f"{qid} deleted from quarantine by {args.admin}; its content is gone")
    return 0


def cmd_rescan(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # Made first: without a scanner there is no point opening anything.
    rescanner = _CliRescanner(settings).ready()
    master = _master_key(settings)
    engine = open_database(settings)
    bar = ProgressBar(sys.stderr)
    try:
        summary = rescan_all(make_session_factory(engine), master, rescanner, progress=bar,
                             actor=f"operator:{operator_name()}")
    finally:
        # An error message must not be glued to the end of a half-drawn bar.
        bar.end_line()
        engine.dispose()
    print(f"re-scanned {summary.total - summary.skipped} of {summary.total} messages: "
          f"{summary.clean} clean, {summary.not_clean} not clean, "
          f"{summary.unreadable} unreadable, {summary.skipped} skipped")
    if summary.now_clean:
        print("now clean, waiting for two admins to release: " + ", ".join(summary.now_clean))
    return 0


# -- the scanner, the admin, the master key ----------------------------------------------------


def rescanner_for(settings: Settings) -> Rescanner:
    """The real re-scanner: the pipeline's opening stages, then the scanner."""
    from gateway.quarantine.rescan import make_rescanner

    return make_rescanner(settings)


def _scanning_errors() -> tuple[type[Exception], ...]:
    """The scanning package's error base, if the package has one (imported lazily, too)."""
    try:
        module = importlib.import_module("scanning.errors")
    except ModuleNotFoundError:
        return ()
    base = getattr(module, "ScanningError", None)
    return (base,) if isinstance(base, type) and issubclass(base, Exception) else ()


class _CliRescanner:
    """The scanner as the CLI uses it: built on first use, its errors one line.

    Built lazily because a first release approval needs no scan, so it works (and is
    recorded) while the scanner is down; the second one then says why it cannot release,
    and its transaction, approval included, is rolled back.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._scanner: Rescanner | None = None

    def ready(self) -> _CliRescanner:
        if self._scanner is None:
            self._scanner = rescanner_for(self._settings)
        return self

    def __call__(self, content: bytes, direction: Direction, recipients: list[str], /
                 ) -> ScanOutcome:
        try:
            scanner = self.ready()._scanner
            assert scanner is not None
            return scanner(content, direction, recipients)
        except _scanning_errors() as exc:
            raise CliError(f"virus scanner unavailable: {exc}") from None


def _master_key(settings: Settings) -> MasterKey:
    return MasterKey.load(settings.resolve(settings.storage.master_key_file))


# -- output ------------------------------------------------------------------------------------


class ProgressBar:
    """A text progress bar. On a terminal it redraws one line; elsewhere (a log file, cron)
    it writes a line per tenth done, so the log shows progress without thousands of lines."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self._tty = stream.isatty()
        self._last_tenth = -1
        self._mid_line = False

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        tenth = done * 10 // total
        if not self._tty and tenth == self._last_tenth and done != total:
            return
        self._last_tenth = tenth
        filled = done * self.width // total
        bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        if self._tty:
            self._mid_line = done != total
            self.stream.write(f"\rre-scanning {bar}" + ("" if self._mid_line else "\n"))
        else:
            self.stream.write(f"re-scanning {bar}\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self._mid_line:
            self.stream.write("\n")
            self.stream.flush()
            self._mid_line = False


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _rescan_label(view: QuarantineView) -> str:
    return view.latest_rescan.verdict.value if view.latest_rescan else "-"


def _list_row(v: QuarantineView) -> str:
    # Held messages are released by their own rules (consent, key), not by this quarantine.
    approvals = (f"{len(v.pending_approvals)}/{REQUIRED_APPROVALS}"
                 if v.state == MessageState.QUARANTINED else "-")
    line = (f"{v.queue_id:<16}  {v.state.value:<11}  {_when(v.received_at):<19}  "
            f"{approvals:<9}  {_rescan_label(v):<10}  {v.sender or '<>'} -> "
            f"{', '.join(v.recipients)}")
    if v.reason:
        line += f"\n{'':<18}reason: {v.reason}"
    if v.needs_admin:
        line += f"\n{'':<18}now clean — needs an admin"
    return line


def _describe(v: QuarantineView) -> list[str]:
    lines = [
        f"queue id:      {v.queue_id}",
        f"state:         {v.state.value}",
        f"reason:        {v.reason or '-'}",
        f"from:          {v.sender or '<>'}",
        f"to:            {', '.join(v.recipients)}",
        f"received:      {_when(v.received_at)} UTC",
    ]
    if v.state == MessageState.QUARANTINED:
        lines.append(f"approvals:     {len(v.pending_approvals)} of {REQUIRED_APPROVALS}"
                     + (f" ({', '.join(v.pending_approvals)})" if v.pending_approvals else ""))
    if v.needs_admin:
        lines.append("note:          now clean — needs an admin")
    lines.append("decisions:" + ("" if v.decisions else " none"))
    lines.extend(f"  {_when(d.at)}  {d.action.value:<16} {d.admin}: {d.reason}"
                 for d in v.decisions)
    lines.append("re-scans:" + ("" if v.rescans else " none"))
    lines.extend(f"  {_when(r.at)}  {r.verdict.value:<10} {r.detail}" for r in v.rescans)
    return lines


def _as_json(v: QuarantineView) -> dict[str, Any]:
    latest = v.latest_rescan
    return {
        "queue_id": v.queue_id,
        "state": v.state.value,
        "reason": v.reason,
        "sender": v.sender,
        "recipients": list(v.recipients),
        "received_at": v.received_at.isoformat(),
        "pending_approvals": list(v.pending_approvals),
        "latest_rescan": None if latest is None else {
            "verdict": latest.verdict.value, "detail": latest.detail,
            "at": latest.at.isoformat()},
        "needs_admin": v.needs_admin,
    }
