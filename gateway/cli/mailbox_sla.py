"""``xgate mailbox sla show|set``: a mailbox's service levels (opening hours, Land, closing
days, first-response and resolution targets in business hours, escalation contacts, the
plausibility settings). Registered into ``xgate mailbox`` (gateway.cli.mailbox); the same
parser and checks as the lead's page (mailboxes.service_levels.config); changes are audited.
"""

from __future__ import annotations

import argparse

from gateway.cli.call import mailbox_of
from gateway.cli.common import command_session, operator_actor, settings_from_args
from gateway.clock import system_clock
from mailboxes.service_levels import config
from mailboxes.service_levels.business_hours import LÄNDER


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sla = sub.add_parser("sla", help="service levels: opening hours, targets, escalation",
                         description="A mailbox's service levels. Targets count business "
                                     "hours: the opening hours, without the Land's public "
                                     "holidays and the office's closing days.")
    ssub = sla.add_subparsers(dest="sla_command", required=True, metavar="COMMAND")
    show = ssub.add_parser("show", help="show the service levels")
    show.add_argument("address", metavar="ADDRESS")
    show.set_defaults(handler=cmd_sla_show)
    change = ssub.add_parser(
        "set", help="set the service levels (options not given keep their value)",
        description="Set a mailbox's service levels. Options not given keep their value "
                    "(the first time: Mon-Thu 08:00-12:00, 13:00-16:00, Fri 08:00-12:00, "
                    "Land NW, 8 h first response, 40 h resolution, warning 2 h before).")
    change.add_argument("address", metavar="ADDRESS")
    change.add_argument("--hours", action="append", default=[], metavar="DAY=INTERVALS",
                        help="opening hours of a weekday, e.g. mon=08:00-12:00,13:00-16:00 "
                             "(sat= closes it); repeat for each day")
    change.add_argument("--land", help="the office's Land: " + ", ".join(LÄNDER))
    change.add_argument("--closing-days", metavar="DATES",
                        help="the office's own closing days, e.g. 2026-12-24,2026-12-31")
    change.add_argument("--first-response-hours", metavar="HOURS")
    change.add_argument("--resolution-hours", metavar="HOURS")
    change.add_argument("--warning-hours", metavar="HOURS",
                        help="a ticket is marked as nearing its deadline this many business "
                             "hours before")
    change.add_argument("--escalation-contacts", metavar="USERS",
                        help="members told of a breach, comma-separated (empty: the leads)")
    change.add_argument("--untouched-days", metavar="DAYS",
                        help="an open ticket nobody touched this long is a finding")
    change.add_argument("--case-reference-pattern", action="append", metavar="REGEX",
                        help="a case-reference format the office uses (repeat; none given "
                             "ever: the consent gate's pattern)")
    change.set_defaults(handler=cmd_sla_set)


def _print(address: str, levels: config.ServiceLevels | None) -> None:
    if levels is None:
        print(f"{address}: no service levels (no deadlines, no findings)")
        return
    shown = config.to_form(levels)
    print(f"{address}: Land {shown.land}")
    for day in config.DAY_NAMES:
        print(f"  {day}: {shown.hours[day] or 'closed'}")
    print(f"  closing days: {shown.closing_days or 'none'}")
    print(f"  first response: {shown.first_response_hours} h, resolution: "
          f"{shown.resolution_hours} h, warning: {shown.warning_hours} h before")
    print(f"  escalation contacts: {shown.escalation_contacts or 'the leads'}")
    print(f"  untouched after: {shown.untouched_days} days")
    patterns = " | ".join(levels.case_reference_patterns) or "the consent gate's pattern"
    print(f"  case-reference formats: {patterns}")


def cmd_sla_show(args: argparse.Namespace) -> int:
    with command_session(settings_from_args(args), read_only=True) as session:
        mailbox = mailbox_of(session, args.address)
        _print(mailbox.address, config.load(session, mailbox.id))
    return 0


def cmd_sla_set(args: argparse.Namespace) -> int:
    with command_session(settings_from_args(args)) as session:
        mailbox = mailbox_of(session, args.address)
        current = config.load(session, mailbox.id)
        form = config.to_form(current) if current else config.default_form()
        for item in args.hours:
            day, _, intervals = item.partition("=")
            form.hours[day.strip().lower()] = intervals
        for name in ("land", "closing_days", "first_response_hours", "resolution_hours",
                     "warning_hours", "escalation_contacts", "untouched_days"):
            value = getattr(args, name)
            if value is not None:
                setattr(form, name, value)
        if args.case_reference_pattern is not None:
            form.case_reference_patterns = "\n".join(args.case_reference_pattern)
        levels = config.parse_form(form)
        config.save(session, mailbox, levels, actor=operator_actor(), now=system_clock())
    _print(mailbox.address, levels)
    return 0
