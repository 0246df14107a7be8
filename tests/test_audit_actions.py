"""Audit actions are one enumeration: what the trail holds is a member, anything else is refused
before it is written, and a member hashes exactly like the string stored before it existed."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from gateway import audit
from gateway.audit import AuditAction
from gateway.db import session_scope
from gateway.models import AuditEntry, AuditHead
from gateway.pipeline.worker import Worker
from gateway.services import Services
from gateway.settings import RelayRoute
from tests.support.pipeline import enqueue

MSG = (b"From: a@partner.example\r\nTo: kita@jugendamt.example\r\nSubject: Hallo\r\n"
       b"Message-ID: <1@partner.example>\r\n\r\nBody line\r\n")


def test_values_are_distinct_stored_strings() -> None:
    values = [a.value for a in AuditAction]
    assert len(values) == len(set(values))
    # audit_log.action is String(64); every value is a lower-case, hyphenated word.
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", v) and len(v) <= 64 for v in values)


def test_a_member_hashes_like_the_string_stored_before() -> None:
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for action in AuditAction:
        assert audit.entry_hash(audit.GENESIS_HASH, 7, at, "w1", action, "Q1", "{}") == \
            audit.entry_hash(audit.GENESIS_HASH, 7, at, "w1", action.value, "Q1", "{}")


def test_an_unknown_action_is_refused_and_nothing_is_written(services: Services) -> None:
    with session_scope(services.sessions) as s:
        audit.record(s, actor="test", action=AuditAction.RETRY, queue_id="Q1")
    with session_scope(services.sessions) as s:
        with pytest.raises(ValueError, match="unknown audit action 'made-up'"):
            audit.record(s, actor="test", action="made-up", queue_id="Q1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown audit action"):
            audit.record_many(s, [audit.Event("test", AuditAction.RETRY, "Q1"),
                                  audit.Event("test", "retried", "Q1")])  # type: ignore[arg-type]
    with session_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1
        head = s.get(AuditHead, 1)
        assert head is not None and head.seq == 1
        assert audit.verify(s).ok


def test_every_action_a_run_records_is_a_member(services: Services) -> None:
    """Intake, relaying, a bounce with its DSN: all that lands in audit_log reads back as members,
    and the chain verifies."""
    services.settings.delivery.routes = [RelayRoute(domain="jugendamt.example",
                                                    host="127.0.0.1", port=1)]
    enqueue(services, ["kita@jugendamt.example"], MSG, mail_from="a@partner.example")
    enqueue(services, ["nobody@nowhere.example"], MSG, mail_from="a@partner.example")
    worker = Worker(services, "w1")
    while worker.process_one():
        pass
    with session_scope(services.sessions) as s:
        stored = set(s.scalars(select(AuditEntry.action)).all())
        assert {AuditAction(a) for a in stored} >= {
            AuditAction.RECEIVED, AuditAction.DELIVERED, AuditAction.REJECTED,
            AuditAction.BOUNCED}
        assert audit.verify(s).ok
