"""Recording releases from confidentiality: add, change (a new version), revoke, read.

Every change appends a version and an audit entry in the same transaction; no stored
version is ever updated. The sealed scan of the signed form is stored once and referenced
by every version that relies on it.

The personal part of each version (the data subjects, the grantor's name, the purpose) is
sealed with the master key, bound to the version's (release id, version). The consent gate
decides on the terms alone (``releases_for_case``) and never opens it; whoever reads it
through the CLI or the API is recorded in the audit trail (``read_release``,
``read_releases``), without the names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway import audit
from gateway.audit import AuditAction
from gateway.consent.classify import canonical_category
from gateway.consent.errors import ConsentConflict, ConsentError, ConsentNotFound
from gateway.consent.models import ConsentDocument, ConsentRelease, ConsentVersion
from gateway.keydir.partners import find_partner
from gateway.policy.consent import (
    GRANTOR_ROLES,
    Grantor,
    RecipientRef,
    Release,
    ReleaseTerms,
    normalise_case,
)
from gateway.settings import ConsentSettings
from mailboxes.models import Mailbox

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
MAX_CASE_LENGTH = 200
MAX_NAME_LENGTH = 255  # a grantor's name, as the API accepts it
MAX_ADDRESS_LENGTH = 320  # RFC 5321's path limit
# What a stored content type may look like; it is sent back as a response header later.
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")


@dataclass(frozen=True)
class Document:
    """A signed release form as uploaded: the bytes live only in memory until sealed."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ReleaseInput:
    """What a caseworker records; validated against the settings before anything is stored."""

    case: str
    data_subjects: tuple[str, ...]
    grantor_name: str
    grantor_role: str
    categories: tuple[str, ...]
    recipients: tuple[RecipientRef, ...]
    purpose: str
    valid_from: date
    valid_until: date
    note: str = ""


@dataclass(frozen=True)
class VersionView:
    """One stored version with its bookkeeping, for the CLI, the API and the audit."""

    release: Release
    recorded_by: str
    recorded_at: datetime
    revoked_by: str | None
    note: str
    document: DocumentInfo | None


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str


def _document_context(sha256: str) -> bytes:
    # Binds each sealed blob to the digest stored beside it: a blob moved to another row
    # does not open.
    return b"xgate consent document\x00" + sha256.encode()


def personal_context(release_id: int, version: int) -> bytes:
    """Binds a version's sealed personal part to that version: copied to another row, it
    does not open. Migration 0009 seals existing rows with the same bytes."""
    return b"xgate consent release\x00%d\x00%d" % (release_id, version)


def _seal_personal(master_key: MasterKey, release_id: int, version: int,
                   data: ReleaseInput) -> bytes:
    personal = {"data_subjects": list(data.data_subjects), "grantor_name": data.grantor_name,
                "purpose": data.purpose}
    return seal(master_key, json.dumps(personal, ensure_ascii=False).encode(),
                personal_context(release_id, version))


