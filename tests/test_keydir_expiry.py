"""Expiry monitoring (gateway.keydir.expiry): which keys, the warnings, the gauge."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.app import create_app
from crypto.at_rest import MasterKey
from gateway.clock import FakeClock
from gateway.db import make_engine, make_session_factory, session_scope
from gateway.keydir import keys, partners
from gateway.keydir.expiry import ExpiryWatch, KeyExpiryCollector, check_expiry, expiring
from gateway.keydir.keys import KeySource, import_partner_keys
from gateway.keydir.models import KeyKind
from gateway.keydir.own_keys import import_own_smime, retire_own_key
from gateway.settings import Settings
from tests.support.waiting import wait_until
from tests.test_keydir_certs import key_pem, make_cert, pem, rsa_key, utcnow

NOW = utcnow()


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings)
    yield make_session_factory(engine)
    engine.dispose()


def _partner_key(session: Session, label: str, days: int, approve: bool = True) -> int:
    cert = make_cert(f"{label}@partner.example", key=rsa_key(3072, label),
                     not_before=NOW - timedelta(days=100),
                     not_after=NOW + timedelta(days=days, hours=1))
    return import_partner_keys(session, pem(cert), actor="a", source=KeySource.IMPORT,
                               source_detail="f", approve=approve, now=NOW)[0].key.id


def _own_key(session: Session, master: MasterKey, label: str, days: int) -> int:
    key = rsa_key(3072, label)
    data = pem(make_cert("asd@jugendamt.example", key=key,
                         not_after=NOW + timedelta(days=days, hours=1))) + key_pem(key)
    return import_own_smime(session, master, "asd@jugendamt.example", data, actor="a",
                            now=NOW).id


@pytest.fixture
def populated(sessions: sessionmaker[Session]) -> dict[str, int]:
    master = MasterKey.generate()
    with session_scope(sessions) as session:
        partners.add_partner(session, "Partner", actor="a", now=NOW,
                             patterns=["partner.example"])
        ids = {
            "soon": _partner_key(session, "soon", 10),
            "later": _partner_key(session, "later", 40),
            "pending": _partner_key(session, "pending", 5, approve=False),
            "revoked": _partner_key(session, "revoked", 5),
            "own": _own_key(session, master, "own-a", 20),
            "retired": _own_key(session, master, "own-b", 3),
            "expired": _partner_key(session, "expired", -3),
        }
        keys.revoke_key(session, ids["revoked"], "a", NOW)
        retire_own_key(session, ids["retired"], actor="a", now=NOW)
    return ids


def test_expiring_lists_keys_in_use_soonest_first(sessions: sessionmaker[Session],
                                                  populated: dict[str, int]) -> None:
    with session_scope(sessions) as session:
        found = expiring(session, NOW, 30)
        assert [(k.owner, k.id, k.days_left) for k in found] == [
            ("partner", populated["soon"], 10), ("own", populated["own"], 20)]
        assert found[0].holder == "Partner" and found[0].kind is KeyKind.SMIME
        assert found[0].addresses == ("soon@partner.example",)
        assert found[1].holder == "asd@jugendamt.example"
        assert [k.id for k in expiring(session, NOW, 60)][-1] == populated["later"]
        assert expiring(session, NOW, 1) == []


def test_check_expiry_warns_once_per_key(sessions: sessionmaker[Session],
                                         populated: dict[str, int],
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.keydir.expiry")
    with session_scope(sessions) as session:
        found = check_expiry(session, NOW, 30)
    warnings = [r for r in caplog.records if r.name == "gateway.keydir.expiry"]
    assert len(warnings) == len(found) == 2
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "partner Partner: smime key" in warnings[0].getMessage()
    assert "soon@partner.example" in warnings[0].getMessage()
    assert getattr(warnings[1], "key_owner", None) == "own"


def test_gauge_counts_expiring_keys(sessions: sessionmaker[Session],
                                    populated: dict[str, int]) -> None:
    registry = CollectorRegistry()
    registry.register(KeyExpiryCollector(sessions, FakeClock(NOW), 30))
    text = generate_latest(registry).decode()
    assert 'xgate_keys_expiring{kind="smime",owner="partner"} 1.0' in text
    assert 'xgate_keys_expiring{kind="smime",owner="own"} 1.0' in text
    assert 'xgate_keys_expiring{kind="openpgp",owner="partner"} 0.0' in text


def test_expiry_watch_warns_at_start_and_the_web_app_exports_the_gauge(
        settings: Settings, populated: dict[str, int], caplog: pytest.LogCaptureFixture,
        sessions: sessionmaker[Session]) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.keydir.expiry")
    watch = ExpiryWatch(sessions, FakeClock(NOW), 30, interval=3600)
    watch.start()
    try:
        wait_until(lambda: len([r for r in caplog.records
                                if r.name == "gateway.keydir.expiry"]) == 2,
                   timeout=10, what="the first expiry round")
    finally:
        watch.stop()
    with TestClient(create_app(settings, clock=FakeClock(NOW))) as client:
        text = client.get("/metrics").text
    assert 'xgate_keys_expiring{kind="smime",owner="partner"} 1.0' in text
