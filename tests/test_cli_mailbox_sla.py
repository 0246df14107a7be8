"""``xgate mailbox sla show|set``: the same checks as the lead's page; a refusal is one line
and stores nothing; a change is audited."""

from __future__ import annotations

from sqlalchemy import func, select

from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.service_levels.models import MailboxServiceLevel
from tests.support.cli import Cli, dispose, installation_services, installation_settings

BOX = "kita@jugendamt.example"


def test_show_set_and_refusals(cli: Cli) -> None:
    services = installation_services(installation_settings(cli.config))
    try:
        with session_scope(services.sessions) as s:
            add_mailbox(s, BOX, "Kita")
            add_user(s, "lena", "a long enough passphrase 1")
            add_member(s, BOX, "lena", MemberRole.LEAD, actor="t", now=services.clock())
    finally:
        dispose(services)
    assert "no service levels" in cli("mailbox", "sla", "show", BOX)[1]
    out = cli("mailbox", "sla", "set", BOX, "--land", "ni", "--hours",
              "sat=09:00-12:00", "--first-response-hours", "4", "--resolution-hours",
              "16.5", "--closing-days", "2026-12-24", "--escalation-contacts", "lena")[1]
    assert "Land NI" in out and "sat: 09:00-12:00" in out and "mon: 08:00-12:00, 13:00-16:00" in out
    assert "first response: 4 h, resolution: 16.5 h" in out and "2026-12-24" in out
    shown = cli("mailbox", "sla", "show", BOX)[1]
    assert shown == out
    refusals = {
        ("--hours", "mon=08:00-12:00,11:00-13:00"): "mon: the opening hours overlap",
        ("--hours", "tue=16:00-08:00"): "tue: '16:00-08:00' ends before it begins",
        ("--first-response-hours", "0"): "first response must be more than zero hours",
        ("--resolution-hours", "-1"): "resolution must be more than zero hours",
        ("--land", "Bayern"): "unknown Land 'Bayern'",
        ("--escalation-contacts", "nobody"): "escalation contact 'nobody' is not a member",
    }
    for args, message in refusals.items():
        assert message in cli.fails("mailbox", "sla", "set", BOX, *args)
    assert cli("mailbox", "sla", "show", BOX)[1] == out   # nothing half-stored
    services = installation_services(installation_settings(cli.config))
    try:
        with read_scope(services.sessions) as s:
            assert s.scalar(select(func.count()).select_from(MailboxServiceLevel)) == 1
            assert s.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.action == "service-levels-changed")) == 1
    finally:
        dispose(services)