def validate(session: Session, data: ReleaseInput, settings: ConsentSettings) -> ReleaseInput:
    """The input with categories in catalogue spelling; ConsentError naming the first fault."""
    case = " ".join(data.case.split())
    if not case:
        raise ConsentError("the case reference (Aktenzeichen) is required", key="case_missing")
    if len(case) > MAX_CASE_LENGTH:
        raise ConsentError(f"the case reference is longer than {MAX_CASE_LENGTH} characters",
                           key="case_long", limit=MAX_CASE_LENGTH)
    subjects = tuple(" ".join(s.split()) for s in data.data_subjects if s.strip())
    if not subjects:
        raise ConsentError("name at least one data subject (the child or young person)",
                           key="subjects_missing")
    if not data.grantor_name.strip():
        raise ConsentError("name the person who granted the release", key="grantor_missing")
    if len(data.grantor_name.strip()) > MAX_NAME_LENGTH:
        raise ConsentError(f"the grantor's name is longer than {MAX_NAME_LENGTH} characters",
                           key="grantor_long", limit=MAX_NAME_LENGTH)
    if data.grantor_role not in GRANTOR_ROLES:
        raise ConsentError(f"unknown grantor role {data.grantor_role!r}; one of: "
                           + ", ".join(GRANTOR_ROLES), key="role_unknown")
    categories: list[str] = []
    for name in data.categories:
        category = canonical_category(name, settings)
        if category is None:
            raise ConsentError(f"unknown category {name!r}; the catalogue has: "
                               + ", ".join(settings.categories), key="category_unknown",
                               category=name, known=", ".join(settings.categories))
        if category not in categories:
            categories.append(category)
    if not categories:
        raise ConsentError("name at least one category of information", key="categories_missing")
    if not data.recipients:
        raise ConsentError("name at least one recipient: a partner or an address",
                           key="recipients_missing")
    recipients: list[RecipientRef] = []
    for ref in data.recipients:
        value = ref.value.strip()
        if ref.kind == "address":
            if not _ADDRESS.match(value) or len(value) > MAX_ADDRESS_LENGTH:
                raise ConsentError(f"not an e-mail address: {value!r}", key="address_bad",
                                   address=value)
            value = value.lower()
        else:
            partner = find_partner(session, value)
            if partner is None:
                raise ConsentError(f"no partner {value!r} in the key directory",
                                   key="partner_unknown", partner=value)
            value = partner.name
        recipient = RecipientRef(ref.kind, value)
        if recipient not in recipients:
            recipients.append(recipient)
    if not data.purpose.strip():
        raise ConsentError("state the purpose the release was given for", key="purpose_missing")
    if data.valid_from > data.valid_until:
        raise ConsentError(f"valid from {data.valid_from} is after valid until "
                           f"{data.valid_until}", key="dates_reversed",
                           start=data.valid_from.isoformat(), end=data.valid_until.isoformat())
    return replace(data, case=case, data_subjects=subjects, grantor_name=data.grantor_name.strip(),
                   categories=tuple(categories), recipients=tuple(recipients),
                   purpose=data.purpose.strip(), note=data.note.strip())


def _clean_filename(name: str) -> str:
    # Only the last path component, without control characters: the name is shown in lists
    # and offered again as the download name.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if c.isprintable()).strip()
    return clean[:255] or "release"


def _store_document(session: Session, master_key: MasterKey, document: Document,
                    settings: ConsentSettings, actor: str, now: datetime) -> ConsentDocument:
    if not document.data:
        raise ConsentError("the release document is empty", key="document_empty")
    if len(document.data) > settings.max_document_bytes:
        raise ConsentError(f"the release document is larger than "
                           f"{settings.max_document_bytes} bytes", key="document_big",
                           limit=settings.max_document_bytes)
    digest = hashlib.sha256(document.data).hexdigest()
    row = ConsentDocument(
        filename=_clean_filename(document.filename),
        content_type=(document.content_type.strip()
                      if _CONTENT_TYPE.match(document.content_type.strip())
                      and len(document.content_type.strip()) <= 100
                      else "application/octet-stream"),
        size=len(document.data), sha256=digest,
        sealed=seal(master_key, document.data, _document_context(digest)),
        uploaded_by=actor, uploaded_at=now)
    session.add(row)
    session.flush()
    return row


def _row(master_key: MasterKey, release_id: int, version: int, data: ReleaseInput, *,
         recorded_by: str, recorded_at: datetime, document_id: int | None,
         revoked_at: datetime | None = None, revoked_by: str | None = None) -> ConsentVersion:
    return ConsentVersion(
        release_id=release_id, version=version, case_ref=data.case,
        case_key=normalise_case(data.case),
        sealed_personal=_seal_personal(master_key, release_id, version, data),
        grantor_role=data.grantor_role,
        categories=json.dumps(list(data.categories), ensure_ascii=False),
        recipients=json.dumps([{"kind": r.kind, "value": r.value} for r in data.recipients],
                              ensure_ascii=False),
        valid_from=data.valid_from, valid_until=data.valid_until,
        revoked_at=revoked_at, revoked_by=revoked_by, document_id=document_id,
        recorded_by=recorded_by, recorded_at=recorded_at, note=data.note)


