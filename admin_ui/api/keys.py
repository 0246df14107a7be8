"""The key directory's JSON API (/api/v1): partner keys and partners, for admins only.

Route functions call the key directory's data functions in one transaction each and turn
their errors into JSON answers; they query nothing themselves.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time, and they name ``AdminUser``, a local of keys_router.
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.api.params import RowId as KeyId
from admin_ui.api.transactions import ApiSessions, DomainErrors
from admin_ui.security.basic import Admin, admin_dependency, install_api_error_handler
from gateway.clock import Clock
from gateway.keydir import keys, partners
from gateway.keydir.errors import Conflict, KeyDirError, NotFound
from gateway.keydir.expiry import expiring
from gateway.keydir.models import InvalidSignature, KeySource, KeyStatus
from gateway.keydir.views import expiring_view, imported_view, key_view, partner_view
from gateway.settings import OutboundPolicy, Settings

# A certificate chain or a public key is a few KB; the parser refuses more than 1 MiB anyway.
MAX_KEY_TEXT = 1024 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyImport(_Body):
    data: str = Field(min_length=1, max_length=MAX_KEY_TEXT,
                      description="PEM certificate(s) or an ASCII-armored OpenPGP public key")
    partner: str | None = None
    approve: bool = False
    # Where the admin got it (a file name, "by mail from ..."): kept as provenance.
    filename: str | None = Field(default=None, max_length=255)


class PartnerCreate(_Body):
    name: str = Field(min_length=1, max_length=255)
    patterns: list[str] = Field(min_length=1)
    outbound_policy: OutboundPolicy = OutboundPolicy.EITHER
    smime_gcm: bool = False
    openpgp_inline: bool = False
    inbound_require_encryption: bool = False
    inbound_require_signature: bool = False
    # A signature that is present but fails: quarantined, or delivered with a warning.
    inbound_invalid_signature: InvalidSignature = InvalidSignature.QUARANTINE
    non_sensitive: bool = False
    note: str = ""


class PartnerUpdate(_Body):
    """Fields left out stay as they are; ``patterns``, if given, is the complete new set."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    patterns: list[str] | None = Field(default=None, min_length=1)
    outbound_policy: OutboundPolicy | None = None
    smime_gcm: bool | None = None
    openpgp_inline: bool | None = None
    inbound_require_encryption: bool | None = None
    inbound_require_signature: bool | None = None
    inbound_invalid_signature: InvalidSignature | None = None
    non_sensitive: bool | None = None
    note: str | None = None


def include_keys_api(app: FastAPI, sessions: sessionmaker[Session], clock: Clock,
                     settings: Settings) -> None:
    install_api_error_handler(app)
    app.include_router(keys_router(sessions, clock, settings))


