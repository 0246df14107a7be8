"""The key pages (/console/keys), for admins only (ConsoleArea.KEYS).

What ``xgate keys`` does, with the same functions of gateway.keydir, each change audited
there with the acting admin in the request's one transaction: approving a pending key
(harvested from a signed message, looked up in a Web Key Directory, imported) after
comparing its fingerprint, which also sends the mail held for it; rejecting a pending key;
revoking one; the keys that expire within crypto.expiry_warning_days; the office's own keys,
a new OpenPGP key for an address and retiring the old one (the rollover); downloading an own
key's public part (GET /console/keys/own/{id}/export, what ``xgate keys own export`` writes
for it, gateway.keydir.publish; never private material; each download audited); looking a
partner's key up in its Web Key Directory (POST /console/keys/lookup, gateway.keydir.wkd_lookup
as ``xgate keys lookup`` calls it: fetched outside the transaction, stored pending for approval
with its provenance; a failed lookup is named on the page). URLs carry key ids:
an unknown one is 404; a refusal is the page again with the reason, nothing stored.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.api.consents import MasterKeySource
from admin_ui.pages.ids import parse_id
from admin_ui.pages.keys.refusal import refusal_text
from admin_ui.pages.render import Renderer, language_of
from admin_ui.pages.tickets.uploads import InMemoryFormRequest
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import ConsoleArea, area_user
from crypto.wkd import WkdError, WkdKeyNotFound
from gateway import audit
from gateway.audit import AuditAction
from gateway.clock import Clock
from gateway.db import read_scope, session_scope
from gateway.keydir import keys, own_keys, own_openpgp, publish, wkd_lookup
from gateway.keydir.errors import KeyDirError, NotFound
from gateway.keydir.expiry import expiring
from gateway.keydir.models import KeyKind, KeySource, KeyStatus, PartnerKey
from gateway.keydir.own_import import import_own_key
from gateway.keydir.views import key_view, own_key_view, spoken_fingerprint
from gateway.settings import Settings
from gateway.web.catalogue import text

MAX_FORM = 16 * 1024
# A key file is a few KB; gateway.keydir refuses more than 1 MiB anyway.
MAX_UPLOAD = 1024 * 1024 + 16 * 1024
BASE = "/console/keys"
# The decisions on a partner key, by the word in its URL.
_DECISIONS: dict[str, Callable[[Session, int, str, Any], PartnerKey]] = {
    "approve": keys.approve_key, "reject": keys.reject_key, "revoke": keys.revoke_key}
_DONE = ("approve", "reject", "revoke", "generated", "retired", "imported", "own-imported",
         "looked-up")


def _field(value: object) -> str:
    return value if isinstance(value, str) else ""


async def _file(form: FormData) -> tuple[bytes, str]:
    """The uploaded file's bytes (kept in memory: it may hold a private key) and name."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return b"", ""
    return await upload.read(), upload.filename or ""


def no_file(request: Request) -> str:
    return text(language_of(request))("keys.no_file")


def _spoken(view: dict[str, Any]) -> str:
    return spoken_fingerprint(KeyKind(view["kind"]), view["fingerprint"])