def to_terms(row: ConsentVersion) -> ReleaseTerms:
    """What a version allows, without opening its personal part."""
    recipients = tuple(RecipientRef(r["kind"], r["value"]) for r in json.loads(row.recipients))
    return ReleaseTerms(
        id=row.release_id, version=row.version, case=row.case_ref,
        categories=frozenset(json.loads(row.categories)), recipients=recipients,
        valid_from=row.valid_from, valid_until=row.valid_until, revoked_at=row.revoked_at)


def to_release(row: ConsentVersion, master_key: MasterKey) -> Release:
    """The whole version, its personal part opened in memory."""
    personal = json.loads(open_sealed(master_key, row.sealed_personal,
                                      personal_context(row.release_id, row.version)))
    terms = to_terms(row)
    return Release(
        id=terms.id, version=terms.version, case=terms.case, categories=terms.categories,
        recipients=terms.recipients, valid_from=terms.valid_from,
        valid_until=terms.valid_until, revoked_at=terms.revoked_at,
        data_subjects=tuple(personal["data_subjects"]),
        granted_by=Grantor(personal["grantor_name"], row.grantor_role),  # type: ignore[arg-type]
        purpose=personal["purpose"])


def _input_of(release: Release, note: str) -> ReleaseInput:
    return ReleaseInput(case=release.case, data_subjects=release.data_subjects,
                        grantor_name=release.granted_by.name,
                        grantor_role=release.granted_by.role,
                        categories=tuple(sorted(release.categories)),
                        recipients=release.recipients, purpose=release.purpose,
                        valid_from=release.valid_from, valid_until=release.valid_until,
                        note=note)


def _audit_detail(row: ConsentVersion) -> dict[str, object]:
    # No data subjects' names and no purpose in the audit trail: it is read by more people
    # than the case file, and the release id leads to the record for those who may see it.
    return {"release": row.release_id, "version": row.version, "case": row.case_ref,
            "categories": json.loads(row.categories),
            "recipients": [r["value"] for r in json.loads(row.recipients)],
            "valid_from": row.valid_from.isoformat(),
            "valid_until": row.valid_until.isoformat(),
            "document": row.document_id}


def add_release(session: Session, master_key: MasterKey, settings: ConsentSettings,
                data: ReleaseInput, *, document: Document | None, actor: str,
                now: datetime, mailbox_id: int | None = None) -> VersionView:
    """Record a new release (version 1); ``mailbox_id``: the shared mailbox whose case it is
    (the console sets it, and its team then manages the release there)."""
    clean = validate(session, data, settings)
    release = ConsentRelease(created_by=actor, created_at=now, mailbox_id=mailbox_id)
    session.add(release)
    session.flush()
    stored = (_store_document(session, master_key, document, settings, actor, now)
              if document is not None else None)
    row = _row(master_key, release.id, 1, clean, recorded_by=actor, recorded_at=now,
               document_id=stored.id if stored else None)
    session.add(row)
    session.flush()
    detail = _audit_detail(row)
    if mailbox_id is not None:
        detail["mailbox"] = mailbox_id
    audit.record(session, actor=actor, action=AuditAction.CONSENT_ADDED, detail=detail)
    return _view(session, master_key, row)


def _latest_row(session: Session, release_id: int) -> ConsentVersion:
    row = session.scalars(select(ConsentVersion).where(ConsentVersion.release_id == release_id)
                          .order_by(ConsentVersion.version.desc()).limit(1)).first()
    if row is None:
        raise ConsentNotFound(f"no release {release_id}")
    return row


