"""``xgate keys lookup`` in the browser: the form on /console/keys looks a partner's OpenPGP key
up in its Web Key Directory (a real HTTPS server on loopback, tests.support.wkd_server, with a
real gpg key), through gateway.keydir.wkd_lookup as the CLI calls it, on SQLite and PostgreSQL.
The key found is stored pending with its provenance, to be approved on its page; a lookup that
fails (nothing published, a key for someone else, no server, a timeout) is named on the page
and stores nothing; admins only; the form needs the CSRF token."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin_ui.app import create_app
from crypto.wkd import wkd_urls
from gateway.clock import FakeClock
from gateway.db import read_scope
from gateway.keydir import keys
from gateway.keydir.models import KeySource, KeyStatus, PartnerKey
from gateway.services import Services
from gateway.settings import Settings
from tests.support.console_admin import (
    PASSWORD,
    add_console_admins,
    as_user,
    audit_trail,
    not_forbidden,
)
from tests.support.gpg_partner import GpgPartner
from tests.support.pki import NamedPki, make_named_pki
from tests.support.staff_web import BASE_URL, enrol, web_login
from tests.support.wkd_server import BlackHole, WkdServer, closed_port

pytestmark = pytest.mark.usefixtures("cheap_hashing")

ALICE = as_user("alice")
PARTNER = "fachdienst@jugendamt-b.example"
HOSTS = ("openpgpkey.jugendamt-b.example", "jugendamt-b.example")
PATH = wkd_urls(PARTNER)[0].split("jugendamt-b.example", 1)[1].split("?")[0]


@dataclass(frozen=True)
class PartnerKeys:
    fingerprint: str
    key: bytes  # the partner's own key, for PARTNER
    wrong: bytes  # someone else's key, published under PARTNER's name


@pytest.fixture(scope="module")
def wkd_pki(tmp_path_factory: pytest.TempPathFactory) -> NamedPki:
    return make_named_pki(tmp_path_factory.mktemp("wkd-console"), {"partner": list(HOSTS)})


@pytest.fixture(scope="module")
def partner_keys(tmp_path_factory: pytest.TempPathFactory) -> PartnerKeys:
    with GpgPartner.create(tmp_path_factory.mktemp("gpg") / "home") as gpg:
        fpr = gpg.generate(f"Fachdienst <{PARTNER}>", "cv25519")
        other = gpg.generate("Someone <someone@jugendamt-b.example>", "cv25519")
        return PartnerKeys(fpr, gpg.run("--export", fpr).stdout,
                           gpg.run("--export", other).stdout)


@pytest.fixture
def server(wkd_pki: NamedPki) -> Iterator[WkdServer]:
    with WkdServer(wkd_pki.certs["partner"]) as running:
        yield running


def console(services: Services, clock: FakeClock, wkd_pki: NamedPki,
            resolve: dict[str, str], timeout: float = 5) -> TestClient:
    """The console whose WKD lookups reach ``resolve`` and trust the test CA."""
    settings: Settings = services.settings
    crypto = settings.crypto.model_copy(update={
        "wkd_ca_file": wkd_pki.ca_file, "wkd_resolve": resolve, "wkd_timeout_seconds": timeout})
    return TestClient(create_app(settings.model_copy(update={"crypto": crypto}), clock=clock),
                      base_url=BASE_URL)


def stored(services: Services) -> int:
    with read_scope(services.sessions) as s:
        return s.scalar(select(func.count()).select_from(PartnerKey)) or 0


def test_a_key_looked_up_is_stored_pending_and_approved_on_its_page(
        services: Services, clock: FakeClock, wkd_pki: NamedPki, server: WkdServer,
        partner_keys: PartnerKeys) -> None:
    add_console_admins(services.settings, services.sessions)
    server.routes[PATH] = partner_keys.key
    with console(services, clock, wkd_pki, server.resolve(*HOSTS)) as client:
        assert 'id="lookup-form"' in client.get("/console/keys", headers=ALICE).text
        found = client.post("/console/keys/lookup", headers=ALICE, follow_redirects=False,
                            data={"address": f"  {PARTNER} "})
        assert found.status_code == 303, found.text
        assert found.headers["location"].endswith("?done=looked-up")
        page = client.get(found.headers["location"], headers=ALICE).text
        assert "im Web Key Directory gefunden" in page
        with read_scope(services.sessions) as s:
            [key] = keys.list_keys(s)
            key_id, status, source = key.id, key.status, key.source
            assert key.fingerprint == partner_keys.fingerprint
            assert key.source_detail.startswith("https://openpgpkey.jugendamt-b.example/")
            assert key.added_by == "alice"
        assert status is KeyStatus.PENDING and source is KeySource.WKD
        assert server.requests and server.requests[0].sni == HOSTS[0]
        # Pending, as with the CLI: listed to approve, and approved on its page.
        listing = client.get("/console/keys", headers=ALICE).text
        assert partner_keys.fingerprint[:4] in listing.split('id="pending"', 1)[1]
        done = client.post(f"/console/keys/{key_id}/approve", headers=ALICE,
                           follow_redirects=False)
        assert done.status_code == 303
        with read_scope(services.sessions) as s:
            assert keys.get_key(s, key_id).status is KeyStatus.APPROVED
        trail = [(a, b, d) for a, b, d in audit_trail(services.sessions)
                 if b in ("key-added", "key-approved")]
        assert [(a, b) for a, b, _ in trail] == [("alice", "key-added"),
                                                 ("alice", "key-approved")]
        assert "wkd" in str(trail[0][2])
        # Only admins; the form needs the CSRF token.
        assert list(not_forbidden(client, "POST", "/console/keys/lookup",
                                  {"address": PARTNER})) == []
        web_login(client, "alice", PASSWORD, enrol(services.settings, "alice"), at=clock())
        assert client.post("/console/keys/lookup", data={"address": PARTNER}).status_code == 403
    assert stored(services) == 1


@pytest.mark.parametrize(("publish", "address", "message"), [
    (None, PARTNER, f"Für {PARTNER} ist im Web Key Directory kein Schlüssel veröffentlicht."),
    ("wrong", PARTNER, f"Der für {PARTNER} gefundene Schlüssel wurde nicht übernommen: "),
    (None, "", "Bitte geben Sie die E-Mail-Adresse an"),
    (None, "kein adresse", "Die Suche nach dem Schlüssel für kein adresse ist gescheitert"),
])
def test_a_failed_lookup_is_named_and_stores_nothing(
        services: Services, clock: FakeClock, wkd_pki: NamedPki, server: WkdServer,
        partner_keys: PartnerKeys, publish: str | None, address: str, message: str) -> None:
    add_console_admins(services.settings, services.sessions)
    if publish == "wrong":
        server.routes[PATH] = partner_keys.wrong
    with console(services, clock, wkd_pki, server.resolve(*HOSTS)) as client:
        answer = client.post("/console/keys/lookup", headers=ALICE, data={"address": address})
    assert answer.status_code == 409
    shown = html.unescape(answer.text)
    assert message in shown and 'id="form-error"' in shown, shown
    assert f'value="{address}"' in shown  # the form keeps what was typed
    assert stored(services) == 0


def test_no_server_and_a_server_that_never_answers_are_named(
        services: Services, clock: FakeClock, wkd_pki: NamedPki, tmp_path: Path) -> None:
    add_console_admins(services.settings, services.sessions)
    refused = {host: f"127.0.0.1:{closed_port()}" for host in HOSTS}
    with console(services, clock, wkd_pki, refused) as client:
        answer = client.post("/console/keys/lookup", headers=ALICE, data={"address": PARTNER})
    assert answer.status_code == 409
    assert f"Die Suche nach dem Schlüssel für {PARTNER} ist gescheitert" in \
        html.unescape(answer.text)
    with BlackHole() as hole, console(services, clock, wkd_pki,
                                      {host: hole.address for host in HOSTS},
                                      timeout=0.3) as client:
        answer = client.post("/console/keys/lookup", headers=ALICE, data={"address": PARTNER})
    assert answer.status_code == 409 and "timed out" in answer.text
    assert stored(services) == 0
