"""Partners, their address patterns and policies (gateway.keydir.partners), on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.audit.view import opened
from gateway.db import make_engine, make_session_factory, session_scope
from gateway.keydir import partners
from gateway.keydir.errors import Conflict, KeyDirError, NotFound
from gateway.keydir.models import InvalidSignature
from gateway.keydir.partners import PartnerPolicy, partner_for
from gateway.models import AuditEntry
from gateway.settings import OutboundPolicy, Settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with session_scope(sessions) as s:
        yield s


def _add(session: Session, name: str, *patterns: str, **policy: object) -> None:
    partners.add_partner(session, name, actor="admin", now=NOW, patterns=patterns,
                         **policy)  # type: ignore[arg-type]


def test_exact_address_beats_domain_and_subdomains_do_not_match(session: Session) -> None:
    _add(session, "Jugendamt B", "Jugendamt-B.example",
         outbound_policy=OutboundPolicy.REQUIRE_SMIME, smime_gcm=True)
    _add(session, "Beratungsstelle", "beratung@jugendamt-b.example",
         outbound_policy=OutboundPolicy.REQUIRE_OPENPGP, inbound_require_signature=True)

    domain = partner_for(session, "Sachbearbeiter@JUGENDAMT-B.example")
    exact = partner_for(session, "Beratung@jugendamt-b.example")

    assert domain is not None and domain.name == "Jugendamt B"
    assert domain.pattern == "jugendamt-b.example"
    assert domain.outbound_policy is OutboundPolicy.REQUIRE_SMIME and domain.smime_gcm
    assert exact == PartnerPolicy(
        id=exact.id if exact else 0, name="Beratungsstelle",
        outbound_policy=OutboundPolicy.REQUIRE_OPENPGP, smime_gcm=False, openpgp_inline=False,
        inbound_require_encryption=False, inbound_require_signature=True,
        inbound_invalid_signature=InvalidSignature.QUARANTINE,
        non_sensitive=False, pattern="beratung@jugendamt-b.example")
    assert partner_for(session, "x@sub.jugendamt-b.example") is None
    assert partner_for(session, "x@example") is None
    assert partner_for(session, "not-an-address") is None


def test_plaintext_only_for_non_sensitive_partners(session: Session) -> None:
    with pytest.raises(KeyDirError, match="only allowed for a partner marked non-sensitive"):
        _add(session, "Kita", "kita.example", outbound_policy=OutboundPolicy.PLAINTEXT)
    _add(session, "Kita", "kita.example", outbound_policy=OutboundPolicy.PLAINTEXT,
         non_sensitive=True)
    with pytest.raises(KeyDirError, match="non-sensitive"):
        partners.update_partner(session, "Kita", actor="admin", now=NOW, non_sensitive=False)

    _add(session, "Schule", "schule.example")
    with pytest.raises(KeyDirError, match="non-sensitive"):
        partners.update_partner(session, "Schule", actor="admin", now=NOW,
                                outbound_policy=OutboundPolicy.PLAINTEXT)
    # Both at once is the explicit marking the policy asks for.
    updated = partners.update_partner(session, "Schule", actor="admin", now=NOW,
                                      outbound_policy=OutboundPolicy.PLAINTEXT,
                                      non_sensitive=True)
    assert updated.outbound_policy is OutboundPolicy.PLAINTEXT


def test_a_pattern_belongs_to_one_partner_and_is_validated(session: Session) -> None:
    _add(session, "A", "a.example")
    with pytest.raises(Conflict, match="belongs to partner 'A' already"):
        _add(session, "B", "A.example")
    assert partners.find_partner(session, "B") is None, "a refused add leaves nothing"
    with pytest.raises(Conflict, match="exists already"):
        _add(session, "A", "other.example")
    for bad in ("no-dot", "two@@signs.example", "space in.example", "@x.example", "a@"):
        with pytest.raises(KeyDirError, match="not a valid"):
            partners.add_partner_pattern(session, "A", bad, actor="admin", now=NOW)
    with pytest.raises(NotFound):
        partners.add_partner_pattern(session, "nobody", "n.example", actor="admin", now=NOW)


def test_update_rename_patterns_and_delete_are_audited(sessions: sessionmaker[Session]) -> None:
    later = datetime(2026, 3, 2, tzinfo=UTC)
    with session_scope(sessions) as session:
        _add(session, "Gericht", "ag-stadt.example", note="Familiengericht")
        partners.update_partner(session, "Gericht", actor="bob", now=later,
                                new_name="Amtsgericht", inbound_require_encryption=True)
        partners.add_partner_pattern(session, "Amtsgericht", "Post@AG-Land.example",
                                     actor="bob", now=later)
        partners.remove_partner_pattern(session, "Amtsgericht", "ag-stadt.example",
                                        actor="bob", now=later)
    with session_scope(sessions) as session:
        partner = partners.get_partner(session, "Amtsgericht")
        assert [p.pattern for p in partner.patterns] == ["post@ag-land.example"]
        assert partner.inbound_require_encryption and partner.note == "Familiengericht"
        assert (partner.created_by, partner.updated_by) == ("admin", "bob")
        assert partner.updated_at == later
        assert partner_for(session, "x@ag-stadt.example") is None
        partners.delete_partner(session, "Amtsgericht", actor="carol")
    with session_scope(sessions) as session:
        assert partners.list_partners(session) == []
        assert partner_for(session, "post@ag-land.example") is None
        entries = opened(session, session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        assert [(e.actor, e.action) for e in entries] == [
            ("admin", "partner-added"), ("bob", "partner-changed"),
            ("bob", "partner-address-added"), ("bob", "partner-address-removed"),
            ("carol", "partner-removed")]
        assert '"name":["Gericht","Amtsgericht"]' in entries[1].detail
        assert audit.verify(session).ok


def test_what_a_failing_signature_leads_to_is_set_per_partner_and_audited(
        session: Session) -> None:
    _add(session, "A", "a.example")
    _add(session, "B", "b.example", inbound_invalid_signature=InvalidSignature.WARN)
    policy_a, policy_b = partner_for(session, "x@a.example"), partner_for(session, "x@b.example")
    assert policy_a is not None and policy_b is not None
    assert policy_a.inbound_invalid_signature is InvalidSignature.QUARANTINE
    assert policy_b.inbound_invalid_signature is InvalidSignature.WARN
    partners.update_partner(session, "A", actor="bob", now=NOW,
                            inbound_invalid_signature=InvalidSignature.WARN)
    updated = partner_for(session, "x@a.example")
    assert updated is not None and updated.inbound_invalid_signature is InvalidSignature.WARN
    entries = opened(session, session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    assert '"inbound_invalid_signature":"warn"' in entries[1].detail
    assert '"changes":{"inbound_invalid_signature":["quarantine","warn"]}' in entries[2].detail


def test_an_update_that_changes_nothing_is_not_recorded(session: Session) -> None:
    _add(session, "A", "a.example", smime_gcm=True)
    partners.update_partner(session, "A", actor="bob", now=NOW, smime_gcm=True)
    actions = session.scalars(select(AuditEntry.action)).all()
    assert actions == ["partner-added"]


def test_bad_names_are_refused(session: Session) -> None:
    with pytest.raises(KeyDirError, match="1 to 255 characters"):
        _add(session, "  ", "a.example")
    with pytest.raises(KeyDirError, match="control characters"):
        _add(session, "A\nB", "a.example")