def _append(session: Session, row: ConsentVersion) -> None:
    session.add(row)
    try:
        # A savepoint, so a concurrent change shows as a conflict, not a broken session.
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ConsentConflict(f"release {row.release_id} was changed at the same time; "
                              "look at it again and repeat the change",
                              key="changed_meanwhile") from None


def change_release(session: Session, master_key: MasterKey, settings: ConsentSettings,
                   release_id: int, data: ReleaseInput, *, document: Document | None,
                   actor: str, now: datetime, expected_version: int | None = None
                   ) -> VersionView:
    """Record a new version of a release; the old versions stay as they were."""
    latest = _latest_row(session, release_id)
    if expected_version is not None and latest.version != expected_version:
        raise ConsentConflict(f"release {release_id} is at version {latest.version}, "
                              f"not {expected_version}; look at it again",
                              key="changed_meanwhile")
    if latest.revoked_at is not None:
        raise ConsentConflict(f"release {release_id} was revoked; record a new release "
                              "instead", key="revoked")
    if not data.note.strip():
        raise ConsentError("say why the release is changed (the note)", key="note_missing")
    clean = validate(session, data, settings)
    if normalise_case(clean.case) != latest.case_key:
        raise ConsentError("a release cannot move to another case; record a new release",
                           key="case_moved")
    stored = (_store_document(session, master_key, document, settings, actor, now)
              if document is not None else None)
    row = _row(master_key, release_id, latest.version + 1, clean, recorded_by=actor,
               recorded_at=now, document_id=stored.id if stored else latest.document_id)
    _append(session, row)
    audit.record(session, actor=actor, action=AuditAction.CONSENT_CHANGED,
                 detail={**_audit_detail(row), "note": clean.note})
    return _view(session, master_key, row)


def revoke_release(session: Session, master_key: MasterKey, release_id: int, *, actor: str,
                   reason: str, now: datetime,
                   revoked_at: datetime | None = None) -> VersionView:
    """Record a revocation as a new version; ``revoked_at`` defaults to now.

    A revocation dated in the past (the person withdrew by letter last week) is allowed; one
    in the future is not, because a revocation takes effect when it is made.
    """
    if not reason.strip():
        raise ConsentError("say how the revocation was received (the reason)",
                           key="reason_missing")
    at = revoked_at or now
    if at.utcoffset() is None:
        raise ConsentError("the revocation time needs a time zone")
    if at > now:
        raise ConsentError("a revocation cannot be dated in the future", key="revocation_future")
    # Stored and returned in UTC, so an answer reads the same now and when read back.
    at = at.astimezone(UTC)
    latest = _latest_row(session, release_id)
    if latest.revoked_at is not None:
        raise ConsentConflict(f"release {release_id} was already revoked at "
                              f"{latest.revoked_at.isoformat()}", key="revoked")
    # The new version says what the revoked one said; its personal part is sealed anew,
    # bound to the new version.
    data = _input_of(to_release(latest, master_key), reason.strip())
    row = _row(master_key, release_id, latest.version + 1, data, recorded_by=actor,
               recorded_at=now, document_id=latest.document_id, revoked_at=at,
               revoked_by=actor)
    _append(session, row)
    audit.record(session, actor=actor, action=AuditAction.CONSENT_REVOKED,
                 detail={**_audit_detail(row), "revoked_at": at.isoformat(),
                         "reason": reason.strip()})
    return _view(session, master_key, row)


def _view(session: Session, master_key: MasterKey, row: ConsentVersion) -> VersionView:
    info = None
    if row.document_id is not None:
        doc = session.get(ConsentDocument, row.document_id)
        if doc is not None:
            info = DocumentInfo(doc.id, doc.filename, doc.content_type, doc.size, doc.sha256)
    return VersionView(release=to_release(row, master_key), recorded_by=row.recorded_by,
                       recorded_at=row.recorded_at, revoked_by=row.revoked_by, note=row.note,
                       document=info)


