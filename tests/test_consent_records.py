"""Release records: validated input, append-only versions, revocation, the sealed scan and
the sealed personal part, and the audit entries (of changes and of reads), on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from crypto.at_rest import open_sealed
from crypto.errors import SealError
from gateway import audit
from gateway.audit.view import opened
from gateway.consent.errors import ConsentConflict, ConsentError, ConsentNotFound
from gateway.consent.models import ConsentDocument, ConsentVersion
from gateway.consent.records import (
    Document,
    ReleaseInput,
    add_release,
    change_release,
    history,
    latest_terms,
    personal_context,
    read_document,
    read_release,
    read_releases,
    releases_for_case,
    revoke_release,
    still_current,
)
from gateway.db import read_scope, session_scope
from gateway.keydir.partners import add_partner
from gateway.models import AuditEntry
from gateway.policy.consent import RecipientRef, Release
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
        [view] = history(s, gw.master_key, release_id)
        [entry] = opened(s, s.scalars(select(AuditEntry).where(
            AuditEntry.action == "consent-added")))
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
        v1, v2 = history(s, gw.master_key, release_id)
        [current] = latest_terms(s, case=" 51.2-1234/2026 ")
        assert len(releases_for_case(s, CASE)) == 2
    assert v1.release.categories == {"psychologisches Gutachten", "Hilfeplan"}
    assert v2.release.categories == {"Hilfeplan"} and v2.note == "Mutter schränkt ein"
    assert current.ref == (release_id, 2)


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
            revoke_release(s, gw.master_key, release_id, actor="sb", reason="x", now=now,
                           revoked_at=now + timedelta(hours=1))
        revoked = revoke_release(s, gw.master_key, release_id, actor="sb",
                                 reason="Brief vom 20.11.", now=now)
        assert revoked.release.version == 2 and revoked.revoked_by == "sb"
        assert not still_current(s, [(release_id, 1)], now)
        assert not still_current(s, [(release_id, 2)], now)
        with pytest.raises(ConsentConflict, match="already revoked"):
            revoke_release(s, gw.master_key, release_id, actor="sb", reason="again", now=now)
        with pytest.raises(ConsentConflict, match="was revoked"):
            change_release(s, gw.master_key, gw.settings.consent, release_id,
                           replace(BASE, note="x"), document=None, actor="sb", now=now)
        v1, _ = history(s, gw.master_key, release_id)
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
        reads = [e.actor for e in opened(s, s.scalars(select(AuditEntry).where(
            AuditEntry.action == "consent-document-read")))]
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


# -- the personal part is sealed; reading it is audited ----------------------------------------


def test_names_and_purpose_are_sealed_and_bound_to_their_version(gw: Services) -> None:
    release_id = _add(gw)
    with session_scope(gw.sessions) as s:
        revoked = revoke_release(s, gw.master_key, release_id, actor="sb", reason="Brief",
                                 now=gw.clock())
        # The revocation says what the revoked version said, sealed for itself.
        assert revoked.release.data_subjects == ("L. M.",)
        assert revoked.release.purpose == "Beratung und Therapie"
    with session_scope(gw.sessions) as s:
        v1, v2 = s.scalars(select(ConsentVersion).order_by(ConsentVersion.version)).all()
        for row in (v1, v2):
            assert b"L. M." not in row.sealed_personal and b"A. M." not in row.sealed_personal
            assert b"Therapie" not in row.sealed_personal
        personal = json.loads(open_sealed(gw.master_key, v2.sealed_personal,
                                          personal_context(release_id, 2)))
        assert personal == {"data_subjects": ["L. M."], "grantor_name": "A. M.",
                            "purpose": "Beratung und Therapie"}
        # Copied to another version, a sealed part does not open there.
        with pytest.raises(SealError):
            open_sealed(gw.master_key, v1.sealed_personal, personal_context(release_id, 2))
        # The gate's view carries the terms only: nothing personal is opened for it.
        terms = releases_for_case(s, CASE)
        assert {t.ref for t in terms} == {(release_id, 1), (release_id, 2)}
        assert not any(isinstance(t, Release) for t in terms)


def test_reading_names_is_audited_without_them(gw: Services) -> None:
    release_id = _add(gw)
    other = _add(gw, replace(BASE, case="51.2-7/2026"))
    with session_scope(gw.sessions) as s:
        change_release(s, gw.master_key, gw.settings.consent, release_id,
                       replace(BASE, note="Verlängerung", valid_until=date(2028, 1, 1)),
                       document=None, actor="sb", now=gw.clock())
    with session_scope(gw.sessions) as s:
        views = read_release(s, gw.master_key, release_id, actor="dsb", via="cli")
        assert [v.release.data_subjects for v in views] == [("L. M.",), ("L. M.",)]
        listed = read_releases(s, gw.master_key, case=None, actor="sb", via="api")
        assert [v.release.ref for v in listed] == [(other, 1), (release_id, 2)]
        read_releases(s, gw.master_key, case=CASE, actor="sb", via="api")
        with pytest.raises(ConsentNotFound):
            read_release(s, gw.master_key, 999, actor="dsb", via="cli")
    with read_scope(gw.sessions) as s:
        assert audit.verify(s).ok
        entries = opened(s, s.scalars(select(AuditEntry).where(AuditEntry.action.in_(
            ["consent-read", "consent-listed"])).order_by(AuditEntry.seq)))
        assert [(e.actor, e.action, json.loads(e.detail)) for e in entries] == [
            ("dsb", "consent-read", {"release": release_id, "versions": [1, 2], "via": "cli"}),
            ("sb", "consent-listed", {"case": None, "releases": [[other, 1],
                                                                 [release_id, 2]],
                                      "via": "api"}),
            ("sb", "consent-listed", {"case": CASE, "releases": [[release_id, 2]],
                                      "via": "api"})]
        for entry in entries:
            assert "L. M." not in entry.detail and "A. M." not in entry.detail
            assert "Therapie" not in entry.detail
