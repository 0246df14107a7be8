"""The key directory's partner keys as JSON (/api/v1/keys), for admins only.

Route functions call the key directory's data functions in one transaction each and turn
their errors into JSON answers; they query nothing themselves.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time, and they name ``AdminUser``, a local of keys_router.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.api.params import RowId as KeyId
from admin_ui.api.params import StrictBody
from admin_ui.api.transactions import ApiSessions, DomainErrors
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Admin
from admin_ui.security.rights import admin_user
from gateway.clock import Clock
from gateway.keydir import keys
from gateway.keydir.errors import Conflict, KeyDirError, NotFound
from gateway.keydir.expiry import expiring
from gateway.keydir.models import KeySource, KeyStatus
from gateway.keydir.views import expiring_view, imported_view, key_view
from gateway.settings import Settings

# A certificate chain or a public key is a few KB; the parser refuses more than 1 MiB anyway.
MAX_KEY_TEXT = 1024 * 1024

# The JSON around it: the partner's name, the file name, the field names.
MAX_KEY_BODY = MAX_KEY_TEXT + 16 * 1024

# The key directory's refusals, shared with the partners router.
KEYDIR_ERRORS = DomainErrors(NotFound, Conflict, KeyDirError, 400)


class KeyImport(StrictBody):
    data: str = Field(min_length=1, max_length=MAX_KEY_TEXT,
                      description="PEM certificate(s) or an ASCII-armored OpenPGP public key")
    partner: str | None = None
    approve: bool = False
    # Where the admin got it (a file name, "by mail from ..."): kept as provenance.
    filename: str | None = Field(default=None, max_length=255)


def keys_router(auth: Authenticator, sessions: sessionmaker[Session], clock: Clock,
                settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api/v1", route_class=guarded_route(auth, MAX_KEY_BODY))
    AdminUser = Annotated[Admin, Depends(admin_user)]

    api = ApiSessions(sessions, KEYDIR_ERRORS)
    writing, reading = api.writing, api.reading

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

    return router
