"""``xgate audit verify`` finds tampering done directly in the database, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.cli.demo import DEMO_MAILBOX
from gateway.db import session_scope
from gateway.models import Direction
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

MSG = b"From: a@partner.example\r\nSubject: Hallo\r\n\r\nText\r\n"


@pytest.fixture
def activity(tmp_path: Path, database_url: str) -> Iterator[tuple[Path, Services]]:
    """An installation whose audit trail has real entries: intake, filing, outcomes."""
    config = init_installation(tmp_path / "inst")
    services = installation_services(installation_settings(config, database_url))
    with session_scope(services.sessions) as s:
        add_mailbox(s, DEMO_MAILBOX, "Kindertagespflege")
    for _ in range(3):
        with session_scope(services.sessions) as s:
            store_received(s, services.master_key, Envelope(
                Direction.INBOUND, "a@partner.example", [DEMO_MAILBOX], MSG),
                actor="test", now=services.clock())
    worker = Worker(services, "w1")
    while worker.process_one():
        pass
    yield config, services
    dispose(services)


def _verify(config: Path, database_url: str) -> tuple[int, str]:
    result = run_xgate("-c", config, "audit", "verify", env=db_env(database_url))
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout + result.stderr


def _count(services: Services) -> int:
    with session_scope(services.sessions) as s:
        return int(s.execute(text("SELECT count(*) FROM audit_log")).scalar_one())


def _sql(services: Services, statement: str, **params: object) -> None:
    with session_scope(services.sessions) as s:
        s.execute(text(statement), params)


def test_intact_chain(activity: tuple[Path, Services], database_url: str) -> None:
    config, services = activity
    entries = _count(services)
    assert entries >= 9  # received, delivered, outcome for each of three messages
    code, out = _verify(config, database_url)
    assert code == 0
    assert out.strip() == f"audit chain intact: {entries} entries"


def test_altered_entry_is_named(activity: tuple[Path, Services], database_url: str) -> None:
    config, services = activity
    _sql(services, "UPDATE audit_log SET detail = :detail WHERE seq = 3", detail='{"size":1}')
    code, out = _verify(config, database_url)
    assert code == 1
    assert "entry 3:" in out and "altered" in out
    assert "2 entries before it are intact" in out


def test_altered_actor_is_named(activity: tuple[Path, Services], database_url: str) -> None:
    config, services = activity
    _sql(services, "UPDATE audit_log SET actor = 'nobody' WHERE seq = 5")
    code, out = _verify(config, database_url)
    assert code == 1 and "entry 5:" in out


def test_deleted_last_entry_is_detected(activity: tuple[Path, Services],
                                        database_url: str) -> None:
    config, services = activity
    last = _count(services)
    _sql(services, f"DELETE FROM audit_log WHERE seq = {last}")
    code, out = _verify(config, database_url)
    assert code == 1
    assert f"entry {last}:" in out and "removed" in out


def test_deleted_tail_and_head_are_detected(activity: tuple[Path, Services],
                                            database_url: str) -> None:
    """Removing the last entries together with the head that names them is tampering too."""
    config, services = activity
    last = _count(services)
    _sql(services, f"DELETE FROM audit_log WHERE seq >= {last - 1}")
    _sql(services, "DELETE FROM audit_head")
    code, out = _verify(config, database_url)
    assert code == 1
    assert "head" in out and "removed" in out


def test_deleted_middle_entry_is_detected(activity: tuple[Path, Services],
                                          database_url: str) -> None:
    config, services = activity
    _sql(services, "DELETE FROM audit_log WHERE seq = 4")
    code, out = _verify(config, database_url)
    assert code == 1 and "entry 4" in out and "missing" in out


def test_show_lists_the_latest_entries(activity: tuple[Path, Services],
                                       database_url: str) -> None:
    config, services = activity
    result = run_xgate("-c", config, "audit", "show", "--limit", "2", env=db_env(database_url))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    last = _count(services)
    assert [line.split()[0] for line in lines] == [f"#{last - 1}", f"#{last}"]
    with session_scope(services.sessions) as s:
        qid = s.execute(text("SELECT queue_id FROM audit_log WHERE seq = 1")).scalar_one()
    per_message = run_xgate("-c", config, "audit", "show", "--queue-id", qid,
                            env=db_env(database_url)).stdout.strip().splitlines()
    assert len(per_message) >= 3
    assert all(qid in line for line in per_message)
    assert "received" in per_message[0]
