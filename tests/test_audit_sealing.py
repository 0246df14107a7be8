"""The audit trail's personal data is sealed under a key per month, on both backends.

The chain hashes the sealed form: ``xgate audit verify`` passes after a month's key is
destroyed (``xgate audit forget``), ``show`` then prints "(deleted)" where the personal data
was, and altering a sealed blob is found like altering any clear field. Migration 0012
carries a trail of the previous version over.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

import gateway.audit.chain
from crypto.at_rest import MasterKey
from gateway.cli.demo import DEMO_MAILBOX
from gateway.db import session_scope
from gateway.migrate import downgrade, upgrade
from gateway.models import Direction
from gateway.pipeline.worker import Worker
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services
from gateway.staff import actions as staff_actions
from mailboxes.directory import add_mailbox
from tests.support.cli import (
    db_env,
    dispose,
    init_installation,
    installation_services,
    installation_settings,
    run_xgate,
)

SENDER = "anna.muster@partner.example"
MSG = f"From: {SENDER}\r\nSubject: Hallo\r\n\r\nText\r\n".encode()
LAST_YEAR = datetime(2024, 1, 15, 9, 30, tzinfo=UTC)


@pytest.fixture
def installation(tmp_path: Path, database_url: str) -> Iterator[tuple[Path, Services]]:
    config = init_installation(tmp_path / "inst")
    services = installation_services(installation_settings(config, database_url))
    yield config, services
    dispose(services)


def _activity(services: Services) -> None:
    """Intake, filing and outcomes of two messages, and a staff change by a person."""
    with session_scope(services.sessions) as s:
        add_mailbox(s, DEMO_MAILBOX, "Kindertagespflege")
        staff_actions.create_user(s, "bert", "bert-sehr-geheim-123", actor="operator:carla",
                               addresses=["bert@jugendamt.example"])
    for _ in range(2):
        with session_scope(services.sessions) as s:
            store_received(s, services.master_key, Envelope(
                Direction.INBOUND, SENDER, [DEMO_MAILBOX], MSG, peer="192.0.2.77"),
                actor="smtp:inbound", now=services.clock())
    worker = Worker(services, "worker-1")
    while worker.process_one():
        pass


def _xgate(config: Path, database_url: str, *args: str) -> tuple[int, str]:
    result = run_xgate("-c", config, *args, env=db_env(database_url))
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout + result.stderr


def _raw(services: Services, sql: str) -> list[tuple[Any, ...]]:
    with session_scope(services.sessions) as s:
        return [tuple(row) for row in s.execute(text(sql))]


def _clear_text(services: Services) -> str:
    return "\n".join(f"{actor} {detail}" for actor, detail in
                     _raw(services, "SELECT actor, detail FROM audit_log"))


def test_personal_data_is_stored_sealed_and_shown_opened(
        installation: tuple[Path, Services], database_url: str) -> None:
    config, services = installation
    _activity(services)
    stored = _clear_text(services)
    for personal in (SENDER, "192.0.2.77", "carla", "bert@jugendamt.example", DEMO_MAILBOX):
        assert personal not in stored
    blobs = [bytes(b) for (b,) in _raw(services, "SELECT sealed FROM audit_log "
                                                 "WHERE sealed IS NOT NULL")]
    assert blobs and all(SENDER.encode() not in b for b in blobs)
    # What is not personal stays readable in the clear, for the auditor after deletion.
    assert '"direction":"inbound"' in stored and "worker-1" in stored

    assert _xgate(config, database_url, "audit", "verify")[0] == 0
    code, shown = _xgate(config, database_url, "audit", "show", "--limit", "100")
    assert code == 0
    for personal in (SENDER, "192.0.2.77", "operator:carla", "bert@jugendamt.example"):
        assert personal in shown
    assert "(deleted)" not in shown


def test_forgetting_a_month_keeps_the_chain_and_deletes_its_personal_data(
        installation: tuple[Path, Services], database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, services = installation
    with monkeypatch.context() as m:
        m.setattr(gateway.audit.chain, "utcnow", lambda: LAST_YEAR)
        _activity(services)
    code, out = _xgate(config, database_url, "audit", "forget", "--before", "2024-02")
    assert code == 1 and "--yes" in out  # irreversible: asked for explicitly
    assert _raw(services, "SELECT count(*) FROM audit_keys WHERE wrapped IS NULL") == [(0,)]

    code, out = _xgate(config, database_url, "audit", "forget", "--before", "2024-02", "--yes")
    assert code == 0, out
    assert "2024-01" in out
    assert _raw(services, "SELECT period FROM audit_keys WHERE wrapped IS NULL") == \
        [("2024-01",)]

    code, out = _xgate(config, database_url, "audit", "verify")
    assert code == 0, out
    code, shown = _xgate(config, database_url, "audit", "show", "--limit", "100")
    assert code == 0
    assert SENDER not in shown and "carla" not in shown
    assert "(deleted)" in shown
    assert "received" in shown and "worker-1" in shown  # the clear part stays
    # The deletion is on record itself, with the person who did it.
    assert shown.strip().splitlines()[-1].split()[3:5] == ["audit-keys-destroyed", "-"]
    assert '"periods":["2024-01"]' in shown.strip().splitlines()[-1]

    code, out = _xgate(config, database_url, "audit", "forget", "--before", "2999-01", "--yes")
    assert code != 0 and "future" in out


def test_another_master_key_is_refused_in_one_line_and_records_nothing(
        installation: tuple[Path, Services], database_url: str, tmp_path: Path) -> None:
    """A command run with a key other than the one the month's audit key was wrapped with
    (a wrong storage.master_key_file) fails closed, says which key, and changes nothing."""
    config, services = installation
    _activity(services)
    entries = _raw(services, "SELECT count(*) FROM audit_log")
    other = tmp_path / "other.key"
    MasterKey.generate().write(other)
    env = {**db_env(database_url), "XGATE_STORAGE__MASTER_KEY_FILE": str(other)}
    period = f"{services.clock():%Y-%m}"
    for command in (("mailbox", "add", "neu@jugendamt.example", "--name", "Neu"),
                    ("audit", "show")):
        result = run_xgate("-c", config, *command, env=env)
        assert result.returncode == 1, result.stdout
        assert result.stderr.strip().splitlines() == [
            f"xgate: error: the audit trail's key of {period} does not open with this master "
            "key (sealed with another master key): is storage.master_key_file the "
            "installation's key?"]
    assert _raw(services, "SELECT count(*) FROM audit_log") == entries
    assert _raw(services, "SELECT count(*) FROM mailboxes WHERE address = "
                          "'neu@jugendamt.example'") == [(0,)]
    assert _xgate(config, database_url, "audit", "verify")[0] == 0


def test_an_altered_sealed_blob_breaks_the_chain(
        installation: tuple[Path, Services], database_url: str) -> None:
    config, services = installation
    _activity(services)
    [(seq, blob)] = _raw(services, "SELECT seq, sealed FROM audit_log WHERE sealed IS NOT NULL "
                                   "ORDER BY seq DESC LIMIT 1")
    altered = bytearray(bytes(blob))
    altered[-1] ^= 1
    with session_scope(services.sessions) as s:
        s.execute(text("UPDATE audit_log SET sealed = :b WHERE seq = :seq"),
                  {"b": bytes(altered), "seq": seq})
    code, out = _xgate(config, database_url, "audit", "verify")
    assert code == 1 and f"entry {seq}:" in out and "altered" in out


def _engine_of(services: Services) -> Engine:
    engine: Engine = services.sessions.kw["bind"]
    return engine


def test_migration_carries_a_trail_of_the_previous_version_over(
        installation: tuple[Path, Services], database_url: str) -> None:
    config, services = installation
    _activity(services)
    engine = _engine_of(services)
    # The previous version's trail: personal data in the clear, hashed in the clear.
    downgrade(engine, "0011")
    old = _raw(services, "SELECT seq, entry_hash FROM audit_log ORDER BY seq")
    assert SENDER in _clear_text(services)

    code, out = _xgate(config, database_url, "db", "upgrade")
    assert code == 0, out
    assert SENDER not in _clear_text(services)
    code, out = _xgate(config, database_url, "audit", "verify")
    assert code == 0, out
    assert out.strip() == f"audit chain intact: {len(old) + 1} entries"
    code, shown = _xgate(config, database_url, "audit", "show", "--limit", "1000")
    assert SENDER in shown and "operator:carla" in shown
    last = shown.strip().splitlines()[-1]
    assert "audit-resealed" in last and "migration:0012" in last
    old_seq, old_hash = old[-1]
    assert f'"old_head_seq":{old_seq}' in last and f'"old_head_hash":"{old_hash}"' in last


def test_migration_refuses_a_broken_chain(installation: tuple[Path, Services]) -> None:
    _, services = installation
    _activity(services)
    engine = _engine_of(services)
    downgrade(engine, "0011")
    with session_scope(services.sessions) as s:
        s.execute(text("UPDATE audit_log SET detail = '{}' WHERE seq = 2"))
    with pytest.raises(RuntimeError, match="broken at entry 2"):
        upgrade(engine)
    # Nothing of the conversion stays behind: the schema is still the previous version's.
    with session_scope(services.sessions) as s:
        revision = s.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert revision == "0011"
