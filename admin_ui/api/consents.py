"""The consent register's JSON API (/api/v1/consents): releases from confidentiality, the
dry run of the consent gate, and held reports.

Caseworkers record the releases they obtained, so unlike the key directory this is not
admin-only; who reaches which release and held report is the console's rule
(admin_ui.security.rights.consent_scope): leads and agents those of their own shared
mailboxes, admins all, the auditor and the DPO none. Another team's release answers 404
like one that does not exist. Route functions call the consent library in one transaction
each and turn its errors into JSON answers; the JSON shapes come from gateway.consent.views,
so the CLI's ``--json`` and this API say the same thing.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time, and they name ``StaffUser``, a local of consents_router.
import base64
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime, BeforeValidator, Field
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.api.errors import ApiError, invalid_field
from admin_ui.api.params import MAX_ID, RowId, StrictBody
from admin_ui.api.transactions import ApiSessions, DomainErrors
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import (
    check_held,
    check_recording_mailbox,
    check_release,
    consent_scope,
    held_in_scope,
    staff_user,
)
from crypto.at_rest import MasterKey
from crypto.errors import KeyFileError
from gateway.clock import Clock
from gateway.consent.actions import Recorded, record_change, record_release, record_revocation
from gateway.consent.documents import checked_scan
from gateway.consent.errors import ConsentConflict, ConsentError, ConsentNotFound
from gateway.consent.gate import dry_run
from gateway.consent.holds import approve_statutory, held_reports
from gateway.consent.records import (
    Document,
    ReleaseInput,
    read_document,
    read_release,
    read_releases,
)
from gateway.consent.views import decision_json, held_json, version_json
from gateway.policy.consent import GrantorRole, RecipientRef
from gateway.settings import Settings
from mailboxes.directory import mailbox_id_for

log = logging.getLogger(__name__)

# Generous caps on free text: the library checks meaning, these only keep absurd input (and
# values longer than their columns, which PostgreSQL refuses with an error) out.
MAX_NAME = 255
MAX_ADDRESS = 320
MAX_TEXT = 10_000
MAX_ITEMS = 100
# Room for everything in a release besides the scan, JSON escaping included.
BODY_OVERHEAD = 1024 * 1024

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# RFC 6838 type/subtype without parameters: the stored value becomes a response header.
_MEDIA_TYPE = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$"
_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"

ReleaseId = RowId


def _date_text(value: object) -> object:
    # Only the written form: pydantic would also take a number as a Unix time, and a
    # release "valid until 0" is a typing error, not 1 January 1970.
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


def _datetime_text(value: object) -> object:
    # As above: an ISO 8601 time, never a bare number; the zone is checked by AwareDatetime.
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date and time with a zone")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected an ISO 8601 date and time with a zone") from None


def _not_blank(value: object) -> object:
    # RecipientRef refuses a blank value with a ValueError; caught here it is a 422 naming
    # the field instead of a 500.
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be blank")
    return value


IsoDate = Annotated[date, BeforeValidator(_date_text)]
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_datetime_text)]


class GrantorBody(StrictBody):
    name: str = Field(max_length=MAX_NAME)
    role: GrantorRole


class RecipientBody(StrictBody):
    kind: Literal["partner", "address"]
    value: Annotated[str, BeforeValidator(_not_blank)] = Field(max_length=MAX_ADDRESS)


class DocumentBody(StrictBody):
    filename: str = Field(max_length=MAX_NAME, pattern=_NO_CONTROL)
    content_type: str = Field(max_length=100, pattern=_MEDIA_TYPE)
    data_base64: str = Field(min_length=1)


class ReleaseBody(StrictBody):
    case: str = Field(max_length=1000)
    data_subjects: list[Annotated[str, Field(max_length=MAX_NAME)]] = Field(
        max_length=MAX_ITEMS)
    granted_by: GrantorBody
    categories: list[Annotated[str, Field(max_length=MAX_NAME)]] = Field(
        max_length=MAX_ITEMS)
    recipients: list[RecipientBody] = Field(max_length=MAX_ITEMS)
    purpose: str = Field(max_length=MAX_TEXT)
    valid_from: IsoDate
    valid_until: IsoDate
    # How the release was obtained, if worth noting.
    note: str = Field(default="", max_length=MAX_TEXT)
    document: DocumentBody | None = None
    # The shared mailbox whose case it is, by its address: who manages the release (the
    # console's rule, admin_ui.security.rights.consent_scope). Only an admin may leave it out.
    mailbox: str | None = Field(default=None, max_length=MAX_ADDRESS)


class ChangeBody(ReleaseBody):
    # Why the release changes: required, the library refuses a blank one.
    note: str = Field(max_length=MAX_TEXT)
    # The version the caseworker looked at; a change made meanwhile is then a 409.
    expected_version: int | None = Field(default=None, ge=1, le=MAX_ID)


class RevokeBody(StrictBody):
    # How the revocation was received ("letter of 3 March").
    reason: str = Field(max_length=MAX_TEXT)
    revoked_at: IsoDateTime | None = None


class CheckBody(StrictBody):
    case: str = Field(max_length=1000)
    category: str = Field(max_length=MAX_NAME)
    recipient: str = Field(max_length=MAX_ADDRESS)
    on: IsoDate | None = Field(default=None, alias="date")


class ApproveBody(StrictBody):
    reason: str = Field(max_length=MAX_TEXT)


class MasterKeySource:
    """The master key, read on first use and then kept.

    Read lazily so the health check and the key API keep working when the key file is
    unreadable; only the consent register, which seals and opens scans, then answers 503.
    """

    def __init__(self, settings: Settings) -> None:
        self._path = settings.resolve(settings.storage.master_key_file)
        self._key: MasterKey | None = None

    def __call__(self) -> MasterKey:
        if self._key is None:
            try:
                # Two threads may both load it; they read the same file, so either wins.
                self._key = MasterKey.load(self._path)
            except KeyFileError as exc:
                log.error("consent API: %s", exc)
                raise ApiError(503, "unavailable",
                               "the master key cannot be read; see the server log") from None
        return self._key


def _release_input(body: ReleaseBody) -> ReleaseInput:
    return ReleaseInput(
        case=body.case, data_subjects=tuple(body.data_subjects),
        grantor_name=body.granted_by.name, grantor_role=body.granted_by.role,
        categories=tuple(body.categories),
        recipients=tuple(RecipientRef(r.kind, r.value) for r in body.recipients),
        purpose=body.purpose, valid_from=body.valid_from, valid_until=body.valid_until,
        note=body.note)


def _base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _document(body: DocumentBody | None, limit: int) -> Document | None:
    """The uploaded scan decoded, or 422; decoded before any transaction is opened."""
    if body is None:
        return None
    # Line breaks are tolerated: base64 from mail tools and ``base64`` itself wraps lines.
    text = "".join(body.data_base64.split())
    # Checked before decoding, so an oversize upload costs no decoding. The library checks
    # the decoded size exactly.
    if len(text) > _base64_length(limit):
        raise invalid_field("document.data_base64",
                            f"the document is larger than {limit} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise invalid_field("document.data_base64", "not valid base64") from None
    return Document(body.filename, body.content_type, data)


def _mailbox_id(session: Session, address: str | None) -> int | None:
    """The id of the shared mailbox ``address`` names; None for none given."""
    if address is None or not address.strip():
        return None
    found = mailbox_id_for(session, address.strip())
    if found is None:
        raise invalid_field("mailbox", f"no shared mailbox {address.strip()!r}")
    return found[0]


def _attachment(filename: str) -> str:
    # An ASCII fallback plus the exact name in RFC 5987 form: umlauts are common in German
    # file names, and a header value must be Latin-1 without quotes or line breaks.
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in filename) or "release"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def consents_router(auth: Authenticator, sessions: sessionmaker[Session], clock: Clock,
                    settings: Settings, master_key: Callable[[], MasterKey]) -> APIRouter:
    limit = settings.consent.max_document_bytes
    # A whole request is read into memory before validation: bound it by the largest scan
    # the settings allow, so an upload far beyond it is refused (413) while it arrives.
    router = APIRouter(prefix="/api/v1/consents",
                       route_class=guarded_route(auth, _base64_length(limit) + BODY_OVERHEAD))
    StaffUser = Annotated[Staff, Depends(staff_user)]
    zone = ZoneInfo(settings.consent.timezone)

    api = ApiSessions(sessions, DomainErrors(ConsentNotFound, ConsentConflict, ConsentError, 422))
    writing, reading = api.writing, api.reading

    def checked(document: Document | None) -> Document | None:
        """The scan as the console takes it (gateway.consent.documents): a PDF or an image
        by its first bytes, stored with that type whatever the client said, and clean in
        clamd's eyes; before any transaction, so no write lock waits for clamd."""
        if document is None or len(document.data) > limit:
            return document  # too large: the library refuses it, clamd need not see it
        try:
            kind = checked_scan(settings, document.data)
        except ConsentError as exc:
            raise ApiError(422, "refused", str(exc)) from None
        return Document(document.filename, kind, document.data)

    def recorded(result: Recorded, now: datetime) -> dict[str, Any]:
        return {"release": version_json(result.version, now, zone),
                "rechecked": list(result.rechecked)}

    # --- the register -----------------------------------------------------------------------

    # Reading a release opens the names of the people concerned: a writing transaction,
    # because the reading is recorded in the audit trail and commits with it.
    @router.get("")
    def list_releases(user: StaffUser,
                      case: Annotated[str | None, Query(max_length=1000)] = None
                      ) -> dict[str, Any]:
        key = master_key()
        now = clock()
        with writing() as session:
            scope = consent_scope(session, user)
            return {"releases": [version_json(v, now, zone) for v in read_releases(
                session, key, case=case, actor=user.username, via="api",
                mailboxes=scope.mailbox_ids)]}

    @router.post("", status_code=201)
    def add_release(user: StaffUser, body: ReleaseBody) -> dict[str, Any]:
        document = checked(_document(body.document, limit))
        key = master_key()
        now = clock()
        with writing() as session:
            mailbox_id = _mailbox_id(session, body.mailbox)
            check_recording_mailbox(consent_scope(session, user), mailbox_id)
            return recorded(record_release(session, key, settings, _release_input(body),
                                           document=document, actor=user.username, now=now,
                                           mailbox_id=mailbox_id), now)

    # The fixed paths before /{release_id}: the int converter already keeps "check" and
    # "held" from matching it, and the order keeps that true if the converter goes.
    @router.post("/check")
    def check(user: StaffUser, body: CheckBody) -> dict[str, Any]:
        # A dry run: nothing is stored, so nothing is audited either.
        now = clock()
        with reading() as session:
            consent_scope(session, user)
            return decision_json(dry_run(session, settings.consent, case=body.case,
                                         category=body.category, recipient=body.recipient,
                                         on=body.on, now=now))

    @router.get("/held")
    def list_held(user: StaffUser) -> dict[str, Any]:
        with reading() as session:
            scope = consent_scope(session, user)
            return {"held": [held_json(r) for r in
                             held_in_scope(session, scope, held_reports(session))]}

    @router.post("/held/{queue_id}/approve")
    def approve(user: StaffUser, queue_id: Annotated[str, Path(max_length=64)],
                body: ApproveBody) -> dict[str, Any]:
        with writing() as session:
            check_held(session, user, queue_id)
            # Four eyes: the library refuses the sender and anyone owning its address.
            approve_statutory(session, queue_id, approver=user.username, reason=body.reason,
                              now=clock())
        return {"queue_id": queue_id, "approved_by": user.username}

    @router.get("/{release_id:int}")
    def show_release(user: StaffUser, release_id: ReleaseId) -> dict[str, Any]:
        key = master_key()
        now = clock()
        with writing() as session:
            check_release(session, user, release_id)
            return {"id": release_id,
                    "versions": [version_json(v, now, zone) for v in read_release(
                        session, key, release_id, actor=user.username, via="api")]}

    @router.post("/{release_id:int}/versions", status_code=201)
    def change_release(user: StaffUser, release_id: ReleaseId,
                       body: ChangeBody) -> dict[str, Any]:
        document = checked(_document(body.document, limit))
        key = master_key()
        now = clock()
        with writing() as session:
            check_release(session, user, release_id)
            return recorded(record_change(session, key, settings, release_id,
                                          _release_input(body), document=document,
                                          actor=user.username, now=now,
                                          expected_version=body.expected_version), now)

    @router.post("/{release_id:int}/revoke")
    def revoke_release(user: StaffUser, release_id: ReleaseId,
                       body: RevokeBody) -> dict[str, Any]:
        now = clock()
        # In UTC, as the database gives it back: the answer here and every later read of
        # this version then show the same time, whatever zone the client wrote.
        at = body.revoked_at.astimezone(UTC) if body.revoked_at is not None else None
        key = master_key()
        with writing() as session:
            check_release(session, user, release_id)
            return recorded(record_revocation(session, key, release_id, actor=user.username,
                                              reason=body.reason, now=now, revoked_at=at),
                            now)

    @router.get("/{release_id:int}/document")
    def read_scan(user: StaffUser, release_id: ReleaseId,
                  version: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Response:
        key = master_key()
        # A writing transaction although it only reads the record: read_document records
        # the reading in the audit trail, and the two commit together, so no scan leaves
        # unrecorded.
        with writing() as session:
            check_release(session, user, release_id)
            info, _version, data = read_document(session, key, release_id, version,
                                                 actor=user.username)
        content_type = (info.content_type if re.fullmatch(_MEDIA_TYPE, info.content_type)
                        else "application/octet-stream")
        return Response(content=data, media_type=content_type, headers={
            "Content-Disposition": _attachment(info.filename),
            # A scan of a signed form with names of a family: no cache is to keep a copy.
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff"})

    return router
