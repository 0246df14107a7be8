"""Release records: validated input, append-only versions, revocation, the sealed scan, and
the audit entries, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from gateway.consent.errors import ConsentConflict, ConsentError, ConsentNotFound
from gateway.consent.models import ConsentDocument, ConsentVersion
from gateway.consent.records import (
    Document,
    ReleaseInput,
    add_release,
    change_release,
    history,
    latest_versions,
    read_document,
    releases_for_case,
    revoke_release,
    still_current,
)
from gateway.db import session_scope
from gateway.keydir.partners import add_partner
from gateway.models import AuditEntry
from gateway.policy.consent import RecipientRef
from gateway.services import Services

CASE = "51.2-1234/2026"
SCAN = b"%PDF-1.4 Schweigepflichtentbindung, unterschrieben\n" * 20
BASE = ReleaseInput(
    case=CASE, data_subjects=("L. M.",), grantor_name="A. M.", grantor_role="parent",
    categories=("Gutachten", "Hilfeplan"),
    recipients=(RecipientRef("partner", "Beratungsstelle Nord"),
                RecipientRef("address", "Team@Praxis.example")),
    purpose="Beratung und Therapie", valid_from=date(2026, 11, 1),
    valid_until=date(2027, 10, 31))


@pytest.fixture
def gw(services: Services) -> Services:
    with session_scope(services.sessions) as s:
        add_partner(s, "Beratungsstelle Nord", actor="test", now=services.clock(),
                    patterns=["beratung.example"])
    return services


def _add(gw: Services, data: ReleaseInput = BASE, document: Document | None = None) -> int:
    with session_scope(gw.sessions) as s:
        return add_release(s, gw.master_key, gw.settings.consent, data, document=document,
                           actor="sb", now=gw.clock()).release.id


def test_add_normalises_and_audits(gw: Services) -> None:
    release_id = _add(gw)
    with session_scope(gw.sessions) as s:
        [view] = history(s, release_id)
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "consent-added")).one()
        detail = json.loads(entry.detail)
    release = view.release
    assert release.categories == {"psychologisches Gutachten", "Hilfeplan"}
    assert release.recipients[1] == RecipientRef("address", "team@praxis.example")
    assert (view.recorded_by, release.version) == ("sb", 1)
    assert detail["release"] == release_id and detail["case"] == CASE
    # The audit trail names no data subject and no purpose.
    assert "L. M." not in entry.detail and "Therapie" not in entry.detail


@pytest.mark.parametrize(("change", "message"), [
    ({"case": "  "}, "case reference"),
    ({"data_subjects": (" ",)}, "data subject"),
    ({"grantor_name": ""}, "granted"),
    ({"grantor_role": "neighbour"}, "unknown grantor role"),
    ({"categories": ("Zeugnis",)}, "unknown category 'Zeugnis'"),
    ({"categories": ()}, "at least one category"),
    ({"recipients": ()}, "at least one recipient"),
    ({"recipients": (RecipientRef("partner", "Unbekannt"),)}, "no partner 'Unbekannt'"),
    ({"recipients": (RecipientRef("address", "kein-at"),)}, "not an e-mail address"),
    ({"purpose": " "}, "purpose"),
    ({"valid_until": date(2026, 10, 1)}, "is after valid until"),
])
def test_bad_input_is_refused_and_nothing_stored(gw: Services, change: dict[str, object],
                                                 message: str) -> None:
    with session_scope(gw.sessions) as s, pytest.raises(ConsentError, match=message):
        add_release(s, gw.master_key, gw.settings.consent, replace(BASE, **change),  # type: ignore[arg-type]
                    document=None, actor="sb", now=gw.clock())
    with session_scope(gw.sessions) as s:
        assert s.scalar(select(func.count()).select_from(ConsentVersion)) == 0


def test_a_change_is_a_new_version_and_the_old_one_stays(gw: Services) -> None:
    release_id = _add(gw)
    narrower = replace(BASE, categories=("Hilfeplan",), note="Mutter schränkt ein")
    with session_scope(gw.sessions) as s:
        change_release(s, gw.master_key, gw.settings.consent, release_id, narrower,
                       document=None, actor="leitung", now=gw.clock(), expected_version=1)
    with session_scope(gw.sessions) as s:
        v1, v2 = history(s, release_id)
        [current] = latest_versions(s, case=" 51.2-1234/2026 ")
        assert len(releases_for_case(s, CASE)) == 2
    assert v1.release.categories == {"psychologisches Gutachten", "Hilfeplan"}
    assert v2.release.categories == {"Hilfeplan"} and v2.note == "Mutter schränkt ein"
    assert current.release.ref == (release_id, 2)


def test_change_rules(gw: Services) -> None:
    release_id = _add(gw)
    with session_scope(gw.sessions) as s:
        with pytest.raises(ConsentError, match="say why"):
            change_release(s, gw.master_key, gw.settings.consent, release_id, BASE,
                           document=None, actor="sb", now=gw.clock())
        with pytest.raises(ConsentConflict, match="is at version 1, not 3"):
            change_release(s, gw.master_key, gw.settings.consent, release_id,
                           replace(BASE, note="x"), document=None, actor="sb",
                           now=gw.clock(), expected_version=3)
        with pytest.raises(ConsentError, match="another case"):
            change_release(s, gw.master_key, gw.settings.consent, release_id,
                           replace(BASE, case="9/2026", note="x"), document=None,
                           actor="sb", now=gw.clock())
        with pytest.raises(ConsentNotFound):
            change_release(s, gw.master_key, gw.settings.consent, 999,
                           replace(BASE, note="x"), document=None, actor="sb", now=gw.clock())


def test_revocation_is_a_version_and_final(gw: Services) -> None:
    release_id = _add(gw)
    now = gw.clock()
    with session_scope(gw.sessions) as s:
        assert still_current(s, [(release_id, 1)], now)
        with pytest.raises(ConsentError, match="future"):
            revoke_release(s, release_id, actor="sb", reason="x", now=now,
                           revoked_at=now + timedelta(hours=1))
        revoked = revoke_release(s, release_id, actor="sb", reason="Brief vom 20.11.",
                                 now=now)
        assert revoked.release.version == 2 and revoked.revoked_by == "sb"
        assert not still_current(s, [(release_id, 1)], now)
        assert not still_current(s, [(release_id, 2)], now)
        with pytest.raises(ConsentConflict, match="already revoked"):
            revoke_release(s, release_id, actor="sb", reason="again", now=now)
        with pytest.raises(ConsentConflict, match="was revoked"):
            change_release(s, gw.master_key, gw.settings.consent, release_id,
                           replace(BASE, note="x"), document=None, actor="sb", now=now)
        v1, _ = history(s, release_id)
        assert v1.release.revoked_at is None


def test_the_scan_is_sealed_and_kept_across_versions(gw: Services) -> None:
    release_id = _add(gw, document=Document("entbindung.pdf", "application/pdf", SCAN))
    with session_scope(gw.sessions) as s:
        change_release(s, gw.master_key, gw.settings.consent, release_id,
                       replace(BASE, note="Verlängerung", valid_until=date(2028, 1, 1)),
                       document=None, actor="sb", now=gw.clock())
        stored = s.scalars(select(ConsentDocument)).one()
        assert SCAN[:40] not in stored.sealed  # never in the clear in the database
        info, version, data = read_document(s, gw.master_key, release_id, actor="dsb")
        assert data == SCAN and info.filename == "entbindung.pdf" and version == 2
        assert info.size == len(SCAN)
        _, _, first = read_document(s, gw.master_key, release_id, version=1, actor="dsb")
        assert first == SCAN
        reads = s.scalars(select(AuditEntry.actor).where(
            AuditEntry.action == "consent-document-read")).all()
        assert reads == ["dsb", "dsb"]
        with pytest.raises(ConsentNotFound):
            read_document(s, gw.master_key, release_id, version=7, actor="dsb")


def test_document_limits(gw: Services) -> None:
    gw.settings.consent.max_document_bytes = 1024
    for document, message in ((Document("a.pdf", "application/pdf", b""), "empty"),
                              (Document("a.pdf", "application/pdf", b"x" * 1025), "larger")):
        with session_scope(gw.sessions) as s, pytest.raises(ConsentError, match=message):
            add_release(s, gw.master_key, gw.settings.consent, BASE, document=document,
                        actor="sb", now=gw.clock())


def test_document_names_and_types_are_cleaned(gw: Services) -> None:
    document = Document("C:\\Scans\\ent\x00bindung\r\n.pdf", "text/html\r\nX-Evil: 1", SCAN)
    release_id = _add(gw, document=document)
    with session_scope(gw.sessions) as s:
        info, _, _ = read_document(s, gw.master_key, release_id, actor="dsb")
    assert (info.filename, info.content_type) == ("entbindung.pdf", "application/octet-stream")


def test_overlong_names_are_refused_before_the_database(gw: Services) -> None:
    with session_scope(gw.sessions) as s, pytest.raises(ConsentError, match="longer than"):
        add_release(s, gw.master_key, gw.settings.consent,
                    replace(BASE, grantor_name="A" * 300), document=None, actor="sb",
                    now=gw.clock())