def keys_page_router(auth: Authenticator, sessions: sessionmaker[Session],
                     master_key: MasterKeySource, settings: Settings, clock: Clock,
                     renderer: Renderer) -> APIRouter:
    router = APIRouter(prefix=BASE, route_class=guarded_route(auth, MAX_FORM))
    # Key files: parsed in memory, never spooled to disk (admin_ui.pages.tickets.uploads).
    uploads = APIRouter(prefix=BASE, route_class=guarded_route(auth, MAX_UPLOAD,
                                                               InMemoryFormRequest))
    Admin = Annotated[Staff, Depends(area_user(ConsoleArea.KEYS))]
    warn_days = settings.crypto.expiry_warning_days

    def overview(request: Request, staff: Staff, *, error: str | None = None,
                 own_form: dict[str, str] | None = None, lookup: str = "",
                 status: int = 200) -> Response:
        wanted = request.query_params.get("status")
        shown = KeyStatus(wanted) if wanted in {s.value for s in KeyStatus} else None
        with read_scope(sessions) as session:
            pending = [{**key_view(k), "spoken": _spoken(key_view(k))}
                       for k in keys.list_keys(session, KeyStatus.PENDING)]
            listed = [key_view(k) for k in keys.list_keys(session, shown)]
            soon = expiring(session, clock(), warn_days)
            own = [own_key_view(k) for k in own_keys.list_own_keys(session)]
        done = request.query_params.get("done")
        return renderer.page(request, "keys/overview.html", {
            "pending": pending, "keys": listed, "status": shown, "statuses": list(KeyStatus),
            "expiring": soon, "warn_days": warn_days, "own": own,
            "algorithms": own_openpgp.ALGORITHMS, "error": error,
            "own_form": own_form or {"address": "", "algorithm": own_openpgp.ALGORITHMS[0]},
            "done": done if done in _DONE else None, "lookup": lookup,
        }, staff=staff, status=status)

    def detail(request: Request, staff: Staff, key_id: int, *, error: str | None = None,
               status: int = 200) -> Response:
        with read_scope(sessions) as session:
            try:
                view = key_view(keys.get_key(session, key_id), with_data=True)
            except NotFound:
                raise HTTPException(404) from None
        done = request.query_params.get("done")
        return renderer.page(request, "keys/key.html", {
            "key": view, "spoken": _spoken(view), "error": error,
            "done": done if done in _DONE else None,
        }, staff=staff, status=status)

    @uploads.post("/import")
    async def import_partner_keys(request: Request, staff: Admin) -> Response:
        form = await request.form()
        data, filename = await _file(form)
        partner = _field(form.get("partner")).strip() or None
        approve = form.get("approve") == "on"

        def work() -> Response:
            if not data:
                return overview(request, staff, error=no_file(request),
                                status=409)
            try:
                with session_scope(sessions) as session:
                    found = keys.import_partner_keys(
                        session, data, actor=staff.username, source=KeySource.IMPORT,
                        source_detail=filename, partner=partner, approve=approve,
                        now=clock())
                    first = found[0].key.id
            except KeyDirError as exc:
                return overview(request, staff, error=refusal_text(request, exc), status=409)
            return RedirectResponse(f"{BASE}/{first}?done=imported", status_code=303)

        return await run_in_threadpool(work)

    @uploads.post("/own/import")
    async def import_own(request: Request, staff: Admin) -> Response:
        form = await request.form()
        data, _ = await _file(form)
        address = _field(form.get("address"))
        password = _field(form.get("password"))

        def work() -> Response:
            if not data:
                return overview(request, staff, error=no_file(request),
                                status=409)
            key = master_key()
            try:
                with session_scope(sessions) as session:
                    import_own_key(session, key, address, data,
                                   password=password.encode() if password else None,
                                   actor=staff.username, now=clock())
            except KeyDirError as exc:
                return overview(request, staff, error=refusal_text(request, exc), status=409)
            return RedirectResponse(f"{BASE}?done=own-imported#own-keys", status_code=303)

        return await run_in_threadpool(work)

    @router.get("")
    async def listing(request: Request, staff: Admin) -> Response:
        return await run_in_threadpool(overview, request, staff)

    @router.get("/{key_id}")
    async def show(request: Request, staff: Admin, key_id: str) -> Response:
        return await run_in_threadpool(detail, request, staff, parse_id(key_id))

    @router.post("/own/generate")
    async def generate(request: Request, staff: Admin) -> Response:
        form = await request.form()
        given = {"address": _field(form.get("address")),
                 "algorithm": _field(form.get("algorithm"))}

        def work() -> Response:
            key = master_key()
            try:
                with session_scope(sessions) as session:
                    own_openpgp.generate_own_openpgp(
                        session, key, given["address"], algorithm=given["algorithm"],
                        actor=staff.username, now=clock())
            except KeyDirError as exc:
                return overview(request, staff, error=refusal_text(request, exc),
                                own_form=given, status=409)
            return RedirectResponse(f"{BASE}?done=generated#own-keys", status_code=303)

        return await run_in_threadpool(work)

    @router.post("/lookup")
    async def lookup(request: Request, staff: Admin) -> Response:
        form = await request.form()
        address = _field(form.get("address")).strip()

        def work() -> Response:
            t = text(language_of(request))

            def failed(message: str) -> Response:
                return overview(request, staff, error=message, lookup=address, status=409)

            if not address:
                return failed(t("keys_lookup.no_address"))
            # Fetch before opening a transaction, as the CLI does: the network may take a while.
            try:
                found = wkd_lookup.fetch_for(settings, address)
            except WkdKeyNotFound:
                return failed(t("keys_lookup.not_found", address=address))
            except WkdError as exc:
                return failed(t("keys_lookup.failed", address=address, reason=str(exc)))
            except KeyDirError as exc:
                return failed(refusal_text(request, exc))
            try:
                with session_scope(sessions) as session:
                    results = wkd_lookup.import_found(session, found, address,
                                                      actor=staff.username, partner=None,
                                                      approve=False, now=clock())
                    first = results[0].key.id
            except KeyDirError as exc:
                return failed(t("keys_lookup.refused", address=address,
                                reason=refusal_text(request, exc)))
            return RedirectResponse(f"{BASE}/{first}?done=looked-up", status_code=303)

        return await run_in_threadpool(work)

    @router.get("/own/{key_id}/export")
    async def export_own(request: Request, staff: Admin, key_id: str) -> Response:
        kid = parse_id(key_id)

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    key, data = publish.export_own_key(session, kid, clock())
                    smime = key.kind is KeyKind.SMIME
                    audit.record(session, actor=staff.username,
                                 action=AuditAction.OWN_KEY_EXPORTED,
                                 detail={"own_key": key.id, "kind": key.kind.value,
                                         "address": key.address,
                                         "fingerprint": key.fingerprint})
            except NotFound:
                raise HTTPException(404) from None
            except KeyDirError as exc:
                return overview(request, staff, error=refusal_text(request, exc), status=409)
            name = f"own-key-{kid}.{'pem' if smime else 'asc'}"
            return Response(data, media_type="application/x-pem-file" if smime
                            else "application/pgp-keys",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

        return await run_in_threadpool(work)

    @router.post("/own/{key_id}/retire")
    async def retire(request: Request, staff: Admin, key_id: str) -> Response:
        kid = parse_id(key_id)

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    own_keys.retire_own_key(session, kid, actor=staff.username, now=clock())
            except NotFound:
                raise HTTPException(404) from None
            except KeyDirError as exc:
                return overview(request, staff, error=refusal_text(request, exc), status=409)
            return RedirectResponse(f"{BASE}?done=retired#own-keys", status_code=303)

        return await run_in_threadpool(work)

    # After the own-key routes: "/own/generate" would otherwise be taken for a decision.
    @router.post("/{key_id}/{decision}")
    async def decide(request: Request, staff: Admin, key_id: str, decision: str) -> Response:
        kid = parse_id(key_id)
        func = _DECISIONS.get(decision)
        if func is None:
            raise HTTPException(404)

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    func(session, kid, staff.username, clock())
            except NotFound:
                raise HTTPException(404) from None
            except KeyDirError as exc:
                return detail(request, staff, kid, error=refusal_text(request, exc), status=409)
            return RedirectResponse(f"{BASE}/{kid}?done={decision}", status_code=303)

        return await run_in_threadpool(work)

    both = APIRouter()
    # The uploads first: "/own/import" would otherwise be taken for a decision on key "own".
    both.include_router(uploads)
    both.include_router(router)
    return both
