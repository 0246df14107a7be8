"""``xgate queue list/show/retry`` in a subprocess, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import audit
from gateway.audit.view import opened
from gateway.cli.demo import DEMO_MAILBOX
from gateway.db import session_scope
from gateway.delivery.transport import RecordingTransport, TransportError
from gateway.models import AuditEntry, Direction, Message, MessageState
from gateway.pipeline.worker import Worker
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services
from mailboxes.directory import add_mailbox
from tests.support.cli import (
    db_env,
    dispose,
    init_installation,
    installation_services,
    installation_settings,
    run_xgate,
)

BODY = b"Gutachten zu Familie M., streng vertraulich"
MSG = (b"From: a@partner.example\r\nTo: kindertagespflege@jugendamt.example\r\n"
       b"Subject: Stellungnahme Kind M.\r\n\r\n" + BODY + b"\r\n")


@dataclass
class Installed:
    config: Path
    env: dict[str, str]
    services: Services

    def xgate(self, *args: str, **env: str) -> tuple[int, str, str]:
        result = run_xgate("-c", self.config, *args, env={**self.env, **env})
        return result.returncode, result.stdout, result.stderr

    def enqueue(self, rcpt: str) -> str:
        with session_scope(self.services.sessions) as s:
            return store_received(s, self.services.master_key, Envelope(
                Direction.INBOUND, "a@partner.example", [rcpt], MSG),
                actor="test", now=self.services.clock()).queue_id

    def message(self, queue_id: str) -> Message:
        with session_scope(self.services.sessions) as s:
            return s.scalars(select(Message).where(Message.queue_id == queue_id)).one()


@pytest.fixture
def installed(tmp_path: Path, database_url: str) -> Iterator[Installed]:
    config = init_installation(tmp_path / "inst")
    # Everything for partner.example goes to a relay that the test transport fails at will.
    settings = installation_settings(config, database_url, delivery={
        "routes": [{"domain": "partner.example", "host": "127.0.0.1", "port": 1}]})
    services = installation_services(settings)
    with session_scope(services.sessions) as s:
        add_mailbox(s, DEMO_MAILBOX, "Kindertagespflege")
    yield Installed(config, db_env(database_url), services)
    dispose(services)


def _transport(services: Services) -> RecordingTransport:
    assert isinstance(services.transport, RecordingTransport)
    return services.transport


def _deferred(inst: Installed) -> str:
    qid = inst.enqueue("x@partner.example")
    _transport(inst.services).error = TransportError("connection refused")
    assert Worker(inst.services, "w1").process_one()
    assert inst.message(qid).state == MessageState.DEFERRED
    return qid


def test_list_shows_messages_and_filters_by_state(installed: Installed) -> None:
    delivered = installed.enqueue(DEMO_MAILBOX)
    worker = Worker(installed.services, "w1")
    assert worker.process_one()
    # The mailbox's receipt to the sender goes out before the next message is queued.
    assert worker.process_one()
    deferred = _deferred(installed)
    code, out, err = installed.xgate("queue", "list")
    assert code == 0, err
    assert delivered in out and deferred in out
    assert "connection refused" in out
    code, out, _ = installed.xgate("queue", "list", "--state", "deferred")
    assert deferred in out and delivered not in out
    code, out, _ = installed.xgate("queue", "list", "--state", "held")
    assert code == 0 and "no messages in state held" in out


def test_show_gives_envelope_recipients_and_audit_but_no_content(installed: Installed) -> None:
    qid = _deferred(installed)
    code, out, err = installed.xgate("queue", "show", qid.lower())
    assert code == 0, err
    assert f"queue id:      {qid}" in out
    assert "state:         deferred" in out
    assert "x@partner.example: pending" in out
    assert "connection refused" in out
    assert "received" in out and "deferred" in out.split("audit trail:")[1]
    assert BODY.decode() not in out
    assert "Stellungnahme" not in out


def test_show_gives_the_crypto_facts(installed: Installed) -> None:
    qid = installed.enqueue(DEMO_MAILBOX)
    assert Worker(installed.services, "w1").process_one()
    code, out, err = installed.xgate("queue", "show", qid)
    assert code == 0, err
    facts = out.split("facts:")[1].split("recipients:")[0]
    assert "  encryption: none" in facts and "  signature: none" in facts


def test_show_unknown_queue_id(installed: Installed) -> None:
    code, _, err = installed.xgate("queue", "show", "DOESNOTEXIST")
    assert code == 1
    assert err.strip() == "xgate: error: no message with queue id 'DOESNOTEXIST'"


def test_retry_makes_a_deferred_message_runnable_and_records_the_operator(
        installed: Installed) -> None:
    qid = _deferred(installed)
    code, out, err = installed.xgate("queue", "retry", qid, USER="alice", SUDO_USER="")
    assert code == 0, err
    assert "retry by alice" in out
    message = installed.message(qid)
    assert message.state == MessageState.RECEIVED
    assert message.next_attempt_at <= installed.services.clock()
    with session_scope(installed.services.sessions) as s:
        [last] = opened(s, s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)))
        assert (last.action, last.actor, last.queue_id) == ("retry", "operator:alice", qid)
        assert '"previous_state":"deferred"' in last.detail
    # The next worker run picks it up at once; this time the relay answers.
    _transport(installed.services).error = None
    assert Worker(installed.services, "w1").process_one()
    assert installed.message(qid).state == MessageState.DELIVERED
    code, out, _ = installed.xgate("audit", "verify")
    assert code == 0, out


def test_retry_names_the_person_behind_sudo(installed: Installed) -> None:
    qid = _deferred(installed)
    code, out, _ = installed.xgate("queue", "retry", qid, USER="root", SUDO_USER="bob")
    assert code == 0 and "retry by bob" in out


@pytest.mark.parametrize("state", [MessageState.HELD, MessageState.FAILED])
def test_retry_releases_held_and_failed(installed: Installed,
                                                    state: MessageState) -> None:
    qid = installed.enqueue(DEMO_MAILBOX)
    with session_scope(installed.services.sessions) as s:
        message = s.scalars(select(Message).where(Message.queue_id == qid)).one()
        message.state, message.reason = state, "set by the test"
    code, _, err = installed.xgate("queue", "retry", qid)
    assert code == 0, err
    assert Worker(installed.services, "w1").process_one()
    assert installed.message(qid).state == MessageState.DELIVERED


def test_quarantined_message_is_not_released_by_retry(installed: Installed) -> None:
    qid = installed.enqueue(DEMO_MAILBOX)
    with session_scope(installed.services.sessions) as s:
        message = s.scalars(select(Message).where(Message.queue_id == qid)).one()
        message.state, message.reason = MessageState.QUARANTINED, "set by the test"
    code, _, err = installed.xgate("queue", "retry", qid)
    assert code == 1
    assert "released only by two admins" in err
    assert installed.message(qid).state == MessageState.QUARANTINED


def test_delivered_message_cannot_be_retried(installed: Installed) -> None:
    qid = installed.enqueue(DEMO_MAILBOX)
    assert Worker(installed.services, "w1").process_one()
    code, _, err = installed.xgate("queue", "retry", qid)
    assert code == 1
    assert err.strip() == (f"xgate: error: message {qid} was delivered; a delivered message "
                           "cannot be retried")
    with session_scope(installed.services.sessions) as s:
        assert not s.scalars(select(AuditEntry).where(AuditEntry.action == "retry")).all()
        assert audit.verify(s).ok


def test_waiting_message_needs_no_retry(installed: Installed) -> None:
    qid = installed.enqueue(DEMO_MAILBOX)
    code, _, err = installed.xgate("queue", "retry", qid)
    assert code == 1 and "waits for a worker already" in err


def test_retry_unknown_queue_id(installed: Installed) -> None:
    code, _, err = installed.xgate("queue", "retry", "0000000000000000")
    assert code == 1 and "no message with queue id" in err


LIST_FIELDS = {"queue_id", "state", "reason", "direction", "sender", "recipients", "size",
               "received_at", "updated_at", "next_attempt_at", "attempts"}
SHOW_FIELDS = LIST_FIELDS | {"peer", "helo", "auth_user", "claimed_by", "facts", "audit"}


def test_list_json_gives_envelopes_states_and_errors(installed: Installed) -> None:
    delivered = installed.enqueue(DEMO_MAILBOX)
    worker = Worker(installed.services, "w1")
    assert worker.process_one()
    assert worker.process_one()  # the mailbox's receipt to the sender
    deferred = _deferred(installed)
    code, out, err = installed.xgate("queue", "list", "--json")
    assert code == 0, err
    all_rows = json.loads(out)
    assert [r["sender"] for r in all_rows].count("") == 1  # the receipt (null sender)
    rows = [r for r in all_rows if r["sender"]]
    assert [r["queue_id"] for r in rows] == [delivered, deferred]
    assert all(set(r) == LIST_FIELDS for r in rows)
    first, second = rows
    assert (first["state"], first["direction"], first["sender"]) == (
        "delivered", "inbound", "a@partner.example")
    assert first["reason"] is None and first["size"] == len(MSG)
    [rcpt] = first["recipients"]
    assert (rcpt["address"], rcpt["state"]) == (DEMO_MAILBOX, "delivered")
    assert datetime.fromisoformat(rcpt["delivered_at"]).utcoffset() == timedelta(0)
    assert second["state"] == "deferred" and second["attempts"] == 1
    assert "connection refused" in second["reason"]
    assert second["recipients"][0]["state"] == "pending"
    received = datetime.fromisoformat(second["received_at"])
    assert received.utcoffset() == timedelta(0)
    assert datetime.fromisoformat(second["next_attempt_at"]) > received
    assert BODY.decode() not in out and "Stellungnahme" not in out


def test_list_json_filters_and_is_an_empty_array_when_nothing_matches(
        installed: Installed) -> None:
    deferred = _deferred(installed)
    code, out, _ = installed.xgate("queue", "list", "--state", "deferred", "--json")
    assert code == 0 and [r["queue_id"] for r in json.loads(out)] == [deferred]
    code, out, _ = installed.xgate("queue", "list", "--state", "held", "--json")
    assert code == 0 and json.loads(out) == []


def test_show_json_gives_facts_and_audit_trail_but_no_content(installed: Installed) -> None:
    qid = installed.enqueue(DEMO_MAILBOX)
    assert Worker(installed.services, "w1").process_one()
    code, out, err = installed.xgate("queue", "show", "--json", qid.lower())
    assert code == 0, err
    shown = json.loads(out)
    assert set(shown) == SHOW_FIELDS
    assert shown["queue_id"] == qid and shown["state"] == "delivered"
    assert shown["facts"]["encryption"] == "none"
    assert shown["claimed_by"] is None
    actions = [e["action"] for e in shown["audit"]]
    assert actions[0] == "received" and "delivered" in actions
    assert [e["seq"] for e in shown["audit"]] == sorted(e["seq"] for e in shown["audit"])
    assert all(isinstance(e["detail"], dict) for e in shown["audit"])
    # The list fields are the same in both.
    code, listed, _ = installed.xgate("queue", "list", "--json")
    assert {k: shown[k] for k in LIST_FIELDS} == json.loads(listed)[0]
    assert BODY.decode() not in out and "Stellungnahme" not in out


def test_show_json_of_an_unknown_queue_id_is_an_error(installed: Installed) -> None:
    code, out, err = installed.xgate("queue", "show", "--json", "DOESNOTEXIST")
    assert code == 1 and out == ""
    assert "no message with queue id" in err
