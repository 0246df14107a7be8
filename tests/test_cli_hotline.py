"""``xgate call``, ``xgate ticket follow-up|link|merge`` and ``xgate mailbox topic``: each
change works, bad input is one line, and each is in the audit trail as the operator."""

from __future__ import annotations

from datetime import timedelta

from gateway.clock import system_clock
from gateway.db import session_scope
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from mailboxes.hotline.days import office_day
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from tests.support.cli import Cli, dispose, installation_services, installation_settings

BOX = "kita@jugendamt.example"


def _setup(cli: Cli) -> None:
    services = installation_services(installation_settings(cli.config))
    try:
        with session_scope(services.sessions) as s:
            add_mailbox(s, BOX, "Kita")
            add_user(s, "anna", "a long enough passphrase 1")
            add_member(s, BOX, "anna", MemberRole.AGENT, actor="t", now=services.clock())
    finally:
        dispose(services)


def test_topics_calls_callbacks(cli: Cli) -> None:
    _setup(cli)
    assert cli("mailbox", "topic", "add", BOX, "Betreuungsvertrag")[1].strip() == "topic added"
    assert cli("mailbox", "topic", "list", BOX)[1].strip() == "Betreuungsvertrag"
    assert cli.fails("mailbox", "topic", "add", "nix@jugendamt.example", "x") == \
        "no mailbox nix@jugendamt.example"

    tomorrow = (office_day(system_clock()) + timedelta(days=1)).isoformat()
    base = ["call", "log", BOX, "--caller", "Petra Sonnenschein", "--role", "childminder",
            "--topic", "Betreuungsvertrag"]
    assert "not a phone number" in cli.fails(*base, "--number", "bitte zurückrufen")
    assert "at least 5 digits" in cli.fails(*base, "--number", "12 34")
    assert "not a topic" in cli.fails(*base[:-1], "Urlaub", "--number", "0221 12345")
    assert "is no date and time" in cli.fails(*base, "--number", "0221 12345",
                                              "--callback-by", "morgen")
    assert "in the past" in cli.fails(*base, "--number", "0221 12345",
                                      "--callback-by", "2020-01-01 10:00")
    assert "no callbacks due" in cli("call", "callbacks", BOX)[1]
    out = cli(*base, "--number", "0221 12345", "--notes", "Vertretung?",
              "--callback-by", f"{tomorrow} 10:00")[1]
    assert out.startswith("logged as XG-") and "(call 1)" in out
    number = out.split()[2]
    again = cli(*base, "--number", "0221 12345", "--ticket", number)[1]
    assert again.startswith(f"added to {number}")
    calls = cli("call", "list", BOX)[1]
    assert number in calls and "childminder" in calls and "Sonnenschein" not in calls
    assert f"callback by {tomorrow} 10:00" in calls
    listed = cli("call", "callbacks", BOX)[1]
    assert number in listed and "Petra Sonnenschein" in listed and f"{tomorrow} 10:00" in listed
    assert "not reached" in cli("call", "attempt", "1", "--not-reached", "--note", "besetzt")[1]
    assert "attempts 1" in cli("call", "callbacks", BOX)[1]
    assert cli("call", "attempt", "1", "--reached")[1].strip() == "callback done"
    assert cli.fails("call", "attempt", "1", "--reached") == "this call has no callback due"
    assert cli.fails("call", "attempt", "99", "--reached") == "no call 99"

    assert "in the past" in cli.fails("ticket", "follow-up", number, "--on", "2020-01-01")
    assert "is no date" in cli.fails("ticket", "follow-up", number, "--on", "bald")
    assert cli("ticket", "follow-up", number, "--on", tomorrow, "--holder", "anna")[1] \
        .strip() == f"{number} comes back on {tomorrow}"
    assert "follow-up" in cli("ticket", "show", number)[1]
    assert cli("ticket", "follow-up", number, "--done")[1].strip() == "follow-up cleared"

    other = cli("call", "log", BOX, "--caller", "Petra S.", "--role", "parent",
                "--number", "0221-12345")[1].split()[2]
    assert cli("ticket", "link", number, other)[1].strip() == f"linked {number} and {other}"
    assert cli.fails("ticket", "link", number, number) == "a ticket cannot be linked to itself"
    assert cli("ticket", "merge", other, number)[1].strip() == f"merged {other} into {number}"
    assert "merged already" in cli.fails("ticket", "merge", other, number)

    operator = [a for actor, a in cli.audit_actions() if actor.startswith("operator:")]
    for action in ("mailbox-topic-added", "call-logged", "callback-attempted",
                   "follow-up-set", "follow-up-cleared", "tickets-linked", "ticket-merged"):
        assert action in operator
    assert operator.count("call-logged") == 3
    assert "ticket-content-read" in operator  # the callbacks list showed the callers
