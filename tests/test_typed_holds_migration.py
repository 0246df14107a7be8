"""Migration 0011 carries what held messages wait for (once only the start of their reason)
and a report's case (once only in its facts JSON) into columns, and a downgrade gives the
older code back what it reads; on SQLite and PostgreSQL. tests/test_migrations.py checks
the schema; this checks the data, and that the rules find the carried-over rows."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from crypto.at_rest import MasterKey
from gateway.consent.holds import held_reports, recheck_case
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.migrate import current_revision, downgrade, upgrade
from gateway.models import HoldKind
from gateway.queue.held import requeue_held_for
from gateway.settings import Settings
from tests.support.postgres import PostgresServer

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CASE = "51.2 - 1234/2026"
KEY = "51.2 - 1234/2026".casefold()
OTHER_CASE = "ASD 7/2026"

KEY_REASON = ("encryption is required but no usable key exists: needs an approved, valid "
              "OpenPGP key for x@partner.example")
CONSENT_REASON = "consent: berater@stelle.example: no current release covers this message"
STATUTORY_REASON = ("consent: statutory transfer on § 8a SGB VIII: berater@stelle.example: "
                    "approval by a second person other than the sender is required")


def _backends() -> list[Any]:
    backends: list[Any] = ["sqlite"]
    if os.environ.get("XGATE_TEST_SKIP_POSTGRES") != "1":
        backends.append(pytest.param("postgresql", marks=pytest.mark.postgres))
    return backends


@pytest.fixture(params=_backends())
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A new, empty database, built up to 0010 by the migrations."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'holds.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(migrated=False)
    # The audit trail's entries (a re-check records one) are sealed under the master key.
    key = tmp_path / "master.key"
    MasterKey.generate().write(key)
    built = make_engine(Settings.model_validate(
        {"database": {"url": url}, "storage": {"master_key_file": str(key)}}))
    upgrade(built, "0010")
    yield built
    built.dispose()


# (queue id, state, reason, facts) as the code of revision 0010 left messages.
ROWS: list[tuple[str, str, str | None, dict[str, str] | str | None]] = [
    ("HKEY", "held", KEY_REASON, {"plan:x@partner.example": "hold"}),
    ("HCONSENT", "held", CONSENT_REASON,
     {"consent:case": CASE, "consent:case_key": KEY, "consent:category": "Hilfeplan"}),
    ("HSTATUTORY", "held", STATUTORY_REASON,
     {"consent:case": OTHER_CASE, "consent:case_key": OTHER_CASE.casefold(),
      "consent:legal_basis": "§ 8a SGB VIII"}),
    # Held, but not by anything with a kind (an operator's hand, a damaged reason).
    ("HOTHER", "held", "kept for inspection", None),
    # Not held any more: the words stay, a kind would claim it still waits.
    ("DCONSENT", "deferred", "consent: re-queued later", {"consent:case": CASE,
                                                           "consent:case_key": KEY}),
    # The case written only in its shown form (normalised on the way).
    ("SHOWN", "delivered", None, {"consent:case": "  ASD  7/2026 "}),
    ("DAMAGED", "delivered", None, '{"consent:case": broken'),
    ("PLAIN", "delivered", None, None),
]


def _insert(engine: Engine) -> None:
    with engine.begin() as conn:
        for n, (queue_id, state, reason, facts) in enumerate(ROWS, start=1):
            conn.execute(text(
                "INSERT INTO messages (id, queue_id, direction, state, mail_from, peer, helo,"
                " size, received_at, updated_at, next_attempt_at, attempts, reason, facts)"
                " VALUES (:id, :qid, 'outbound', :state, 'bob@jugendamt.example', '', '', 10,"
                " :at, :at, :at, 1, :reason, :facts)"),
                {"id": n, "qid": queue_id, "state": state, "reason": reason,
                 "at": NOW + timedelta(minutes=n),
                 "facts": facts if isinstance(facts, str) or facts is None
                 else json.dumps(facts)})
            conn.execute(text(
                "INSERT INTO message_recipients (message_id, address, state) "
                "VALUES (:id, :address, 'pending')"),
                {"id": n, "address": "x@partner.example" if queue_id == "HKEY"
                 else "berater@stelle.example"})


def _columns(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT queue_id, hold_kind, case_reference FROM messages"))
        return {qid: (kind, case) for qid, kind, case in rows}


def test_hold_kinds_and_cases_are_carried_over(engine: Engine) -> None:
    _insert(engine)
    upgrade(engine, "0011")
    assert _columns(engine) == {
        "HKEY": ("key_missing", None),
        "HCONSENT": ("consent", KEY),
        "HSTATUTORY": ("statutory_approval", OTHER_CASE.casefold()),
        "HOTHER": (None, None),
        "DCONSENT": (None, KEY),
        "SHOWN": (None, "asd 7/2026"),
        "DAMAGED": (None, None),
        "PLAIN": (None, None),
    }
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("messages")}
    assert indexes["ix_messages_hold_kind"] == ["hold_kind", "received_at"]
    assert indexes["ix_messages_case_reference"] == ["case_reference"]
    # The words for people are untouched.
    with engine.connect() as conn:
        reasons = {q: r for q, r in conn.execute(text("SELECT queue_id, reason FROM messages"))}
    assert reasons == {qid: reason for qid, _, reason, _ in ROWS}


def test_the_rules_find_carried_over_holds(engine: Engine) -> None:
    _insert(engine)
    upgrade(engine, master_key=MasterKey.generate)
    sessions = make_session_factory(engine)
    with read_scope(sessions) as s:
        assert [(r.queue_id, r.kind) for r in held_reports(s)] == [
            ("HCONSENT", HoldKind.CONSENT), ("HSTATUTORY", HoldKind.STATUTORY_APPROVAL)]
    with session_scope(sessions) as s:
        # A release for the case wakes its report held for consent (and the deferred one
        # only when queued ones are asked for), not the other case's.
        assert recheck_case(s, CASE, actor="test", now=NOW, why="release added") == [
            "HCONSENT"]
        assert requeue_held_for(s, ["x@partner.example"], actor="test", now=NOW,
                                why="key approved") == ["HKEY"]
    assert {qid: kind for qid, (kind, _) in _columns(engine).items() if kind} == {
        "HSTATUTORY": "statutory_approval"}


def test_a_downgrade_puts_the_case_back_into_the_facts(engine: Engine) -> None:
    _insert(engine)
    upgrade(engine, "0011")
    # A report recorded after the upgrade: its case is only in the column.
    with engine.begin() as conn:
        conn.execute(text("UPDATE messages SET case_reference = 'neu 1/2026', "
                          "facts = :facts WHERE queue_id = 'PLAIN'"),
                     {"facts": json.dumps({"consent:case": "NEU 1/2026"})})
    downgrade(engine, "0010")
    assert current_revision(engine) == "0010"
    assert {c["name"] for c in inspect(engine).get_columns("messages")}.isdisjoint(
        {"hold_kind", "case_reference"})
    with engine.connect() as conn:
        facts: dict[str, Any] = {
            q: f for q, f in conn.execute(text("SELECT queue_id, facts FROM messages"))}
    assert json.loads(facts["PLAIN"]) == {"consent:case": "NEU 1/2026",
                                          "consent:case_key": "neu 1/2026"}
    assert json.loads(facts["SHOWN"])["consent:case_key"] == "asd 7/2026"
    assert json.loads(facts["HCONSENT"])["consent:case_key"] == KEY
    assert facts["DAMAGED"] == '{"consent:case": broken'
    assert facts["HOTHER"] is None
