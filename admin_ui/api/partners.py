"""The key directory's partners as JSON (/api/v1/partners), for admins only: who we
exchange with, their address patterns and what their mail must be (encrypted, signed).

Route functions call the key directory's data functions in one transaction each and turn
their errors into JSON answers; they query nothing themselves.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time, and they name ``AdminUser``, a local of partners_router.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import Field
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.api.keys import KEYDIR_ERRORS
from admin_ui.api.params import StrictBody
from admin_ui.api.transactions import ApiSessions
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Admin
from admin_ui.security.rights import admin_user
from gateway.clock import Clock
from gateway.keydir import partners
from gateway.keydir.models import InvalidSignature
from gateway.keydir.views import partner_view
from gateway.settings import OutboundPolicy


class PartnerCreate(StrictBody):
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


class PartnerUpdate(StrictBody):
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


def partners_router(auth: Authenticator, sessions: sessionmaker[Session],
                    clock: Clock) -> APIRouter:
    # A partner is a name, a few flags and addresses: 64 KiB is generous.
    router = APIRouter(prefix="/api/v1", route_class=guarded_route(auth, 64 * 1024))
    AdminUser = Annotated[Admin, Depends(admin_user)]

    api = ApiSessions(sessions, KEYDIR_ERRORS)
    writing, reading = api.writing, api.reading

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
                partners.replace_partner_patterns(session, partner.name, body.patterns,
                                                  actor=admin.username, now=now)
            return partner_view(partners.get_partner(session, partner.name))

    @router.delete("/partners/{name}", status_code=204)
    def delete_partner(admin: AdminUser, name: str) -> Response:
        with writing() as session:
            partners.delete_partner(session, name, actor=admin.username)
        return Response(status_code=204)

    return router

