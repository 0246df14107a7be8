"""The list page and the ticket page cost a fixed number of SQL statements, however many
tickets or articles they show (counted on the real engine, SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.services import Services
from mailboxes.tickets.records import add_note, get_ticket
from tests.support.staff_web import BASE_URL, enrol, web_login
from tests.support.ticket_web import BOX, PASSWORD, deliver, latest_ticket, mail, two_teams

# Argon2 at production cost takes 0.3 s a hash; these tests are about who gets in.
pytestmark = pytest.mark.usefixtures("cheap_hashing")


@contextmanager
def counted() -> Iterator[list[str]]:
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", note)


def _mails(services: Services, start: int, n: int) -> None:
    for i in range(start, start + n):
        sender = f"eltern{i}@web.example"
        deliver(services, mail(f"Frage {i}", sender=sender, msgid=f"m{i}", attachment=b"%PDF"),
                sender=sender)


def test_statements_do_not_grow_with_tickets_or_articles(services: Services,
                                                          clock: FakeClock) -> None:
    two_teams(services)
    _mails(services, 0, 2)
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as client:
        web_login(client, "anna", PASSWORD, enrol(services.settings, "anna"), at=clock())
        ids = latest_ticket(services, BOX)

        def cost(url: str) -> int:
            client.get(url)  # warm: first use of the master key and the caches
            with counted() as statements:
                assert client.get(url).status_code == 200
            return len(statements)

        list_url = f"/mailboxes/{ids.mailbox_id}"
        few_tickets = cost(list_url)
        _mails(services, 2, 10)
        many_tickets = cost(list_url)
        assert many_tickets == few_tickets

        ticket_url = f"/tickets/{ids.ticket_id}"
        few_articles = cost(ticket_url)
        with session_scope(services.sessions) as s:
            for n in range(10):
                add_note(s, services.master_key, get_ticket(s, ids.ticket_id), f"Notiz {n}",
                         actor="anna", now=clock())
        many_articles = cost(ticket_url)
        assert many_articles == few_articles
    # Small in absolute terms too: login, rights, the query, the page's extras (the
    # ticket: 26 with the pickup items, one statement, gateway.portal.pickup.views).
    print("statements: list", many_tickets, "ticket", many_articles)
    assert many_tickets <= 12 and many_articles <= 26, (many_tickets, many_articles)
