"""``xgate consent``: releases from confidentiality (Schweigepflichtentbindung) and the reports
the consent gate holds.

Recording, changing and revoking a release, reading its signed scan and approving a transfer
on a legal basis are done in a staff user's name (--by) and proved with that user's password:
the audit trail names a person, not whoever had a shell. So is every command that shows the
people a release is about (``show``, ``list --json``): it opens their sealed names, and the
reading is audited. The list as a table and the dry run show no names and need no one.
``--json`` prints the shapes of ``gateway.consent.views``, the same the admin API uses.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import re
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.cli.common import (
    CliError,
    authenticate,
    command_session,
    positive_int,
    settings_from_args,
)
from gateway.cli.keys import master_key_of, print_json, print_table
from gateway.clock import system_clock
from gateway.consent import actions, holds, records
from gateway.consent.gate import dry_run
from gateway.consent.records import Document, ReleaseInput, VersionView
from gateway.consent.views import decision_json, held_json, release_state, version_json
from gateway.policy.consent import GRANTOR_ROLES, RecipientRef, Release, ReleaseTerms, Verdict
from gateway.settings import Settings
from mailboxes.directory import mailbox_id_for

# On the command line a role is one word; the records spell "young person" with a space.
ROLE_CHOICES = {role.replace(" ", "-"): role for role in GRANTOR_ROLES}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    consent = commands.add_parser(
        "consent", help="releases from confidentiality and the reports the consent gate holds",
        description="Releases from confidentiality (Schweigepflichtentbindung): who may "
                    "receive which categories of information about a case, for what, and "
                    "until when. Sensitive reports leave only under a current release, or on "
                    "a legal basis approved by a second person. Commands that record or "
                    "reveal something act as the staff user named with --by and ask for that "
                    "user's password.")
    sub = consent.add_subparsers(dest="consent_command", required=True, metavar="COMMAND")

    add = sub.add_parser(
        "add", help="record a new release",
        description="Record a signed release as version 1. Reports of the case held for want "
                    "of consent are checked again at once.")
    _release_options(add, required=True)
    add.add_argument("--note", default="", metavar="TEXT",
                     help="how the release was obtained (optional)")
    add.add_argument("--mailbox", metavar="ADDRESS",
                     help="the shared mailbox whose case it is: its leads and agents manage "
                          "the release in the console and the API (without it, only admins)")
    _actor_options(add)
    add.set_defaults(handler=cmd_add)

    change = sub.add_parser(
        "change", help="record a new version of a release",
        description="Record a new version of a release; the old versions stay on record. "
                    "Options not given are taken from the current version. A repeatable "
                    "option given replaces the whole list; --partner and --address together "
                    "are one list of recipients, so giving either replaces all recipients. "
                    "Reports of the case, held or waiting for a retry, are checked again at "
                    "once.")
    change.add_argument("id", metavar="ID", type=positive_int, help="the release id")
    _release_options(change, required=False)
    change.add_argument("--note", required=True, metavar="TEXT",
                        help="why the release is changed")
    change.add_argument("--expect-version", type=positive_int, metavar="N",
                        help="refuse the change if the current version is not N (someone "
                             "else changed it since you looked)")
    _actor_options(change)
    change.set_defaults(handler=cmd_change)

    revoke = sub.add_parser(
        "revoke", help="record that a release was revoked",
        description="Record a revocation as a new version. Reports of the case that are held "
                    "or waiting for a retry meet it at once; none leaves on it any more.")
    revoke.add_argument("id", metavar="ID", type=positive_int, help="the release id")
    revoke.add_argument("--reason", required=True, metavar="TEXT",
                        help="how the revocation was received (letter of ..., in person)")
    revoke.add_argument("--at", metavar="DATETIME",
                        help="when it was revoked, ISO 8601 with a zone, e.g. "
                             "2026-03-02T09:30+01:00 (default: now; not in the future)")
    _actor_options(revoke)
    revoke.set_defaults(handler=cmd_revoke)

    ls = sub.add_parser("list", help="list releases (their current versions)",
                        description="List the current version of every release, newest "
                                    "first, with its state today. The table shows no names; "
                                    "--json shows the data subjects, the grantor and the "
                                    "purpose too, and so needs --by (the reading is audited).")
    ls.add_argument("--case", metavar="AZ", help="only the releases of this case")
    _json(ls)
    _actor_options(ls, required=False)
    ls.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="show a release with all its versions",
                          description="Show every version of a release: what it said, who "
                                      "recorded it, why, and the signed scan it relies on. "
                                      "It shows the names of the people concerned: the "
                                      "reading is recorded in the audit trail.")
    show.add_argument("id", metavar="ID", type=positive_int, help="the release id")
    _json(show)
    _actor_options(show)
    show.set_defaults(handler=cmd_show)

    check = sub.add_parser(
        "check", help="dry run: may a report go out?",
        description="Dry run of the consent gate: what a report of this case and category to "
                    "this recipient would meet, and why. Nothing is changed. Exit status: 0 "
                    "if it would be allowed, 1 otherwise (held, denied, needs a legal basis) "
                    "or on an error.")
    check.add_argument("--case", required=True, metavar="AZ", help="the case reference")
    check.add_argument("--category", required=True, metavar="C",
                       help="the report's category (a catalogue name or an alias)")
    check.add_argument("--recipient", required=True, metavar="ADDRESS",
                       help="the recipient's address; its partner is looked up")
    check.add_argument("--date", metavar="YYYY-MM-DD",
                       help="judge as on this day (default: now)")
    _json(check)
    check.set_defaults(handler=cmd_check)

    document = sub.add_parser(
        "document", help="write a release's signed scan to a file",
        description="Unseal the signed release form a version relies on (the current one by "
                    "default) and write it to a new file only its owner can read. The "
                    "reading is recorded in the audit trail.")
    document.add_argument("id", metavar="ID", type=positive_int, help="the release id")
    document.add_argument("--version", type=positive_int, metavar="N",
                          help="the version whose scan to read (default: the current one)")
    document.add_argument("--output", required=True, type=Path, metavar="FILE",
                          help="where to write it; an existing file is not overwritten")
    _actor_options(document)
    document.set_defaults(handler=cmd_document)

    held = sub.add_parser("held", help="list reports held by the consent gate",
                          description="List the outbound reports the consent gate holds, "
                                      "oldest first, with why.")
    _json(held)
    held.set_defaults(handler=cmd_held)

    approve = sub.add_parser(
        "approve", help="approve a held transfer on a legal basis (second person)",
        description="Approve a report held as a transfer on a legal basis without consent "
                    "(e.g. § 8a SGB VIII). The approver must be a staff user other than the "
                    "sender; the report then goes through the consent gate again. A report "
                    "whose sender gave no justification (X-Xgate-Justification) cannot be "
                    "approved: it has to be sent again with one.")
    approve.add_argument("queue_id", metavar="QUEUEID", help="the held report's queue id")
    approve.add_argument("--reason", required=True, metavar="TEXT",
                         help="why the transfer is justified (recorded in the audit trail)")
    _actor_options(approve)
    approve.set_defaults(handler=cmd_approve)


def _release_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    # For "change" every option is optional and a missing one keeps the current value. The
    # repeatable ones default to None, not [], so that "not given" differs from "empty".
    parser.add_argument("--case", required=required, metavar="AZ",
                        help="the case reference (Aktenzeichen)")
    parser.add_argument("--subject", action="append", dest="subjects", metavar="NAME",
                        required=required, default=None,
                        help="a data subject, the child or young person (repeatable)")
    parser.add_argument("--granted-by", required=required, metavar="NAME",
                        help="who signed the release")
    parser.add_argument("--role", required=required, metavar="ROLE",
                        help="the signer's role: " + ", ".join(ROLE_CHOICES))
    parser.add_argument("--category", action="append", dest="categories", metavar="C",
                        required=required, default=None,
                        help="a category of information the release covers (repeatable)")
    parser.add_argument("--partner", action="append", dest="partners", metavar="NAME",
                        default=None, help="a partner organisation that may receive it "
                                           "(repeatable)")
    parser.add_argument("--address", action="append", dest="addresses", metavar="ADDRESS",
                        default=None, help="a single address that may receive it (repeatable)")
    parser.add_argument("--purpose", required=required, metavar="TEXT",
                        help="what the release was given for")
    parser.add_argument("--from", dest="valid_from", required=required, metavar="YYYY-MM-DD",
                        help="first day it is valid")
    parser.add_argument("--until", dest="valid_until", required=required,
                        metavar="YYYY-MM-DD", help="last day it is valid")
    parser.add_argument("--document", type=Path, metavar="FILE",
                        help="the signed form (a scan); stored sealed")


def _actor_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--by", required=required, metavar="USER",
                        help="the staff user acting (asked for their password)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input "
                             "instead of prompting for it")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


# -- reading the command line ------------------------------------------------------------------
# Parsed in the handlers, not by argparse types, so bad input ends as the usual one line
# "xgate: error: ..." (exit 1) and is reported before anyone is asked for a password.


def parse_day(option: str, text: str) -> date:
    # fromisoformat alone would also take "20260301" and week dates on Python 3.11+.
    try:
        if not _DAY.match(text.strip()):
            raise ValueError
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"{option}: not a date in the form YYYY-MM-DD: {text!r}") from None


def parse_role(text: str) -> str:
    role = ROLE_CHOICES.get(text.strip().replace(" ", "-").lower())
    if role is None:
        raise CliError(f"--role: unknown role {text!r}; one of: " + ", ".join(ROLE_CHOICES))
    return role


def parse_moment(option: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"{option}: not a date and time in ISO 8601 form: {text!r}") from None
    # A moment without a zone is ambiguous by an hour or two; guessing could date a
    # revocation after a report it should have stopped.
    if moment.utcoffset() is None:
        raise CliError(f"{option}: give a time zone, e.g. {moment:%Y-%m-%dT%H:%M}+01:00")
    return moment


def read_document(path: Path | None, settings: Settings) -> Document | None:
    if path is None:
        return None
    limit = settings.consent.max_document_bytes
    try:
        with path.open("rb") as handle:
            # One byte more than allowed is enough for the records to refuse a file too large,
            # without reading a huge one into memory first.
            data = handle.read(limit + 1)
    except OSError as exc:
        raise CliError(f"cannot read the release document {path}: "
                       f"{exc.strerror or exc}") from None
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Document(filename=path.name, content_type=content_type, data=data)


def _recipients(partners: Sequence[str], addresses: Sequence[str]) -> tuple[RecipientRef, ...]:
    try:
        return (tuple(RecipientRef("partner", p) for p in partners)
                + tuple(RecipientRef("address", a) for a in addresses))
    except ValueError:
        raise CliError("--partner and --address must not be empty") from None


def _new_input(args: argparse.Namespace) -> ReleaseInput:
    return ReleaseInput(
        case=args.case, data_subjects=tuple(args.subjects), grantor_name=args.granted_by,
        grantor_role=parse_role(args.role), categories=tuple(args.categories),
        recipients=_recipients(args.partners or (), args.addresses or ()),
        purpose=args.purpose, valid_from=parse_day("--from", args.valid_from),
        valid_until=parse_day("--until", args.valid_until), note=args.note)


def _changed_input(args: argparse.Namespace, current: Release) -> ReleaseInput:
    """The current version with what the command line gives instead."""
    recipients = current.recipients
    if args.partners is not None or args.addresses is not None:
        # One list: narrowing a release to one address must not leave its partners in it.
        recipients = _recipients(args.partners or (), args.addresses or ())
    return ReleaseInput(
        case=args.case if args.case is not None else current.case,
        data_subjects=(tuple(args.subjects) if args.subjects is not None
                       else current.data_subjects),
        grantor_name=(args.granted_by if args.granted_by is not None
                      else current.granted_by.name),
        grantor_role=(parse_role(args.role) if args.role is not None
                      else current.granted_by.role),
        categories=(tuple(args.categories) if args.categories is not None
                    else tuple(sorted(current.categories))),
        recipients=recipients,
        purpose=args.purpose if args.purpose is not None else current.purpose,
        valid_from=(parse_day("--from", args.valid_from) if args.valid_from is not None
                    else current.valid_from),
        valid_until=(parse_day("--until", args.valid_until) if args.valid_until is not None
                     else current.valid_until),
        note=args.note)


def _check_change_options(args: argparse.Namespace) -> None:
    # Before the password prompt: typing mistakes show at once. The values are used later,
    # merged with the current version inside the transaction.
    for option, value in (("--from", args.valid_from), ("--until", args.valid_until)):
        if value is not None:
            parse_day(option, value)
    if args.role is not None:
        parse_role(args.role)


def _print_recorded(result: actions.Recorded, what: str) -> None:
    release = result.version.release
    print(f"release {release.id} v{release.version} {what}")
    if result.rechecked:
        print("re-checked: " + " ".join(result.rechecked))


# -- the commands ------------------------------------------------------------------------------


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    data = _new_input(args)
    document = read_document(args.document, settings)
    authenticate(settings, args.by, args.password_stdin)
    master = master_key_of(settings)
    with command_session(settings) as session:
        mailbox_id = None
        if args.mailbox:
            found = mailbox_id_for(session, args.mailbox)
            if found is None:
                raise CliError(f"no shared mailbox {args.mailbox}")
            mailbox_id = found[0]
        result = actions.record_release(session, master, settings, data, document=document,
                                        actor=args.by, now=system_clock(),
                                        mailbox_id=mailbox_id)
    _print_recorded(result, "recorded")
    return 0


def cmd_change(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _check_change_options(args)
    document = read_document(args.document, settings)
    authenticate(settings, args.by, args.password_stdin)
    master = master_key_of(settings)
    with command_session(settings) as session:
        current = records.history(session, master, args.id)[-1]
        data = _changed_input(args, current.release)
        # Without --expect-version, still expect the version the merge was built from: a
        # change committed meanwhile must not be overwritten by values read before it.
        expected = args.expect_version or current.release.version
        result = actions.record_change(session, master, settings, args.id, data,
                                       document=document, actor=args.by, now=system_clock(),
                                       expected_version=expected)
    _print_recorded(result, "recorded")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    at = parse_moment("--at", args.at) if args.at is not None else None
    authenticate(settings, args.by, args.password_stdin)
    master = master_key_of(settings)
    with command_session(settings) as session:
        result = actions.record_revocation(session, master, args.id, actor=args.by,
                                           reason=args.reason, now=system_clock(),
                                           revoked_at=at)
    revoked_at = result.version.release.revoked_at
    assert revoked_at is not None
    zone = ZoneInfo(settings.consent.timezone)
    _print_recorded(result, f"recorded: revoked at {_moment(revoked_at, zone)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    zone = ZoneInfo(settings.consent.timezone)
    if args.json:
        if args.by is None:
            raise CliError("--json shows the names of the people concerned: say who reads "
                           "them with --by USER (asked for the password)")
        authenticate(settings, args.by, args.password_stdin)
        master = master_key_of(settings)
        with command_session(settings) as session:
            views = records.read_releases(session, master, case=args.case, actor=args.by,
                                          via="cli")
        now = system_clock()
        print_json([version_json(v, now, zone) for v in views])
        return 0
    with command_session(settings, read_only=True) as session:
        terms = records.latest_terms(session, case=args.case)
    now = system_clock()
    if not terms:
        print("no releases" + (f" for case {args.case}" if args.case else ""))
        return 0
    print_table(["ID", "VERSION", "CASE", "STATE", "VALID", "CATEGORIES", "RECIPIENTS"],
                [[r.id, f"v{r.version}", r.case, release_state(r, now, zone), _period(r),
                  ", ".join(sorted(r.categories)), _recipient_list(r)] for r in terms])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    zone = ZoneInfo(settings.consent.timezone)
    authenticate(settings, args.by, args.password_stdin)
    master = master_key_of(settings)
    with command_session(settings) as session:
        views = records.read_release(session, master, args.id, actor=args.by, via="cli")
    now = system_clock()
    if args.json:
        print_json([version_json(v, now, zone) for v in views])
        return 0
    current = views[-1].release
    print(f"release {current.id}, case {current.case}: {release_state(current, now, zone)} "
          f"(current version v{current.version})")
    for view in views:
        print("\n".join(_describe_version(view, zone)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    on = parse_day("--date", args.date) if args.date is not None else None
    with command_session(settings, read_only=True) as session:
        decision = dry_run(session, settings.consent, case=args.case, category=args.category,
                           recipient=args.recipient, on=on, now=system_clock())
    if args.json:
        print_json(decision_json(decision))
    else:
        print(f"verdict: {decision.verdict.value}")
        for reason in decision.reasons:
            print(f"  - {reason}")
        used = ", ".join(f"{i} v{v}" for i, v in decision.used)
        print(f"releases: {used or 'none'}")
    return 0 if decision.verdict == Verdict.ALLOW else 1


def cmd_document(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    output: Path = args.output
    # Checked before the password prompt as a courtesy; the exclusive create below is what
    # actually guarantees nothing is overwritten.
    if output.exists() or output.is_symlink():
        raise CliError(f"{output} exists already; name a new file")
    authenticate(settings, args.by, args.password_stdin)
    master = master_key_of(settings)
    try:
        # 0600 from the start: the scan is a signed form with names and family details.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{output} exists already; name a new file") from None
    try:
        with os.fdopen(fd, "wb") as handle, command_session(settings) as session:
            info, version, data = records.read_document(session, master, args.id,
                                                        args.version, actor=args.by)
            # Written inside the transaction: if writing fails, the audit entry is rolled
            # back with it; if the commit fails, the file is removed below. A scan on disk
            # and a read on record go together.
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    print(f"release {args.id} v{version}: {info.filename} ({info.content_type}, "
          f"{info.size} bytes) written to {output}")
    return 0


def cmd_held(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        reports = holds.held_reports(session)
    if args.json:
        print_json([held_json(r) for r in reports])
        return 0
    if not reports:
        print("no reports held by the consent gate")
        return 0
    zone = ZoneInfo(settings.consent.timezone)
    for report in reports:
        view = held_json(report)
        print(f"{report.queue_id}  {_moment(report.received_at, zone)}  "
              f"case {view['case'] or '-'}, {view['category'] or '-'}  "
              f"{report.mail_from or '<>'} -> {', '.join(report.recipients)}")
        print(f"  {report.reason}")
        if view["awaiting_approval"]:
            print("  waiting for a second person's approval (xgate consent approve)")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    authenticate(settings, args.by, args.password_stdin)
    with command_session(settings) as session:
        holds.approve_statutory(session, args.queue_id, approver=args.by, reason=args.reason,
                                now=system_clock())
    print(f"{args.queue_id}: transfer on a legal basis approved by {args.by}; it goes "
          "through the consent gate again now")
    return 0


# -- output ------------------------------------------------------------------------------------


def _moment(moment: datetime, zone: ZoneInfo) -> str:
    # In the office's zone: staff compare these times with letters and phone notes.
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _period(release: ReleaseTerms) -> str:
    return f"{release.valid_from.isoformat()} to {release.valid_until.isoformat()}"


def _recipient_list(release: ReleaseTerms) -> str:
    return ", ".join(f"{r.value} (partner)" if r.kind == "partner" else r.value
                     for r in release.recipients)


def _describe_version(view: VersionView, zone: ZoneInfo) -> list[str]:
    r = view.release
    lines = [
        f"v{r.version}: recorded {_moment(view.recorded_at, zone)} by {view.recorded_by}",
        f"  data subjects: {', '.join(r.data_subjects)}",
        f"  granted by:    {r.granted_by.name} ({r.granted_by.role})",
        f"  categories:    {', '.join(sorted(r.categories))}",
        f"  recipients:    {_recipient_list(r)}",
        f"  purpose:       {r.purpose}",
        f"  valid:         {_period(r)}",
    ]
    if r.revoked_at is not None:
        lines.append(f"  revoked:       {_moment(r.revoked_at, zone)} by "
                     f"{view.revoked_by or '-'}")
    lines.append(f"  note:          {view.note or '-'}")
    doc = view.document
    lines.append("  document:      " + ("none" if doc is None else
                                      f"{doc.filename} ({doc.content_type}, {doc.size} bytes, "
                                      f"sha256 {doc.sha256})"))
    return lines

