"""The staff web app's ticket list and ticket page with 100,000 tickets in the database, on
SQLite and on PostgreSQL: p50/p99 of whole HTTP requests (login session, rights, query,
opening sealed subjects and messages, audit entries, rendering) through the app in process.

The baseline, measured in the same run and the same way, is the start page of a logged-in
user (session, rights, the mailbox list with its counts, rendering): what every page costs.

    python benchmarks/ticket_pages.py [--tickets N] [--requests R]
                                      [--backend sqlite|postgresql|both]

Cases: the first page (50 rows) of the list unfiltered, filtered by state, by assignee,
unassigned and new, by a word of the subject (rare and common) and by a part of the sender;
a ticket page (a message in with an attachment, the receipt, two notes). Goal: p99 under
150 ms for the first page of a filtered list on the 2-core machine.

The tickets are written in bulk (sealed subjects, blind-index tokens, a history row each) in
one mailbox of five members; states and assignees are spread as in a busy team. The ticket
page's ticket is made by the real worker from a real mail.
"""

# ruff: noqa: E402 - the repository root goes on sys.path before the project imports below

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/ticket_pages.py
    sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

import gateway.staff.users
from admin_ui.app import create_app
from benchmarks.common import percentile
from crypto.at_rest import MasterKey, seal
from gateway.db import make_engine, session_scope, table_of
from gateway.delivery.transport import RecordingTransport
from gateway.migrate import upgrade
from gateway.services import build_services
from gateway.settings import RelayRoute, Settings, load_settings
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.tickets.models import HistoryEntry, SubjectToken, Ticket
from mailboxes.tickets.records import add_note, get_ticket, subject_context
from mailboxes.tickets.search import index_key, tokens
from tests.support.pipeline import drain, enqueue
from tests.support.staff_web import BASE_URL, enrol, web_login

BOX = "kita@jugendamt.example"
MEMBERS = ["anna", "bert", "carla", "dora", "emil"]
PASSWORD = "ein sehr langes passwort"
WORDS = ["Antrag", "Pflegeerlaubnis", "Betreuung", "Nachfrage", "Unterlagen", "Termin",
         "Kita", "Gutschein", "Bescheid", "Widerspruch", "Elterngeld", "Rechnung"]
STATES = ["new"] * 2 + ["open"] * 3 + ["waiting"] * 2 + ["closed"] * 13
BATCH = 5000


def settings_for(work: Path, url: str) -> Settings:
    key = work / "master.key"
    MasterKey.generate().write(key)
    settings = load_settings(None, data_dir=str(work), database={"url": url},
                             storage={"master_key_file": str(key)},
                             crypto={"unknown_partner_outbound": "plaintext"},
                             logging={"level": "WARNING"})
    settings.delivery.routes = [RelayRoute(domain="*", host="relay.invalid")]
    return settings


