"""``xgate ticket list|show``: metadata freely, content only with --content, audited."""

from __future__ import annotations

from gateway.db import session_scope
from gateway.settings import RelayRoute
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.tickets.records import add_note, find_ticket
from tests.support.cli import Cli, dispose, installation_services, installation_settings
from tests.support.pipeline import drain, enqueue

BOX = "kita@jugendamt.example"
MSG = (b"From: tagesmutter@web.example\r\nTo: kita@jugendamt.example\r\n"
       b"Subject: Betreuung ab Mai\r\nMessage-ID: <c1@web.example>\r\n\r\n"
       b"Ich habe einen Platz frei.\r\n")


def test_list_and_show(cli: Cli) -> None:
    services = installation_services(installation_settings(cli.config))
    try:
        services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]
        with session_scope(services.sessions) as s:
            add_mailbox(s, BOX, "Kita")
            add_user(s, "anna", "a long enough passphrase 1")
            add_member(s, BOX, "anna", MemberRole.LEAD, actor="t", now=services.clock())
        enqueue(services, [BOX], MSG, mail_from="tagesmutter@web.example")
        drain(services)
        with session_scope(services.sessions) as s:
            ticket = find_ticket(s, f"XG-{services.clock().year}-000001")
            add_note(s, services.master_key, ticket, "Rückruf am Montag", actor="anna",
                     now=services.clock())
            number = ticket.number
    finally:
        dispose(services)

    out = cli("ticket", "list", BOX)[1]
    assert number in out and "tagesmutter@web.example" in out and "new" in out
    assert "Betreuung" not in out
    assert "Betreuung ab Mai" in cli("ticket", "list", BOX, "--content")[1]
    assert cli("ticket", "list", BOX, "--search", "mai")[1].startswith(number)
    assert cli("ticket", "list", BOX, "--search", "juni")[1].strip() == "no tickets"
    assert cli("ticket", "list", BOX, "--state", "closed")[1].strip() == "no tickets"
    assert "unknown state 'later'" in cli.fails("ticket", "list", BOX, "--state", "later")
    assert cli.fails("ticket", "list", "nix@jugendamt.example") == \
        "no mailbox nix@jugendamt.example"

    shown = cli("ticket", "show", number)[1]
    assert "history:" in shown and "receipt-sent" in shown and "note" in shown
    assert "inbound" in shown and "receipt" in shown
    assert "Platz frei" not in shown and "Rückruf" not in shown
    before = [a for _, a in cli.audit_actions()].count("ticket-content-read")
    shown = cli("ticket", "show", number, "--content")[1]
    assert "Ich habe einen Platz frei." in shown and "Rückruf am Montag" in shown
    assert "subject  Betreuung ab Mai" in shown
    reads = [a for _, a in cli.audit_actions()].count("ticket-content-read")
    assert reads == before + 3  # the mail in, the receipt, the note
    assert cli.fails("ticket", "show", "XG-1999-000001") == "no ticket XG-1999-000001"
