"""The scheduler's passes over 100,000 open tickets, on SQLite and on PostgreSQL: the SLA pass
(deadlines, marks, escalations) and the plausibility pass (all five rules, findings stored and
resolved), time per pass and the statements each issues.

The baseline, measured in the same run and the same way, is a plain SELECT of the same rows
(the open tickets' columns the rules read, and their deadline rows): what reading the data
costs before any rule runs.

    python benchmarks/scheduler_pass.py [--tickets N] [--passes P]
                                        [--backend sqlite|postgresql|both]

Cases: the first pass (catch-up: every ticket's deadlines computed from its history, the
first findings and escalations), steady passes (nothing changed since the last one), and a
steady pass after 1,000 tickets changed (a state change or a reply each). Goal: under 2 s per
steady pass on the 2-core machine, with a number of statements that does not grow with the
number of tickets. Statements are counted per execute call; an executemany (the bulk insert
or update of findings and marks) counts as one.

The tickets are written in bulk in one mailbox with opening hours Mon-Fri, created over the
last two weeks; 80 % have a reply, 10 % wait on the citizen, 5 % share a case reference with
another requester's ticket.
"""

# ruff: noqa: E402 - the repository root goes on sys.path before the project imports below

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/scheduler_pass.py
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, event, func, insert, select, text

from crypto.at_rest import MasterKey
from gateway.db import make_engine, make_session_factory, session_scope, table_of
from gateway.migrate import upgrade
from gateway.models import Message
from gateway.settings import Settings, load_settings
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.scheduler.jobs import JobContext
from mailboxes.service_levels import config
from mailboxes.service_levels.jobs import sla_job
from mailboxes.service_levels.models import Escalation, TicketServiceLevel
from mailboxes.service_levels.plausibility_pass import run_plausibility_pass
from mailboxes.tickets.models import Article, HistoryEntry, Ticket

BOX = "kita@jugendamt.example"
BATCH = 5000
# A Friday afternoon: the tickets of the last two weeks are open, some near their deadline.
NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


def settings_for(work: Path, url: str) -> Settings:
    key = work / "master.key"
    MasterKey.generate().write(key)
    return load_settings(None, data_dir=str(work), database={"url": url},
                         storage={"master_key_file": str(key)}, logging={"level": "WARNING"})


def populate(settings: Settings, count: int) -> None:
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        box = add_mailbox(s, BOX, "Kindertagespflege")
        add_user(s, "lena", "ein sehr langes passwort")
        add_member(s, BOX, "lena", MemberRole.LEAD, actor="bench", now=NOW)
        levels = config.parse_form(config.ServiceLevelForm(
            hours={d: "08:00-16:00" for d in ("mon", "tue", "wed", "thu", "fri")},
            first_response_hours="16", resolution_hours="120", warning_hours="2"))
        config.save(s, box, levels, actor="bench", now=NOW)
        box_id = box.id
    rng = random.Random(14)
    tickets, history, articles, messages = (table_of(Ticket), table_of(HistoryEntry),
                                            table_of(Article), table_of(Message))
    made = time.monotonic()
    for first in range(1, count + 1, BATCH):
        rows: list[dict[str, Any]] = []
        hist: list[dict[str, Any]] = []
        arts: list[dict[str, Any]] = []
        msgs: list[dict[str, Any]] = []
        for n in range(first, min(count, first + BATCH - 1) + 1):
            at = NOW - timedelta(seconds=rng.randrange(14 * 24 * 3600))
            state = "waiting" if rng.random() < 0.1 else rng.choice(["new", "open"])
            rows.append({"id": n, "mailbox_id": box_id, "number": f"XG-2026-{n:06d}",
                         "state": state, "assignee_id": None,
                         "requester": f"eltern{n}@web.example", "subject_sealed": b"x",
                         "linked_ticket_id": None, "created_at": at, "updated_at": at,
                         "channel": "mail"})
            hist.append({"ticket_id": n, "at": at, "actor": "x", "action": "created",
                         "detail": None})
            if rng.random() < 0.8:
                replied = at + timedelta(hours=rng.randrange(1, 30))
                if replied < NOW:
                    queue_id = f"Q{n:011d}"
                    hist.append({"ticket_id": n, "at": replied, "actor": "lena",
                                 "action": "reply", "detail": None})
                    arts.append({"ticket_id": n, "kind": "reply", "created_at": replied,
                                 "author": "lena", "queue_id": queue_id})
                    if rng.random() < 0.05:
                        msgs.append({"queue_id": queue_id, "case": n % 1000})
            if state == "waiting":
                hist.append({"ticket_id": n, "at": at + timedelta(minutes=30), "actor": "lena",
                             "action": "state",
                             "detail": json.dumps({"from": "open", "to": "waiting"})})
        with session_scope(sessions) as s:
            s.execute(insert(tickets), rows)
            s.execute(insert(history), hist)
            if arts:
                s.execute(insert(articles), arts)
            if msgs:
                s.execute(insert(messages), [{
                    "queue_id": m["queue_id"], "direction": "outbound", "state": "delivered",
                    "mail_from": BOX, "size": 1, "attempts": 0, "received_at": NOW,
                    "updated_at": NOW, "next_attempt_at": NOW,
                    "case_reference": f"51.2-{m['case']}/2026"} for m in msgs])
    print(f"  {count} tickets written in {time.monotonic() - made:.0f} s", file=sys.stderr)
    if settings.database.url.startswith("postgresql"):
        with session_scope(sessions) as s:
            s.execute(text("ANALYZE"))
    engine.dispose()