def populate(settings: Settings, count: int) -> int:
    """``count`` tickets in bulk, then one by the worker; that one's id."""
    services = build_services(settings, transport=RecordingTransport())
    master = services.master_key
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, BOX, "Kindertagespflege").id
        ids = []
        for name in MEMBERS:
            ids.append(add_user(s, name, PASSWORD).id)
            add_member(s, BOX, name, MemberRole.AGENT, actor="bench", now=services.clock())
    key = index_key(master)
    rng = random.Random(13)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    tickets, tokens_table, history = (table_of(Ticket), table_of(SubjectToken),
                                      table_of(HistoryEntry))
    made = time.monotonic()
    for first in range(1, count + 1, BATCH):
        rows, token_rows, history_rows = [], [], []
        numbers = range(first, min(count, first + BATCH - 1) + 1)
        for n in numbers:
            number = f"XG-2025-{n:06d}"
            subject = " ".join(rng.sample(WORDS, 3)) + f" {n}"
            at = start + timedelta(minutes=5 * n)
            assignee = rng.choice([None, None, *ids])
            rows.append({"id": n, "mailbox_id": box, "number": number,
                         "state": rng.choice(STATES), "assignee_id": assignee,
                         "requester": f"eltern{n % 20000}@web.example",
                         "subject_sealed": seal(master, subject.encode(),
                                                subject_context(number)),
                         "linked_ticket_id": None, "created_at": at, "updated_at": at})
            token_rows += [{"ticket_id": n, "token": t} for t in tokens(key, subject)]
            history_rows.append({"ticket_id": n, "at": at, "actor": "x@web.example",
                                 "action": "created", "detail": None})
        with session_scope(services.sessions) as s:
            s.execute(insert(tickets), rows)
            s.execute(insert(tokens_table), token_rows)
            s.execute(insert(history), history_rows)
    print(f"  {count} tickets written in {time.monotonic() - made:.0f} s", file=sys.stderr)
    if settings.database.url.startswith("postgresql"):
        with session_scope(services.sessions) as s:
            from sqlalchemy import text
            s.execute(text("SELECT setval('tickets_id_seq', (SELECT max(id) FROM tickets))"))
            s.execute(text("ANALYZE"))
    # The ticket page's ticket: a real mail with an attachment, its receipt, two notes.
    mail = (f"From: Tagesmutter <tagesmutter@web.example>\r\nTo: {BOX}\r\n"
            "Subject: Frage zur Pflegeerlaubnis\r\nMessage-ID: <bench@web.example>\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGuten Tag, eine Frage."
            "\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;"
            ' filename="Antrag.pdf"\r\n\r\n%PDF-1.4\r\n--b--\r\n').encode()
    enqueue(services, [BOX], mail, mail_from="tagesmutter@web.example")
    drain(services)
    with session_scope(services.sessions) as s:
        page_ticket = int(s.scalar(select(Ticket.id).order_by(Ticket.id.desc()).limit(1))
                          or 0)
        for text_ in ("Rückruf vereinbart.", "Unterlagen angefordert."):
            add_note(s, master, get_ticket(s, page_ticket), text_, actor="anna",
                     now=services.clock())
    services.sessions.kw["bind"].dispose()
    return page_ticket


def measure(client: TestClient, url: str, requests: int) -> list[float]:
    for _ in range(3):
        assert client.get(url).status_code == 200, url
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, url
    return times


def run(backend: str, url_for: Callable[[Path], str], count: int, requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="xgate-bench-tickets-") as tmp:
        work = Path(tmp)
        url = url_for(work)
        settings = settings_for(work, url)
        if backend == "sqlite":
            engine = make_engine(settings)
            upgrade(engine)
            engine.dispose()
        page_ticket = populate(settings, count)
        secret = enrol(settings, "anna")
        with TestClient(create_app(settings), base_url=BASE_URL) as client:
            web_login(client, "anna", PASSWORD, secret)
            box = client.get("/").text.split('href="/mailboxes/')[1].split('"')[0]
            anna = "1"
            cases = [
                ("baseline: start page", "/"),
                ("list, unfiltered", f"/mailboxes/{box}"),
                ("list, state=open", f"/mailboxes/{box}?state=open"),
                ("list, assignee", f"/mailboxes/{box}?assignee={anna}"),
                ("list, unassigned+new", f"/mailboxes/{box}?assignee=none&state=new"),
                ("list, search rare word", f"/mailboxes/{box}?q=77777"),
                ("list, search common word", f"/mailboxes/{box}?q=Widerspruch"),
                ("list, search sender", f"/mailboxes/{box}?q=eltern1234%40"),
                ("list, state=new page 2", None),
                ("ticket page", f"/tickets/{page_ticket}"),
            ]
            print(f"\n{backend}: {count} tickets, {requests} requests per case")
            print(f"  {'case':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            for name, path in cases:
                if path is None:
                    first = client.get(f"/mailboxes/{box}?state=new").text
                    path = first.split('rel="next" href="')[1].split('"')[0].replace(
                        "&amp;", "&")
                times = measure(client, path, requests)
                print(f"  {name:<28} {statistics.median(times):8.1f} "
                      f"{percentile(times, 99):8.1f} {max(times):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    # Logging in is not what is measured.
    gateway.staff.users._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    if args.backend in ("sqlite", "both"):
        run("sqlite", lambda work: f"sqlite:///{work / 'xgate.db'}", args.tickets,
            args.requests)
    if args.backend in ("postgresql", "both"):
        from tests.support.postgres import PostgresServer

        server = PostgresServer.start_migrated()
        try:
            run("postgresql", lambda _work: server.create_database(), args.tickets,
                args.requests)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
