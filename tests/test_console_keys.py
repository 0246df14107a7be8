"""The console's key pages over HTTP (TestClient, real SQLite and PostgreSQL, real
certificates and a real OpenPGP key generation): pending keys (harvested from a signed
message, looked up in a Web Key Directory) with fingerprint and provenance, approving one
(which re-queues the mail held for it) and rejecting one, refusals on the page, expiring
keys, the office's own keys with a new key and retiring the old one, downloading an own key's
public part (the bytes ``xgate keys own export`` writes, never private material); every change
and download audited
with the acting admin; the rights (admins only; auditor, DPO and caseworker 403) and
unknown ids 404."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from admin_ui.app import create_app
from crypto import pgp_keys
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.keydir import keys, own_keys, publish
from gateway.keydir.models import KeyKind, KeySource, KeyStatus, OwnKey
from gateway.keydir.views import spoken_fingerprint
from gateway.models import Direction, HoldKind, Message, MessageState
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services
from tests.support.console_admin import (
    PASSWORD,
    add_console_admins,
    as_user,
    audit_trail,
    not_forbidden,
)
from tests.support.smime_pki import make_ca, make_person
from tests.support.staff_web import BASE_URL, enrol, form_csrf, web_login
from tests.test_keydir_certs import der, fingerprint, make_cert, pem, utcnow

pytestmark = pytest.mark.usefixtures("cheap_hashing")

ALICE = as_user("alice")
PARTNER = "post@jugendamt-b.example"


@pytest.fixture
def client(services: Services, clock: FakeClock) -> Iterator[TestClient]:
    add_console_admins(services.settings, services.sessions)
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def harvested(services: Services) -> tuple[int, str]:
    cert = make_cert(PARTNER)
    with session_scope(services.sessions) as s:
        key = keys.harvest(s, kind=KeyKind.SMIME, data=der(cert), addresses=[PARTNER],
                           queue_id="A1B2C3D4E5F60708", actor="worker", now=services.clock())
        assert key is not None
        return key.id, fingerprint(cert)


def looked_up(services: Services) -> int:
    with session_scope(services.sessions) as s:
        found = keys.import_partner_keys(
            s, pem(make_cert("kita@traeger.example")), actor="alice", source=KeySource.WKD,
            source_detail="https://openpgpkey.traeger.example/...", approve=False,
            now=services.clock(), require_address="kita@traeger.example")
        return found[0].key.id


def held_for(services: Services, address: str) -> str:
    with session_scope(services.sessions) as s:
        qid = store_received(s, services.master_key, Envelope(
            Direction.OUTBOUND, "asd@jugendamt.example", [address],
            b"From: asd@jugendamt.example\r\nTo: " + address.encode() +
            b"\r\nSubject: Hilfeplan\r\n\r\nText\r\n"), actor="test",
            now=services.clock()).queue_id
        s.execute(update(Message).where(Message.queue_id == qid).values(
            state=MessageState.HELD, hold_kind=HoldKind.KEY_MISSING,
            reason="encryption is required but no usable key exists"))
    return qid


def state_of(services: Services, qid: str) -> MessageState:
    with read_scope(services.sessions) as s:
        return s.scalars(select(Message.state).where(Message.queue_id == qid)).one()


def status_of(services: Services, key_id: int) -> KeyStatus:
    with read_scope(services.sessions) as s:
        return keys.get_key(s, key_id).status


def test_pending_keys_with_provenance_approve_and_reject(client: TestClient,
                                                         services: Services) -> None:
    key_id, print_ = harvested(services)
    wkd_id = looked_up(services)
    qid = held_for(services, PARTNER)
    page = client.get("/console/keys", headers=ALICE).text
    assert f'id="pending-{key_id}"' in page and f'id="pending-{wkd_id}"' in page
    assert spoken_fingerprint(KeyKind.SMIME, print_) in page.replace("<wbr>", "")
    assert "aus signierter Nachricht übernommen (A1B2C3D4E5F60708)" in page
    assert "im Web Key Directory nachgeschlagen" in page
    detail = client.get(f"/console/keys/{key_id}", headers=ALICE).text
    assert 'id="approve"' in detail and 'id="reject"' in detail
    assert "BEGIN CERTIFICATE" in detail

    approved = client.post(f"/console/keys/{key_id}/approve", headers=ALICE,
                           follow_redirects=False)
    assert approved.status_code == 303
    assert status_of(services, key_id) is KeyStatus.APPROVED
    # The mail held for the missing key goes to the workers again.
    assert state_of(services, qid) is MessageState.DEFERRED
    rejected = client.post(f"/console/keys/{wkd_id}/reject", headers=ALICE,
                           follow_redirects=False)
    assert rejected.status_code == 303 and status_of(services, wkd_id) is KeyStatus.REJECTED
    trail = [(actor, action) for actor, action, _ in audit_trail(services.sessions)]
    assert ("alice", "key-approved") in trail and ("alice", "key-rejected") in trail
    assert ("alice", "requeued") in trail


def test_refused_decisions_are_named_and_change_nothing(client: TestClient,
                                                        services: Services) -> None:
    key_id, _ = harvested(services)
    client.post(f"/console/keys/{key_id}/approve", headers=ALICE)
    again = client.post(f"/console/keys/{key_id}/approve", headers=ALICE)
    assert again.status_code == 409 and f"Schlüssel {key_id} ist schon freigegeben" in again.text
    reject = client.post(f"/console/keys/{key_id}/reject", headers=ALICE)
    assert reject.status_code == 409 and "Nur ein wartender Schlüssel" in reject.text
    assert status_of(services, key_id) is KeyStatus.APPROVED
    assert client.post(f"/console/keys/{key_id}/explode", headers=ALICE).status_code == 404


def test_expiring_keys_are_listed(client: TestClient, services: Services) -> None:
    soon = make_cert("bald@stelle.example", not_after=utcnow() + timedelta(days=10))
    later = make_cert("spaet@stelle.example", not_after=utcnow() + timedelta(days=300))
    with session_scope(services.sessions) as s:
        for cert in (soon, later):
            keys.import_partner_keys(s, pem(cert), actor="t", source=KeySource.IMPORT,
                                     source_detail="", approve=True, now=services.clock())
    page = client.get("/console/keys", headers=ALICE).text
    section = page.split('id="expiring"', 1)[1].split("</table>", 1)[0]
    assert "bald@stelle.example" in section and "spaet@stelle.example" not in section


def test_own_key_rollover(client: TestClient, services: Services) -> None:
    made = client.post("/console/keys/own/generate", headers=ALICE, follow_redirects=False,
                       data={"address": "asd@jugendamt.example", "algorithm": "cv25519"})
    assert made.status_code == 303
    client.post("/console/keys/own/generate", headers=ALICE,
                data={"address": "asd@jugendamt.example", "algorithm": "cv25519"})
    with read_scope(services.sessions) as s:
        (old, old_print), (new, _) = [(k.id, k.fingerprint) for k in
                                      own_keys.list_own_keys(s, "asd@jugendamt.example")]
    page = client.get("/console/keys", headers=ALICE).text
    assert f'id="retire-{old}"' in page and old_print in page
    retired = client.post(f"/console/keys/own/{old}/retire", headers=ALICE,
                          follow_redirects=False)
    assert retired.status_code == 303
    with read_scope(services.sessions) as s:
        assert own_keys.get_own_key(s, old).retired
        assert not own_keys.get_own_key(s, new).retired
    again = client.post(f"/console/keys/own/{old}/retire", headers=ALICE)
    assert again.status_code == 409 and "ist schon stillgelegt" in again.text
    trail = [(actor, action) for actor, action, _ in audit_trail(services.sessions)]
    assert trail.count(("alice", "own-key-added")) == 2
    assert ("alice", "own-key-retired") in trail


@pytest.mark.parametrize(("address", "algorithm", "message"), [
    ("@jugendamt.example", "cv25519", "braucht eine Adresse, keine ganze Domain"),
    ("kein adresse", "cv25519", "„kein adresse“ ist keine gültige E-Mail-Adresse"),
    ("asd@jugendamt.example", "rsa1024", "Unbekanntes Verfahren"),
])
def test_bad_own_key_input_is_named(client: TestClient, services: Services, address: str,
                                    algorithm: str, message: str) -> None:
    response = client.post("/console/keys/own/generate", headers=ALICE,
                           data={"address": address, "algorithm": algorithm})
    assert response.status_code == 409
    assert message in html.unescape(response.text)
    with read_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(OwnKey)) == 0


def test_other_roles_get_403_and_unknown_ids_404(client: TestClient,
                                                 services: Services) -> None:
    key_id, _ = harvested(services)
    client.post("/console/keys/own/generate", headers=ALICE,
                data={"address": "asd@jugendamt.example", "algorithm": "cv25519"})
    with read_scope(services.sessions) as s:
        own_id = own_keys.list_own_keys(s)[0].id
    for method, path in (("GET", "/console/keys"), ("GET", f"/console/keys/{key_id}"),
                         ("POST", f"/console/keys/{key_id}/approve"),
                         ("POST", f"/console/keys/{key_id}/reject"),
                         ("POST", f"/console/keys/{key_id}/revoke"),
                         ("POST", "/console/keys/own/generate"),
                         ("POST", f"/console/keys/own/{own_id}/retire")):
        assert list(not_forbidden(client, method, path)) == [], path
    assert status_of(services, key_id) is KeyStatus.PENDING
    for bad in (str(key_id + 100), "x", "9" * 20):
        assert client.get(f"/console/keys/{bad}", headers=ALICE).status_code == 404
        for decision in ("approve", "reject", "revoke"):
            assert client.post(f"/console/keys/{bad}/{decision}",
                               headers=ALICE).status_code == 404
        assert client.post(f"/console/keys/own/{bad}/retire",
                           headers=ALICE).status_code == 404
    with read_scope(services.sessions) as s:
        assert not own_keys.get_own_key(s, own_id).retired


def test_forms_need_the_csrf_token(client: TestClient, services: Services,
                                   clock: FakeClock) -> None:
    key_id, _ = harvested(services)
    csrf = web_login(client, "alice", PASSWORD, enrol(services.settings, "alice"), at=clock())
    assert form_csrf(client.get(f"/console/keys/{key_id}").text) == csrf
    assert client.post(f"/console/keys/{key_id}/approve").status_code == 403
    assert status_of(services, key_id) is KeyStatus.PENDING
    done = client.post(f"/console/keys/{key_id}/approve", data={"csrf_token": csrf},
                       follow_redirects=False)
    assert done.status_code == 303 and status_of(services, key_id) is KeyStatus.APPROVED


def test_partner_key_upload(client: TestClient, services: Services) -> None:
    cert = make_cert(PARTNER)
    empty = client.post("/console/keys/import", headers=ALICE,
                        files={"file": ("leer.pem", b"", "application/octet-stream")})
    assert empty.status_code == 409 and "Bitte wählen Sie eine Schlüsseldatei" in empty.text
    garbage = client.post("/console/keys/import", headers=ALICE,
                          files={"file": ("x.pem", b"kein Schluessel", "text/plain")})
    assert garbage.status_code == 409 and 'id="form-error"' in garbage.text
    done = client.post("/console/keys/import", headers=ALICE, follow_redirects=False,
                       files={"file": ("fachdienst.pem", pem(cert), "application/x-pem-file")})
    assert done.status_code == 303
    key_id = int(done.headers["location"].split("/")[-1].split("?")[0])
    with read_scope(services.sessions) as s:
        key = keys.get_key(s, key_id)
        assert key.status is KeyStatus.PENDING and key.source is KeySource.IMPORT
        assert key.source_detail == "fachdienst.pem" and key.added_by == "alice"
    assert list(not_forbidden(client, "POST", "/console/keys/import")) == []


def test_own_smime_key_upload_in_memory(client: TestClient, services: Services,
                                        tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca", bits=2048)
    person = make_person(tmp_path, "asd", "asd@jugendamt.example", ca)
    p12 = pkcs12.serialize_key_and_certificates(
        b"asd", person.key, person.cert, None,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(b"geheim"))
    wrong = client.post("/console/keys/own/import", headers=ALICE,
                        data={"address": "asd@jugendamt.example", "password": "falsch"},
                        files={"file": ("asd.p12", p12, "application/x-pkcs12")})
    assert wrong.status_code == 409 and 'id="form-error"' in wrong.text
    done = client.post("/console/keys/own/import", headers=ALICE, follow_redirects=False,
                       data={"address": "asd@jugendamt.example", "password": "geheim"},
                       files={"file": ("asd.p12", p12, "application/x-pkcs12")})
    assert done.status_code == 303, done.text
    with read_scope(services.sessions) as s:
        [own] = own_keys.list_own_keys(s)
        assert own.kind is KeyKind.SMIME and own.address == "asd@jugendamt.example"
        own_id = own.id
    assert ("alice", "own-key-added") in [(a, b) for a, b, _ in audit_trail(services.sessions)]
    assert list(not_forbidden(client, "POST", "/console/keys/own/import")) == []
    # Its download: the certificate as PEM, as the CLI exports it; the private key never.
    download = client.get(f"/console/keys/own/{own_id}/export", headers=ALICE)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/x-pem-file")
    assert download.content == person.cert.public_bytes(serialization.Encoding.PEM)
    assert b"PRIVATE" not in download.content
    assert ("alice", "own-key-exported") in [(a, b) for a, b, _ in
                                             audit_trail(services.sessions)]


def test_own_openpgp_key_download(client: TestClient, services: Services) -> None:
    client.post("/console/keys/own/generate", headers=ALICE,
                data={"address": "asd@jugendamt.example", "algorithm": "cv25519"})
    with read_scope(services.sessions) as s:
        [own] = own_keys.list_own_keys(s)
        own_id, own_print = own.id, own.fingerprint
        _, cli_bytes = publish.export_own_keys(s, services.clock(),
                                               address="asd@jugendamt.example",
                                               kind=KeyKind.OPENPGP)
    page = client.get("/console/keys", headers=ALICE).text
    assert f'href="/console/keys/own/{own_id}/export"' in page
    download = client.get(f"/console/keys/own/{own_id}/export", headers=ALICE)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/pgp-keys")
    assert f'filename="own-key-{own_id}.asc"' in download.headers["content-disposition"]
    assert download.content == cli_bytes
    assert download.content.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert not pgp_keys.has_secret_material(download.content)
    exported = [d for a, b, d in audit_trail(services.sessions)
                if (a, b) == ("alice", "own-key-exported")]
    assert len(exported) == 1 and own_print in str(exported[0])
    # Only a key in use goes out, as with the CLI; unknown ids 404; other roles 403.
    client.post(f"/console/keys/own/{own_id}/retire", headers=ALICE)
    refused = client.get(f"/console/keys/own/{own_id}/export", headers=ALICE)
    assert refused.status_code == 409
    assert f"Der eigene Schlüssel {own_id} ist nicht in Gebrauch" in refused.text
    for bad in (str(own_id + 100), "x", "9" * 20):
        assert client.get(f"/console/keys/own/{bad}/export", headers=ALICE).status_code == 404
    assert list(not_forbidden(client, "GET", f"/console/keys/own/{own_id}/export")) == []
    assert [b for _, b, _ in audit_trail(services.sessions)].count("own-key-exported") == 1
