"""The console's transfer search and a message's timeline with 1,000,000 messages and
10,000,000 audit entries in PostgreSQL: p50/p99 of the library calls the pages make
(gateway.transfers.search.search, gateway.transfers.timeline.timeline), each in its own
read-only session as a request has it.

    python benchmarks/console_transfers.py [--messages N] [--audit-entries E] [--samples S]

Goal: p99 under 300 ms for a search by case reference and by address (sender or recipient),
under 200 ms for a timeline. The indexes that make it so are migration 0021's. Measured
besides: the other filters (shared mailbox, partner, one day) and the audit viewer's.

The rows are written by the database itself (INSERT ... SELECT FROM generate_series), not
the ORM: messages half inbound, half outbound, 20,000 senders, one or two recipients of
50,000 addresses, a case reference on every outbound message (10 messages a case), received
over the past months; the audit entries spread evenly over the messages (10 a message by
default) with the actions of a message's way. Their hashes are filler: the chain is not what
is measured here (``xgate audit verify`` is). Before the load the secondary indexes are
dropped and afterwards made again from their own definitions, as a bulk load does; then
ANALYZE. Loading the default sizes takes some minutes on two cores.
"""

# ruff: noqa: E402 - the repository root goes on sys.path before the project imports below

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/console_transfers.py
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.common import percentile
from gateway.audit.browse import browse, parse_audit_query
from gateway.db import read_scope, session_scope
from gateway.keydir.models import Partner, PartnerAddress
from gateway.transfers.search import parse_query, search
from gateway.transfers.timeline import timeline
from gateway.web.templates import OFFICE_TIME
from mailboxes.directory import add_mailbox

TABLES = ("messages", "message_recipients", "audit_log")
SENDERS = 20_000
RECIPIENTS = 50_000
ACTIONS = ("received", "deferred", "delivered", "ticket-content-read", "retry")


def queue_id_sql(n: str) -> str:
    return f"upper(lpad(to_hex({n}), 16, '0'))"


def queue_id(n: int) -> str:
    return f"{n:016X}"


def case_of(n: int) -> str:
    return f"51.2-{n % 100_000}/26"


def sender_of(n: int) -> str:
    return f"absender{n % SENDERS}@partner{n % 500}.example"


def recipient_of(n: int) -> str:
    return f"empfaenger{n % RECIPIENTS}@jugendamt{n % 50}.example"