def history(session: Session, master_key: MasterKey, release_id: int) -> list[VersionView]:
    """Every version of a release, oldest first. Not audited: for the library's own use
    (a change merges with the current version); what is shown goes through ``read_release``."""
    rows = session.scalars(select(ConsentVersion).where(ConsentVersion.release_id == release_id)
                           .order_by(ConsentVersion.version)).all()
    if not rows:
        raise ConsentNotFound(f"no release {release_id}")
    return [_view(session, master_key, r) for r in rows]


def _latest_rows(session: Session, case: str | None,
                 mailboxes: Collection[int] | None = None) -> list[ConsentVersion]:
    newest = (select(ConsentVersion.release_id, func.max(ConsentVersion.version).label("v"))
              .group_by(ConsentVersion.release_id).subquery())
    query = (select(ConsentVersion)
             .join(newest, (ConsentVersion.release_id == newest.c.release_id)
                   & (ConsentVersion.version == newest.c.v))
             .order_by(ConsentVersion.release_id.desc()))
    if case is not None:
        query = query.where(ConsentVersion.case_key == normalise_case(case))
    if mailboxes is not None:
        query = query.join(ConsentRelease, ConsentRelease.id == ConsentVersion.release_id) \
            .where(ConsentRelease.mailbox_id.in_(list(mailboxes)))
    return list(session.scalars(query).all())


def current_versions(session: Session, master_key: MasterKey, *, case: str | None,
                     mailboxes: Collection[int] | None,
                     keep: Callable[[ReleaseTerms], bool] | None = None,
                     limit: int | None = None) -> list[VersionView]:
    """The current version of every release (of one case; of the releases of ``mailboxes``,
    None: of all; whose terms ``keep`` accepts; the first ``limit``), newest release first,
    personal part opened. Only what is returned is opened. Not audited: whoever shows them
    records the reading (gateway.consent.search)."""
    rows = _latest_rows(session, case, mailboxes)
    if keep is not None:
        rows = [r for r in rows if keep(to_terms(r))]
    return [_view(session, master_key, r) for r in rows[:limit]]


def assign_mailbox(session: Session, release_id: int, mailbox_id: int, *, actor: str) -> None:
    """Give a release recorded without a mailbox (before migration 0023, by the CLI or the
    API) to the shared mailbox whose case it is; its team manages it from then on. Once: a
    release that belongs to a team is not moved to another by this."""
    release = session.get(ConsentRelease, release_id)
    if release is None:
        raise ConsentNotFound(f"no release {release_id}")
    if release.mailbox_id is not None:
        raise ConsentConflict(f"release {release_id} already belongs to mailbox "
                              f"{release.mailbox_id}", key="assigned_already")
    if session.scalar(select(Mailbox.id).where(Mailbox.id == mailbox_id)) is None:
        raise ConsentError(f"no mailbox {mailbox_id}", key="mailbox_missing")
    release.mailbox_id = mailbox_id
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.CONSENT_ASSIGNED,
                 detail={"release": release_id, "mailbox": mailbox_id})


def release_mailbox(session: Session, release_id: int) -> int | None:
    """The shared mailbox whose case the release is (None: recorded without one);
    ConsentNotFound for no such release."""
    row = session.execute(select(ConsentRelease.mailbox_id)
                          .where(ConsentRelease.id == release_id)).first()
    if row is None:
        raise ConsentNotFound(f"no release {release_id}")
    return row[0]


def latest_terms(session: Session, *, case: str | None = None) -> list[ReleaseTerms]:
    """The current version of every release (of one case), newest release first, without
    the personal part: what a list may show to anyone who may use the register."""
    return [to_terms(r) for r in _latest_rows(session, case)]