@contextmanager
def counting(engine: Engine) -> Iterator[list[int]]:
    found = [0]

    def count(*_args: object) -> None:
        found[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", count)


def timed(engine: Engine, work: Callable[[], object]) -> tuple[float, int]:
    with counting(engine) as statements:
        began = time.perf_counter()
        work()
        return time.perf_counter() - began, statements[0]


def run(backend: str, url_for: Callable[[Path], str], count: int, passes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="xgate-bench-scheduler-") as tmp:
        work = Path(tmp)
        settings = settings_for(work, url_for(work))
        engine = make_engine(settings)
        if backend == "sqlite":
            upgrade(engine)
        populate(settings, count)
        sessions = make_session_factory(engine)
        clock = [NOW]
        last: dict[str, datetime | None] = {"sla": None, "plausibility": None}

        master = MasterKey.load(work / "master.key")

        def sla() -> None:
            # The job as the scheduler runs it: the pass, then escalating new breaches
            # (audit entries, the notice mail to the lead).
            with session_scope(sessions) as s:
                sla_job(JobContext(session=s, settings=settings, master_key=master,
                                   now=clock[0], actor="bench", last_run_at=last["sla"]))
            last["sla"] = clock[0]

        def plausibility() -> None:
            with session_scope(sessions) as s:
                run_plausibility_pass(s, settings, now=clock[0],
                                      last_run_at=last["plausibility"])
            last["plausibility"] = clock[0]

        def baseline() -> None:
            with session_scope(sessions) as s:
                s.execute(select(Ticket.id, Ticket.mailbox_id, Ticket.state, Ticket.channel,
                                 Ticket.updated_at, Ticket.requester)
                          .where(Ticket.state != "closed")).all()
                s.execute(select(*table_of(TicketServiceLevel).c)).all()

        def change(n: int) -> None:
            rng = random.Random(n)
            with session_scope(sessions) as s:
                ids = rng.sample(range(1, count + 1), n)
                s.execute(insert(table_of(HistoryEntry)), [
                    {"ticket_id": i, "at": clock[0], "actor": "lena", "action": "state",
                     "detail": json.dumps({"from": "new", "to": "open"})} for i in ids])

        print(f"\n{backend}: {count} open tickets, {passes} steady passes")
        print(f"  {'case':<44} {'seconds':>8} {'statements':>11}")

        def show(name: str, seconds: float, statements: int) -> None:
            print(f"  {name:<44} {seconds:8.2f} {statements:>11}")

        with session_scope(sessions) as s:
            escalated_before = s.scalar(select(func.count()).select_from(Escalation)) or 0
        show("first SLA pass (catch-up, escalations)", *timed(engine, sla))
        with session_scope(sessions) as s:
            escalated = (s.scalar(select(func.count()).select_from(Escalation)) or 0)
        print(f"    ({escalated - escalated_before} deadlines escalated in the first pass)")
        show("first plausibility pass (catch-up)", *timed(engine, plausibility))
        baselines, slas, plaus = [], [], []
        for _ in range(passes):
            clock[0] += timedelta(minutes=5)
            baselines.append(timed(engine, baseline))
            slas.append(timed(engine, sla))
            plaus.append(timed(engine, plausibility))
        for name, results in (("baseline: plain SELECT of the same rows", baselines),
                              ("steady SLA pass", slas),
                              ("steady plausibility pass", plaus)):
            show(name + " (median)", statistics.median(r[0] for r in results),
                 max(r[1] for r in results))
        clock[0] += timedelta(minutes=5)
        change(1000)
        show("SLA pass after 1,000 tickets changed", *timed(engine, sla))
        show("plausibility pass after that", *timed(engine, plausibility))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        run("sqlite", lambda work: f"sqlite:///{work / 'xgate.db'}", args.tickets, args.passes)
    if args.backend in ("postgresql", "both"):
        from tests.support.postgres import PostgresServer

        server = PostgresServer.start_migrated()
        try:
            run("postgresql", lambda _work: server.create_database(), args.tickets,
                args.passes)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
