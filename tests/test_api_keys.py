"""The key directory API (/api/v1) with FastAPI's TestClient against real SQLite and
PostgreSQL databases: authentication, the happy paths, JSON errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from admin_ui.app import create_app
from gateway import audit
from gateway.audit.view import opened as opened_audit
from gateway.clock import FakeClock
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.models import AuditEntry
from gateway.settings import OutboundPolicy, Settings
from gateway.staff import users as staff
from tests.support.staff_web import add_tokens, bearer
from tests.test_keydir_certs import fingerprint, key_pem, make_cert, pem, rsa_key, utcnow

PASSWORD = "ein sehr langes passwort"


def _basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN = bearer("chef")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    engine = make_engine(settings)
    with session_scope(make_session_factory(engine)) as session:
        staff.add_user(session, "chef", PASSWORD, admin=True)
        staff.add_user(session, "sachb", PASSWORD)
        staff.add_user(session, "alt", PASSWORD, admin=True)
        staff.set_disabled(session, "alt", True)
    engine.dispose()
    add_tokens(settings, "chef", "sachb", "alt")
    with TestClient(create_app(settings, clock=FakeClock(utcnow()))) as test_client:
        yield test_client


def _audit(settings: Settings) -> list[tuple[str, str]]:
    engine = make_engine(settings)
    try:
        with read_scope(make_session_factory(engine)) as session:
            assert audit.verify(session).ok
            return [(e.actor, e.action) for e in opened_audit(session, session.scalars(
                select(AuditEntry).order_by(AuditEntry.seq)))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("headers", [
    # HTTP Basic is no longer taken, not even with the right password.
    {}, _basic("chef"), bearer("niemand"), bearer("alt"),
    {"Authorization": "Bearer abc"}, {"Authorization": "Bearer " + "x" * 300},
])
def test_without_valid_credentials_401(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/v1/keys"), ("POST", "/api/v1/keys/1/approve"),
                         ("GET", "/api/v1/partners"), ("DELETE", "/api/v1/partners/x")):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="xgate admin"'
        assert response.json()["error"] == "unauthorized"


def test_staff_without_admin_right_403(client: TestClient) -> None:
    response = client.get("/api/v1/keys", headers=bearer("sachb"))
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden",
                               "message": "staff user sachb is not an admin"}


def test_partner_endpoints(client: TestClient, settings: Settings) -> None:
    body = {"name": "Jugendamt B", "patterns": ["Jugendamt-B.example"],
            "outbound_policy": "require-smime", "smime_gcm": True}
    created = client.post("/api/v1/partners", json=body, headers=ADMIN)
    assert created.status_code == 201
    assert created.json()["patterns"] == ["jugendamt-b.example"]
    assert created.json()["created_by"] == "chef"
    assert created.json()["inbound_invalid_signature"] == "quarantine"
    assert client.post("/api/v1/partners", json=body, headers=ADMIN).status_code == 409

    changed = client.put("/api/v1/partners/Jugendamt B", headers=ADMIN, json={
        "patterns": ["jugendamt-b.example", "post@ja-b.example"],
        "inbound_require_signature": True, "inbound_invalid_signature": "warn"})
    assert changed.status_code == 200
    view = changed.json()
    assert view["patterns"] == ["jugendamt-b.example", "post@ja-b.example"]
    assert view["inbound_require_signature"] and view["smime_gcm"]
    assert view["inbound_invalid_signature"] == "warn"
    unknown = client.put("/api/v1/partners/Jugendamt B", headers=ADMIN,
                         json={"inbound_invalid_signature": "deliver"})
    assert unknown.status_code == 422

    refused = client.put("/api/v1/partners/Jugendamt B", headers=ADMIN,
                         json={"outbound_policy": "plaintext"})
    assert refused.status_code == 400
    assert "non-sensitive" in refused.json()["message"]
    invalid = client.put("/api/v1/partners/Jugendamt B", headers=ADMIN,
                         json={"outbound_policy": "rot13"})
    assert invalid.status_code == 422 and invalid.json()["error"] == "invalid_request"
    extra = client.post("/api/v1/partners", headers=ADMIN,
                        json={"name": "X", "patterns": ["x.example"], "colour": "red"})
    assert extra.status_code == 422

    listed = client.get("/api/v1/partners", headers=ADMIN).json()["partners"]
    assert [p["name"] for p in listed] == ["Jugendamt B"]
    assert client.get("/api/v1/partners/Jugendamt B", headers=ADMIN).json() == view
    assert client.delete("/api/v1/partners/Jugendamt B", headers=ADMIN).status_code == 204
    missing = client.get("/api/v1/partners/Jugendamt B", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "no partner 'Jugendamt B'"}
    assert [a for _, a in _audit(settings)] == [
        "partner-added", "partner-changed", "partner-address-added", "partner-removed"]
    assert {actor for actor, _ in _audit(settings)} == {"chef"}


def test_key_endpoints(client: TestClient, settings: Settings) -> None:
    client.post("/api/v1/partners", headers=ADMIN,
                json={"name": "Stelle", "patterns": ["stelle.example"]})
    cert = make_cert("fach@stelle.example")
    imported = client.post("/api/v1/keys", headers=ADMIN, json={
        "data": pem(cert).decode(), "filename": "fach.pem"})
    assert imported.status_code == 201
    [key] = imported.json()["keys"]
    assert (key["outcome"], key["status"], key["partner"]) == ("added", "pending", "Stelle")
    assert (key["source"], key["source_detail"], key["added_by"]) == ("api", "fach.pem", "chef")
    assert key["fingerprint"] == fingerprint(cert)

    pending = client.get("/api/v1/keys?status=pending", headers=ADMIN).json()["keys"]
    assert [k["id"] for k in pending] == [key["id"]]
    assert client.get("/api/v1/keys?status=approved", headers=ADMIN).json()["keys"] == []
    assert client.get("/api/v1/keys?status=bogus", headers=ADMIN).status_code == 422

    shown = client.get(f"/api/v1/keys/{key['id']}", headers=ADMIN).json()
    assert shown["data"] == pem(cert).decode()

    approved = client.post(f"/api/v1/keys/{key['id']}/approve", headers=ADMIN)
    assert approved.status_code == 200 and approved.json()["decided_by"] == "chef"
    again = client.post(f"/api/v1/keys/{key['id']}/approve", headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert client.post(f"/api/v1/keys/{key['id']}/reject", headers=ADMIN).status_code == 409
    revoked = client.post(f"/api/v1/keys/{key['id']}/revoke", headers=ADMIN)
    assert revoked.json()["status"] == "revoked"
    assert client.post("/api/v1/keys/999/approve", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/keys/999", headers=ADMIN).status_code == 404
    # Beyond a database integer: refused as input, not an overflow in the driver (500).
    assert client.get("/api/v1/keys/100000000000000000000", headers=ADMIN).status_code == 422

    other = make_cert("x@b.example", key=rsa_key(3072, "b"))
    approved_now = client.post("/api/v1/keys", headers=ADMIN, json={
        "data": pem(other).decode(), "approve": True}).json()["keys"][0]
    assert approved_now["status"] == "approved" and approved_now["partner"] is None

    assert [a for _, a in _audit(settings)] == [
        "partner-added", "key-added", "key-approved", "key-revoked", "key-added"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"data": "kein Schlüssel"}, 400, "not a certificate or OpenPGP public key"),
    ({"data": (pem(make_cert("a@b.example")) + key_pem(rsa_key())).decode()}, 400,
     "contains a private key"),
    ({"data": pem(make_cert("a@b.example", key=rsa_key(1024))).decode()}, 400,
     "below the minimum of 2048"),
    ({"data": pem(make_cert("a@b.example")).decode(), "partner": "Niemand"}, 404,
     "no partner 'Niemand'"),
    ({"data": ""}, 422, ""),
    ({}, 422, ""),
])
def test_import_errors_are_json(client: TestClient, body: dict[str, object], status: int,
                                message: str) -> None:
    response = client.post("/api/v1/keys", headers=ADMIN, json=body)
    assert response.status_code == status
    answer = response.json()
    # Only the schema's refusals (422) name fields apart; see test_invalid_requests_name_...
    shape = {"error", "message", "fields"} if status == 422 else {"error", "message"}
    assert set(answer) == shape and message in answer["message"]


def test_invalid_requests_name_the_field_and_the_problem(client: TestClient) -> None:
    # One handler for every JSON API (admin_ui.api.errors): which field, and what is wrong.
    policy = client.put("/api/v1/partners/Jugendamt B", headers=ADMIN,
                        json={"outbound_policy": "rot13"})
    assert policy.status_code == 422
    # Every policy named, as pydantic lists an enum's values (so a new policy is no surprise).
    quoted = [f"'{p.value}'" for p in OutboundPolicy]
    expected = f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"
    assert policy.json() == {"error": "invalid_request",
                             "message": f"outbound_policy: {expected}",
                             "fields": {"outbound_policy": expected}}
    several = client.post("/api/v1/partners", headers=ADMIN, json={
        "name": "", "patterns": [], "colour": "red", "smime_gcm": "vielleicht"}).json()
    assert set(several["fields"]) == {"name", "patterns", "colour", "smime_gcm"}
    assert several["fields"]["colour"] == "Extra inputs are not permitted"
    assert several["fields"]["name"].startswith("String should have at least 1 character")
    assert all(f"{field}: {problem}" in several["message"]
               for field, problem in several["fields"].items())
    missing = client.post("/api/v1/keys", headers=ADMIN, json={})
    assert missing.json()["fields"] == {"data": "Field required"}
    days = client.get("/api/v1/keys/expiring?days=0", headers=ADMIN).json()
    assert list(days["fields"]) == ["query parameter days"]
    broken = client.post("/api/v1/partners", headers={**ADMIN,
                                                      "Content-Type": "application/json"},
                         content=b'{"name": ')
    assert broken.json()["fields"] == {"body": "not valid JSON"}


def test_expiring(client: TestClient) -> None:
    from datetime import timedelta

    soon = make_cert("a@b.example", not_after=utcnow() + timedelta(days=10))
    client.post("/api/v1/keys", headers=ADMIN, json={"data": pem(soon).decode(),
                                                     "approve": True})
    answer = client.get("/api/v1/keys/expiring", headers=ADMIN).json()
    assert answer["days"] == 30 and [k["addresses"] for k in answer["keys"]] == [["a@b.example"]]
    assert client.get("/api/v1/keys/expiring?days=5", headers=ADMIN).json()["keys"] == []
    assert client.get("/api/v1/keys/expiring?days=0", headers=ADMIN).status_code == 422
