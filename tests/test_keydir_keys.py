"""Partner keys: import, harvest, decisions and the pipeline's lookups
(gateway.keydir.keys), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.db import make_engine, make_session_factory, session_scope
from gateway.keydir import keys, partners
from gateway.keydir.errors import Conflict, KeyDirError, NotFound
from gateway.keydir.keys import (
    ImportOutcome,
    KeyKind,
    KeySource,
    KeyStatus,
    harvest,
    import_partner_keys,
    usable_partner_keys,
    verification_keys,
)
from gateway.models import AuditEntry
from gateway.settings import Settings
from tests.test_keydir_certs import der, fingerprint, make_cert, pem, rsa_key, utcnow

NOW = utcnow()


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with session_scope(sessions) as s:
        yield s


def _import(session: Session, data: bytes, *, approve: bool = False,
            partner: str | None = None, actor: str = "admin") -> list[keys.ImportedKey]:
    return import_partner_keys(session, data, actor=actor, source=KeySource.IMPORT,
                               source_detail="partner.pem", partner=partner, approve=approve,
                               now=NOW)


def test_import_stores_key_with_provenance_and_partner(session: Session) -> None:
    partners.add_partner(session, "Jugendamt B", actor="admin", now=NOW,
                         patterns=["jugendamt-b.example"])
    cert = make_cert("Fachdienst@Jugendamt-B.example")

    [imported] = _import(session, pem(cert))

    key = imported.key
    assert imported.outcome is ImportOutcome.ADDED
    assert (key.kind, key.fingerprint, key.data) == (KeyKind.SMIME, fingerprint(cert), der(cert))
    assert key.address_list == ["fachdienst@jugendamt-b.example"]
    assert key.status is KeyStatus.PENDING and key.decided_by is None
    assert (key.source, key.source_detail, key.added_by) == (KeySource.IMPORT, "partner.pem",
                                                             "admin")
    assert key.partner is not None and key.partner.name == "Jugendamt B"
    assert key.not_after == cert.not_valid_after_utc


def test_reimport_does_not_duplicate_and_admin_import_approves_pending(
        sessions: sessionmaker[Session]) -> None:
    data = pem(make_cert("a@b.example"))
    with session_scope(sessions) as session:
        [first] = _import(session, data)
        again = _import(session, data)
        assert [(i.key.id, i.outcome) for i in again] == [(first.key.id, ImportOutcome.UNCHANGED)]
        [approved] = _import(session, data, approve=True, actor="chef")
        assert approved.outcome is ImportOutcome.APPROVED
        assert approved.key.status is KeyStatus.APPROVED and approved.key.decided_by == "chef"
        # Approved stays approved, whatever comes later.
        assert _import(session, data, approve=True)[0].outcome is ImportOutcome.UNCHANGED
    with session_scope(sessions) as session:
        assert len(keys.list_keys(session)) == 1
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
        assert actions == ["key-added", "key-approved"]
        assert audit.verify(session).ok


def test_import_of_several_certificates_is_all_or_nothing(session: Session) -> None:
    good = make_cert("a@b.example", key=rsa_key(3072, "a"))
    weak = make_cert("c@b.example", key=rsa_key(1024, "weak"))
    with pytest.raises(KeyDirError, match="1024 bits"):
        _import(session, pem(good, weak))
    assert keys.list_keys(session) == []
    both = _import(session, pem(good, make_cert("c@b.example", key=rsa_key(3072, "b"))),
                   approve=True)
    assert [i.key.status for i in both] == [KeyStatus.APPROVED, KeyStatus.APPROVED]


def test_import_accepts_wkd_source_and_can_require_the_address(session: Session) -> None:
    data = der(make_cert("a@b.example"))
    with pytest.raises(KeyDirError, match=r"does not name x@b\.example"):
        import_partner_keys(session, data, actor="worker", source=KeySource.WKD,
                            source_detail="https://openpgpkey.b.example/x", approve=False,
                            now=NOW, require_address="x@b.example")
    [imported] = import_partner_keys(session, data, actor="worker", source=KeySource.WKD,
                                     source_detail="https://b.example/.well-known/x",
                                     approve=False, now=NOW, require_address="A@b.example")
    assert imported.key.source is KeySource.WKD
    assert imported.key.source_detail == "https://b.example/.well-known/x"
    with pytest.raises(KeyDirError, match="harvest"):
        import_partner_keys(session, data, actor="x", source=KeySource.HARVEST,
                            source_detail="", approve=False, now=NOW)


def test_import_for_an_unknown_partner_is_refused(session: Session) -> None:
    with pytest.raises(NotFound, match="no partner 'Nobody'"):
        _import(session, pem(make_cert("a@b.example")), partner="Nobody")


def test_harvest_is_pending_idempotent_and_never_demotes(sessions: sessionmaker[Session]) -> None:
    cert = make_cert("absender@stelle.example")
    with session_scope(sessions) as session:
        partners.add_partner(session, "Stelle", actor="admin", now=NOW,
                             patterns=["stelle.example"])
        key = harvest(session, kind=KeyKind.SMIME, data=der(cert),
                      addresses=["Absender@stelle.example"], queue_id="Q1", actor="worker-1",
                      now=NOW)
        assert key is not None
        key_id = key.id
        assert key.status is KeyStatus.PENDING
        assert (key.source, key.source_detail) == (KeySource.HARVEST, "Q1")
        assert key.partner is not None and key.partner.name == "Stelle"
        assert harvest(session, kind=KeyKind.SMIME, data=der(cert),
                       addresses=["absender@stelle.example"], queue_id="Q2", actor="worker-1",
                       now=NOW) is None
        # Pending: it may prove signatures, but receives nothing.
        assert [k.id for k in verification_keys(session, "absender@stelle.example",
                                                KeyKind.SMIME)] == [key_id]
        assert usable_partner_keys(session, "absender@stelle.example", KeyKind.SMIME,
                                   NOW) == []
        keys.approve_key(session, key_id, "chef", NOW)
        assert harvest(session, kind=KeyKind.SMIME, data=der(cert),
                       addresses=["absender@stelle.example"], queue_id="Q3", actor="worker-1",
                       now=NOW) is None
    with session_scope(sessions) as session:
        key = keys.get_key(session, key_id)
        assert key.status is KeyStatus.APPROVED and key.source_detail == "Q1"
        [usable] = usable_partner_keys(session, "absender@stelle.example", KeyKind.SMIME, NOW)
        assert (usable.id, usable.fingerprint, usable.data) == (key_id, fingerprint(cert),
                                                                der(cert))
        harvested = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "key-harvested")).one()
        assert harvested.queue_id == "Q1" and harvested.actor == "worker-1"
        assert audit.verify(session).ok


def test_harvest_without_partner_and_refusals_are_logged_not_raised(
        session: Session, caplog: pytest.LogCaptureFixture) -> None:
    cert = make_cert("x@unbekannt.example")
    key = harvest(session, kind=KeyKind.SMIME, data=der(cert),
                  addresses=["x@unbekannt.example"], queue_id="Q1", actor="w", now=NOW)
    assert key is not None and key.partner_id is None

    caplog.set_level(logging.WARNING, logger="gateway.keydir.keys")
    other = make_cert("someone@else.example", key=rsa_key(3072, "b"))
    assert harvest(session, kind=KeyKind.SMIME, data=der(other),
                   addresses=["x@unbekannt.example"], queue_id="Q2", actor="w",
                   now=NOW) is None
    weak = make_cert("x@unbekannt.example", key=rsa_key(1024, "weak"))
    assert harvest(session, kind=KeyKind.SMIME, data=der(weak),
                   addresses=["x@unbekannt.example"], queue_id="Q3", actor="w",
                   now=NOW) is None
    assert harvest(session, kind=KeyKind.OPENPGP, data=der(cert),
                   addresses=["x@unbekannt.example"], queue_id="Q4", actor="w",
                   now=NOW) is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("not the sender" in m for m in messages)
    assert any("1024 bits" in m for m in messages)
    assert any("expected one openpgp key" in m for m in messages)
    assert len(keys.list_keys(session)) == 1


def test_usable_keys_exclude_pending_expired_revoked_and_other_addresses(
        session: Session) -> None:
    addr = "fach@ja.example"

    def add(email: str, label: str, approve: bool = True, **validity: object) -> int:
        cert = make_cert(email, key=rsa_key(3072, label), **validity)  # type: ignore[arg-type]
        return _import(session, pem(cert), approve=approve)[0].key.id

    older = add(addr, "older", not_before=NOW - timedelta(days=300))
    newer = add(addr, "newer", not_before=NOW - timedelta(days=10))
    add(addr, "pending", approve=False)
    add(addr, "expired", not_before=NOW - timedelta(days=400),
        not_after=NOW - timedelta(days=1))
    add(addr, "future", not_before=NOW + timedelta(days=2))
    revoked = add(addr, "revoked")
    keys.revoke_key(session, revoked, "chef", NOW)
    add("other@ja.example", "other")
    signing_only = make_cert(addr, key=rsa_key(3072, "sign"), encrypt=False)
    _import(session, pem(signing_only), approve=True)

    usable = usable_partner_keys(session, "FACH@ja.example", KeyKind.SMIME, NOW)
    assert [k.id for k in usable] == [newer, older]
    assert usable_partner_keys(session, addr, KeyKind.OPENPGP, NOW) == []
    # Verification takes approved and pending keys, whatever their dates, never revoked ones.
    verifying = {k.id for k in verification_keys(session, addr, KeyKind.SMIME)}
    assert revoked not in verifying and {older, newer} <= verifying
    assert len(verifying) == 6


def test_decisions_follow_the_allowed_transitions(sessions: sessionmaker[Session]) -> None:
    cert_a = pem(make_cert("a@b.example", key=rsa_key(3072, "a")))
    with session_scope(sessions) as session:
        [a] = _import(session, cert_a)
        [b] = _import(session, pem(make_cert("b@b.example", key=rsa_key(3072, "b"))))
        a_id, b_id = a.key.id, b.key.id
    with session_scope(sessions) as session:
        keys.reject_key(session, a_id, "chef", NOW)
        with pytest.raises(Conflict, match="only a pending key can be rejected"):
            keys.reject_key(session, a_id, "chef", NOW)
        keys.approve_key(session, a_id, "chef", NOW)  # changed their mind
        with pytest.raises(Conflict, match="approved already"):
            keys.approve_key(session, a_id, "chef", NOW)
        keys.revoke_key(session, a_id, "chef", NOW)
        with pytest.raises(Conflict, match="revoked and stays so"):
            keys.approve_key(session, a_id, "chef", NOW)
        with pytest.raises(Conflict, match="revoked already"):
            keys.revoke_key(session, a_id, "chef", NOW)
        with pytest.raises(NotFound, match="no partner key 999"):
            keys.approve_key(session, 999, "chef", NOW)
        # An import never revives a revoked key.
        [again] = _import(session, cert_a, approve=True)
        assert (again.key.id, again.outcome) == (a_id, ImportOutcome.UNCHANGED)
    with session_scope(sessions) as session:
        assert [k.id for k in keys.list_keys(session, KeyStatus.PENDING)] == [b_id]
        assert keys.get_key(session, a_id).status is KeyStatus.REVOKED
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
        assert actions[-3:] == ["key-rejected", "key-approved", "key-revoked"]
        assert audit.verify(session).ok


def test_list_keys_by_partner_and_assigning_a_harvested_key(session: Session) -> None:
    cert = make_cert("x@neu.example")
    harvested = harvest(session, kind=KeyKind.SMIME, data=der(cert), addresses=["x@neu.example"],
                        queue_id="Q1", actor="w", now=NOW)
    assert harvested is not None and harvested.partner_id is None
    partners.add_partner(session, "Neu", actor="admin", now=NOW, patterns=["neu.example"])
    assert keys.list_keys(session, partner="Neu") == []
    [result] = _import(session, pem(cert), partner="Neu", approve=True)
    assert result.outcome is ImportOutcome.APPROVED
    assert result.key.partner is not None and result.key.partner.name == "Neu"
    assert [k.id for k in keys.list_keys(session, partner="Neu")] == [harvested.id]
    # Removing the partner leaves its keys, without partner, for the record.
    partners.delete_partner(session, "Neu", actor="admin")
    session.expire_all()
    assert keys.get_key(session, harvested.id).partner_id is None