def read_release(session: Session, master_key: MasterKey, release_id: int, *, actor: str,
                 via: str) -> list[VersionView]:
    """Every version of a release with its personal part, for ``actor`` to see; the reading
    is recorded in the audit trail (release and versions, never the names) in the caller's
    transaction. ``via``: "cli", "api" or "web"."""
    views = history(session, master_key, release_id)
    audit.record(session, actor=actor, action=AuditAction.CONSENT_READ, detail={
        "release": release_id, "versions": [v.release.version for v in views], "via": via})
    return views


def read_releases(session: Session, master_key: MasterKey, *, case: str | None, actor: str,
                  via: str, mailboxes: Collection[int] | None = None) -> list[VersionView]:
    """The current version of every release (of one case; of the releases of ``mailboxes``,
    None: of all) with its personal part, for ``actor`` to see; recorded in the audit trail
    like ``read_release``."""
    views = [_view(session, master_key, r) for r in _latest_rows(session, case, mailboxes)]
    audit.record(session, actor=actor, action=AuditAction.CONSENT_LISTED, detail={
        "case": case, "releases": [[v.release.id, v.release.version] for v in views],
        "via": via})
    return views


def releases_for_case(session: Session, case: str) -> list[ReleaseTerms]:
    """Every version of every release of ``case``: the decision picks the newest itself.
    The personal parts stay sealed: the gate needs none of them."""
    rows = session.scalars(select(ConsentVersion)
                           .where(ConsentVersion.case_key == normalise_case(case))).all()
    return [to_terms(r) for r in rows]


def known_cases(session: Session, references: Sequence[str]) -> list[str]:
    """Which of ``references`` (normalised) the register has releases for, in the register's
    spelling and in the order given: one query on the indexed case key."""
    if not references:
        return []
    rows = session.execute(
        select(ConsentVersion.case_key, func.min(ConsentVersion.case_ref))
        .where(ConsentVersion.case_key.in_(references))
        .group_by(ConsentVersion.case_key)).all()
    spelling = {key: ref for key, ref in rows}
    return [spelling[r] for r in references if r in spelling]


def read_document(session: Session, master_key: MasterKey, release_id: int,
                  version: int | None = None, *, actor: str) -> tuple[DocumentInfo, int, bytes]:
    """The scan a version relies on (the latest by default), unsealed in memory, with the
    version it belongs to. The reading is recorded in the audit trail in the caller's
    transaction: whoever sees a signed release form is on record."""
    rows = session.scalars(select(ConsentVersion).where(ConsentVersion.release_id == release_id)
                           .order_by(ConsentVersion.version)).all()
    if not rows:
        raise ConsentNotFound(f"no release {release_id}")
    chosen = rows[-1] if version is None else next(
        (r for r in rows if r.version == version), None)
    if chosen is None:
        raise ConsentNotFound(f"release {release_id} has no version {version}")
    if chosen.document_id is None:
        raise ConsentNotFound(f"release {release_id} v{chosen.version} has no document")
    doc = session.get(ConsentDocument, chosen.document_id)
    assert doc is not None  # the foreign key guarantees it
    data = open_sealed(master_key, doc.sealed, _document_context(doc.sha256))
    audit.record(session, actor=actor, action=AuditAction.CONSENT_DOCUMENT_READ,
                 detail={"release": release_id, "version": chosen.version,
                         "document": doc.id})
    info = DocumentInfo(doc.id, doc.filename, doc.content_type, doc.size, doc.sha256)
    return info, chosen.version, data


def still_current(session: Session, used: Iterable[tuple[int, int]], now: datetime) -> bool:
    """Are the versions a decision relied on still the newest, and not revoked?

    Checked just before a report leaves: a revocation recorded while it was being signed
    and encrypted must still stop it.
    """
    for release_id, version in used:
        latest = _latest_row(session, release_id)
        if latest.version != version or (latest.revoked_at is not None
                                         and latest.revoked_at <= now):
            return False
    return True