def keys_router(sessions: sessionmaker[Session], clock: Clock,
                settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    AdminUser = Annotated[Admin, Depends(admin_dependency(sessions))]

    api = ApiSessions(sessions, DomainErrors(NotFound, Conflict, KeyDirError, 400))
    writing, reading = api.writing, api.reading

    # --- partner keys -----------------------------------------------------------------------

    @router.get("/keys")
    def list_keys(_admin: AdminUser, status: KeyStatus | None = None,
                  partner: str | None = None) -> dict[str, Any]:
        with reading() as session:
            return {"keys": [key_view(k) for k in keys.list_keys(session, status, partner)]}

    # Before /keys/{key_id}, which would otherwise take "expiring" for an id.
    @router.get("/keys/expiring")
    def expiring_keys(_admin: AdminUser,
                      days: Annotated[int | None, Query(ge=1, le=3650)] = None
                      ) -> dict[str, Any]:
        within = days or settings.crypto.expiry_warning_days
        with reading() as session:
            found = expiring(session, clock(), within)
        return {"days": within, "keys": [expiring_view(k) for k in found]}

    @router.get("/keys/{key_id}")
    def show_key(_admin: AdminUser, key_id: KeyId) -> dict[str, Any]:
        with reading() as session:
            return key_view(keys.get_key(session, key_id), with_data=True)

    @router.post("/keys", status_code=201)
    def import_keys(admin: AdminUser, body: KeyImport) -> dict[str, Any]:
        with writing() as session:
            imported = keys.import_partner_keys(
                session, body.data.encode("utf-8"), actor=admin.username,
                source=KeySource.API, source_detail=body.filename or "",
                partner=body.partner, approve=body.approve, now=clock())
            return {"keys": [imported_view(i) for i in imported]}

    def decision(func: Callable[..., Any]) -> Callable[[Admin, int], dict[str, Any]]:
        def decide(admin: AdminUser, key_id: KeyId) -> dict[str, Any]:
            with writing() as session:
                return key_view(func(session, key_id, admin.username, clock()))
        return decide

    router.post("/keys/{key_id}/approve")(decision(keys.approve_key))
    router.post("/keys/{key_id}/reject")(decision(keys.reject_key))
    router.post("/keys/{key_id}/revoke")(decision(keys.revoke_key))

    # --- partners ---------------------------------------------------------------------------

    @router.get("/partners")
    def list_partners(_admin: AdminUser) -> dict[str, Any]:
        with reading() as session:
            return {"partners": [partner_view(p) for p in partners.list_partners(session)]}

    @router.post("/partners", status_code=201)
    def add_partner(admin: AdminUser, body: PartnerCreate) -> dict[str, Any]:
        with writing() as session:
            return partner_view(partners.add_partner(
                session, body.name, actor=admin.username, now=clock(),
                patterns=body.patterns, outbound_policy=body.outbound_policy,
                smime_gcm=body.smime_gcm, openpgp_inline=body.openpgp_inline,
                inbound_require_encryption=body.inbound_require_encryption,
                inbound_require_signature=body.inbound_require_signature,
                inbound_invalid_signature=body.inbound_invalid_signature,
                non_sensitive=body.non_sensitive, note=body.note))

    @router.get("/partners/{name}")
    def show_partner(_admin: AdminUser, name: str) -> dict[str, Any]:
        with reading() as session:
            return partner_view(partners.get_partner(session, name))

    @router.put("/partners/{name}")
    def update_partner(admin: AdminUser, name: str, body: PartnerUpdate) -> dict[str, Any]:
        now = clock()
        with writing() as session:
            partner = partners.update_partner(
                session, name, actor=admin.username, now=now, new_name=body.name,
                outbound_policy=body.outbound_policy, smime_gcm=body.smime_gcm,
                openpgp_inline=body.openpgp_inline,
                inbound_require_encryption=body.inbound_require_encryption,
                inbound_require_signature=body.inbound_require_signature,
                inbound_invalid_signature=body.inbound_invalid_signature,
                non_sensitive=body.non_sensitive, note=body.note)
            if body.patterns is not None:
                _replace_patterns(session, partner.name, body.patterns, admin.username, now)
            return partner_view(partners.get_partner(session, partner.name))

    @router.delete("/partners/{name}", status_code=204)
    def delete_partner(admin: AdminUser, name: str) -> Response:
        with writing() as session:
            partners.delete_partner(session, name, actor=admin.username)
        return Response(status_code=204)

    return router


def _replace_patterns(session: Session, name: str, wanted: list[str], actor: str,
                      now: datetime) -> None:
    current = {p.pattern for p in partners.get_partner(session, name).patterns}
    normalised = [p.strip().lower() for p in wanted]
    # Removed first, so a pattern can move between spellings without a conflict.
    for pattern in sorted(current - set(normalised)):
        partners.remove_partner_pattern(session, name, pattern, actor=actor, now=now)
    for pattern in dict.fromkeys(normalised):
        if pattern not in current:
            partners.add_partner_pattern(session, name, pattern, actor=actor, now=now)