def load(engine: Engine, messages: int, entries: int) -> None:
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        indexes = conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(:t) "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"),
            {"t": list(TABLES)}).all()
        for name, _definition in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
        conn.execute(text(f"""
            INSERT INTO messages (id, queue_id, direction, state, mail_from, peer, helo, size,
                                  received_at, updated_at, next_attempt_at, attempts, facts,
                                  case_reference)
            SELECT g, {queue_id_sql('g')},
                   CASE WHEN g % 2 = 0 THEN 'outbound' ELSE 'inbound' END,
                   CASE WHEN g % 97 = 0 THEN 'quarantined' ELSE 'delivered' END,
                   'absender' || (g % {SENDERS}) || '@partner' || (g % 500) || '.example',
                   '192.0.2.1', 'mx.partner.example', 20000 + g % 5000,
                   now() - (({messages} - g) * interval '15 seconds'),
                   now() - (({messages} - g) * interval '15 seconds'),
                   now(), 1,
                   CASE WHEN g % 97 = 0 THEN '{{"scan": "infected: Eicar-Test-Signature"}}'
                        ELSE '{{"scan": "clean"}}' END,
                   CASE WHEN g % 2 = 0 THEN '51.2-' || (g % 100000) || '/26' END
            FROM generate_series(1, {messages}) g"""))
        conn.execute(text("SELECT setval(pg_get_serial_sequence('messages', 'id'), :n)"),
                     {"n": messages})
        conn.execute(text(f"""
            INSERT INTO message_recipients (message_id, address, state)
            SELECT g, 'empfaenger' || (g % {RECIPIENTS}) || '@jugendamt' || (g % 50)
                      || '.example', 'delivered'
            FROM generate_series(1, {messages}) g
            UNION ALL
            SELECT g, 'kopie' || (g % {RECIPIENTS}) || '@jugendamt.example', 'delivered'
            FROM generate_series(5, {messages}, 5) g"""))
        print(f"  messages and recipients written in {time.monotonic() - started:.0f} s",
              flush=True)
        per_message = max(1, entries // messages)
        actions = "ARRAY[" + ",".join(f"'{a}'" for a in ACTIONS) + "]"
        conn.execute(text(f"""
            INSERT INTO audit_log (seq, at, actor, action, queue_id, detail, sealed,
                                   prev_hash, entry_hash)
            SELECT s, now() - (({entries} - s) * interval '1.5 seconds'), 'worker-1',
                   ({actions})[1 + s % {len(ACTIONS)}],
                   {queue_id_sql(f'LEAST({messages}, 1 + (s - 1) / {per_message})')},
                   '{{"attempt": 1, "stage": "deliver"}}', NULL,
                   md5(s::text) || md5((s - 1)::text), md5(s::text) || md5(s::text)
            FROM generate_series(1, {entries}) s"""))
        conn.execute(text("UPDATE audit_head SET seq = :n"), {"n": entries})
        print(f"  audit entries written in {time.monotonic() - started:.0f} s", flush=True)
        for _name, definition in indexes:
            conn.execute(text(definition))
        print(f"  indexes made again in {time.monotonic() - started:.0f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in TABLES:
            conn.execute(text(f"ANALYZE {table}"))
    print(f"  loaded and analysed in {time.monotonic() - started:.0f} s", flush=True)


def add_directory(sessions: sessionmaker[Session]) -> tuple[list[int], list[str]]:
    """Shared mailboxes (each one of the recipient addresses) and partners: one per domain
    of the recipients (2 % of the messages each), one per sender domain (0.2 %), and one
    whose domain had no mail at all (the search looks through every message for it)."""
    now = datetime.now(UTC)
    with session_scope(sessions) as session:
        boxes = [add_mailbox(session, recipient_of(n), f"Postfach {n}").id
                 for n in range(7, 7 + 50 * 20, 50)]
        partners = []
        for name, pattern in [*((f"Jugendamt {n}", f"jugendamt{n}.example") for n in range(5)),
                              *((f"Partner {n}", f"partner{n}.example") for n in range(5)),
                              ("Ohne Post", "niemand.example")]:
            partner = Partner(name=name, note="", created_at=now, created_by="bench",
                              updated_at=now, updated_by="bench")
            partner.patterns = [PartnerAddress(pattern=pattern)]
            session.add(partner)
            partners.append(name)
    return boxes, partners


def measure(name: str, samples: int, call: Callable[[int], int]) -> None:
    rng = random.Random(name)
    timings = []
    found = 0
    for _ in range(samples):
        began = time.perf_counter()
        found += call(rng.randrange(1, 10**9))
        timings.append((time.perf_counter() - began) * 1000)
    print(f"  {name:<34} p50 {statistics.median(timings):7.1f} ms   "
          f"p99 {percentile(timings, 99):7.1f} ms   ({samples} samples, {found} rows)",
          flush=True)


def run(url: str, messages: int, entries: int, samples: int) -> None:
    engine = create_engine(url)
    sessions = sessionmaker(engine)
    print(f"loading {messages:,} messages and {entries:,} audit entries", flush=True)
    load(engine, messages, entries)
    boxes, partners = add_directory(sessions)

    def by_case(r: int) -> int:
        n = 2 * (1 + r % (messages // 2))
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"case_reference": case_of(n)})).rows)

    def by_sender(r: int) -> int:
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"address": sender_of(r)})).rows)

    def by_recipient(r: int) -> int:
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"address": recipient_of(r)})).rows)

    def by_address_and_state(r: int) -> int:
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"address": recipient_of(r),
                                                    "state": "quarantined"})).rows)

    def second_page(r: int) -> int:
        with read_scope(sessions) as session:
            first = search(session, parse_query({"address": sender_of(r), "size": "20"}))
            if first.next_before is None:
                return 0
            return len(search(session, parse_query({
                "address": sender_of(r), "size": "20",
                "before": str(first.next_before)})).rows)

    def by_mailbox(r: int) -> int:
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"mailbox": str(boxes[r % len(boxes)])}))
                       .rows)

    def by_common_partner(r: int) -> int:
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"partner": partners[r % 5]})).rows)

    def by_rare_partner(r: int) -> int:
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"partner": partners[5 + r % 5]})).rows)

    def by_partner_without_mail(_r: int) -> int:
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"partner": partners[-1]})).rows)

    def by_day(r: int) -> int:
        day = (datetime.now(OFFICE_TIME) - timedelta(days=1 + r % 150)).date().isoformat()
        with read_scope(sessions) as session:
            return len(search(session, parse_query({"received_from": day,
                                                    "received_to": day})).rows)

    def audit_by_action(r: int) -> int:
        with read_scope(sessions) as session:
            return len(browse(session, parse_audit_query({"action": ACTIONS[r % 5]})).entries)

    def audit_by_day(r: int) -> int:
        day = (datetime.now(OFFICE_TIME) - timedelta(days=1 + r % 150)).date().isoformat()
        with read_scope(sessions) as session:
            return len(browse(session, parse_audit_query({"day_from": day, "day_to": day}))
                       .entries)

    def journey(r: int) -> int:
        with read_scope(sessions) as session:
            found = timeline(session, queue_id(1 + r % messages))
            return len(found.steps) if found else 0

    print("measuring (library calls, one read-only session each)", flush=True)
    measure("search by case reference", samples, by_case)
    measure("search by address (sender)", samples, by_sender)
    measure("search by address (recipient)", samples, by_recipient)
    measure("search by address and state", samples, by_address_and_state)
    measure("two pages by address (sender)", samples, second_page)
    measure("timeline", samples, journey)
    measure("search by shared mailbox", samples, by_mailbox)
    measure("search by partner (2 % of mail)", samples, by_common_partner)
    measure("search by partner (0.2 % of mail)", samples, by_rare_partner)
    measure("search by partner without mail", min(samples, 10), by_partner_without_mail)
    measure("search by one day", samples, by_day)
    measure("audit viewer by action", samples, audit_by_action)
    measure("audit viewer by one day", samples, audit_by_day)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--audit-entries", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    from tests.support.postgres import PostgresServer

    server = PostgresServer.start_migrated()
    try:
        run(server.create_database(), args.messages, args.audit_entries, args.samples)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
