"""The console's partner pages over HTTP (TestClient, real SQLite and PostgreSQL): the list,
adding, changing and removing a partner through gateway.keydir.partners (audited with the
acting admin), refusals on the form with nothing stored, the dry run of ``xgate policy
explain`` in a form with the library's own output; the rights (admins only; auditor, DPO and
caseworker 403) and unknown ids 404."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.db import read_scope
from gateway.keydir import partners
from gateway.keydir.models import InvalidSignature, Partner, PartnerAddress
from gateway.policy.explain import explain
from gateway.services import Services
from gateway.settings import OutboundPolicy, RelayRoute
from tests.support.console_admin import (
    PASSWORD,
    add_console_admins,
    as_user,
    audit_trail,
    not_forbidden,
)
from tests.support.staff_web import BASE_URL, enrol, web_login

pytestmark = pytest.mark.usefixtures("cheap_hashing")

ALICE = as_user("alice")
FORM = {"name": "Jugendamt B", "patterns": "jugendamt-b.example\npost@gericht.example",
        "outbound_policy": "require-smime", "inbound_invalid_signature": "warn",
        "inbound_require_signature": "on", "note": "Ansprechpartnerin Frau K."}


@pytest.fixture
def client(services: Services, clock: FakeClock) -> Iterator[TestClient]:
    add_console_admins(services.settings, services.sessions)
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def count(services: Services, model: type) -> int:
    with read_scope(services.sessions) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def create(client: TestClient, **fields: str) -> int:
    response = client.post("/console/partners", data={**FORM, **fields}, headers=ALICE,
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/console/partners/(\d+)\?saved=1", response.headers["location"])
    assert found
    return int(found.group(1))


def test_create_edit_and_remove_a_partner(client: TestClient, services: Services) -> None:
    assert "Noch keine Partner" in client.get("/console/partners", headers=ALICE).text
    assert client.get("/console/partners/new", headers=ALICE).status_code == 200
    pid = create(client)
    with read_scope(services.sessions) as s:
        partner = partners.get_partner(s, "Jugendamt B")
        assert partner.id == pid
        assert partner.outbound_policy is OutboundPolicy.REQUIRE_SMIME
        assert partner.inbound_invalid_signature is InvalidSignature.WARN
        assert partner.inbound_require_signature and not partner.inbound_require_encryption
        assert sorted(p.pattern for p in partner.patterns) == [
            "jugendamt-b.example", "post@gericht.example"]
    listing = client.get("/console/partners", headers=ALICE).text
    assert "Jugendamt B" in listing and "post@gericht.example" in listing
    page = client.get(f"/console/partners/{pid}", headers=ALICE).text
    assert 'value="Jugendamt B"' in page and "post@gericht.example</textarea>" in page

    changed = client.post(f"/console/partners/{pid}", headers=ALICE, follow_redirects=False,
                          data={**FORM, "name": "Jugendamt Bergheim",
                                "patterns": "jugendamt-b.example, kita@jugendamt-b.example",
                                "outbound_policy": "either"})
    assert changed.status_code == 303
    with read_scope(services.sessions) as s:
        partner = partners.get_partner(s, "Jugendamt Bergheim")
        assert partner.outbound_policy is OutboundPolicy.EITHER
        assert sorted(p.pattern for p in partner.patterns) == [
            "jugendamt-b.example", "kita@jugendamt-b.example"]

    removed = client.post(f"/console/partners/{pid}/delete", headers=ALICE,
                          follow_redirects=False)
    assert removed.status_code == 303 and count(services, Partner) == 0
    trail = [(actor, action) for actor, action, _ in audit_trail(services.sessions)]
    for action in ("partner-added", "partner-changed", "partner-address-added",
                   "partner-address-removed", "partner-removed"):
        assert ("alice", action) in trail, action


@pytest.mark.parametrize(("fields", "message"), [
    ({"patterns": " \n "}, "mindestens eine Domain oder Adresse"),
    ({"patterns": "kein-muster"}, "„kein-muster“ ist weder eine Domain noch"),
    ({"patterns": "ok.example\nkaputt@"}, "„kaputt@“ ist keine gültige E-Mail-Adresse"),
    ({"name": " "}, "muss 1 bis 255 Zeichen lang sein"),
    ({"outbound_policy": "plaintext"}, "Unverschlüsselt nur an einen Partner"),
    ({"outbound_policy": "rot13"}, "Diese Auswahl gibt es nicht"),
])
def test_bad_input_is_named_and_nothing_is_stored(client: TestClient, services: Services,
                                                  fields: dict[str, str], message: str) -> None:
    response = client.post("/console/partners", data={**FORM, **fields}, headers=ALICE)
    assert response.status_code == 409
    assert message in response.text, response.text
    assert 'id="form-error"' in response.text
    assert count(services, Partner) == 0 and count(services, PartnerAddress) == 0


def test_a_refused_change_stores_nothing(client: TestClient, services: Services) -> None:
    pid = create(client)
    other = create(client, name="Gericht", patterns="amtsgericht.example")
    # The pattern belongs to the other partner: the rename before it must not stay either.
    response = client.post(f"/console/partners/{other}", headers=ALICE, data={
        **FORM, "name": "Amtsgericht", "patterns": "amtsgericht.example\njugendamt-b.example"})
    assert response.status_code == 409 and "gehört schon zum Partner" in response.text
    with read_scope(services.sessions) as s:
        assert partners.find_partner(s, "Gericht") is not None
        assert partners.find_partner(s, "Amtsgericht") is None
        assert [p.pattern for p in partners.get_partner(s, "Gericht").patterns] == [
            "amtsgericht.example"]
    assert pid != other


def test_dry_run_shows_the_library_explanation(client: TestClient, services: Services,
                                               clock: FakeClock) -> None:
    create(client)
    # A route out, as an installation has one (the app reads this same settings object).
    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=2525)]
    local = services.settings.gateway.local_domains[0]
    # Outbound to the partner, which demands S/MIME, without a certificate: held.
    sender, recipient = f"asd@{local}", "post@jugendamt-b.example"
    page = client.get("/console/partners", params={"sender": sender, "recipient": recipient},
                      headers=ALICE).text
    with read_scope(services.sessions) as s:
        expected = explain(s, services.settings, services.master_key, sender, recipient,
                           clock())
    assert expected.verdict == "hold"
    assert f'id="verdict">{expected.verdict}<' in page
    shown = html.unescape(page)
    assert "partner 'Jugendamt B' (matched jugendamt-b.example)" in shown
    for step in expected.steps:
        assert f"<li>{step}</li>" in shown, step
    assert 'id="no-partner"' not in page
    # A subdomain is no partner's: the page says so in words.
    unknown = client.get("/console/partners", headers=ALICE, params={
        "sender": sender, "recipient": "x@sub.jugendamt-b.example"}).text
    assert "Kein Partner passt zu x@sub.jugendamt-b.example" in unknown
    bad = client.get("/console/partners", params={"sender": "niemand", "recipient": sender},
                     headers=ALICE).text
    assert 'id="explain-error"' in bad and "„niemand“ ist keine gültige E-Mail-Adresse" in bad
    english = client.get("/console/partners", params={"sender": "niemand", "recipient": sender},
                         headers={**ALICE, "Accept-Language": "en"}).text
    assert "“niemand” is not a valid e-mail address" in english


def test_other_roles_get_403_and_unknown_ids_404(client: TestClient,
                                                 services: Services) -> None:
    pid = create(client)
    for method, path in (("GET", "/console/partners"), ("GET", "/console/partners/new"),
                         ("GET", f"/console/partners/{pid}"), ("POST", "/console/partners"),
                         ("POST", f"/console/partners/{pid}"),
                         ("POST", f"/console/partners/{pid}/delete")):
        assert list(not_forbidden(client, method, path, FORM if method == "POST" else None)
                    ) == [], path
    for bad in (str(pid + 1), "x", "-1", "9" * 20):
        assert client.get(f"/console/partners/{bad}", headers=ALICE).status_code == 404
        assert client.post(f"/console/partners/{bad}", data=FORM,
                           headers=ALICE).status_code == 404
        assert client.post(f"/console/partners/{bad}/delete",
                           headers=ALICE).status_code == 404
    assert count(services, Partner) == 1


def test_forms_need_the_csrf_token(client: TestClient, services: Services,
                                   clock: FakeClock) -> None:
    csrf = web_login(client, "alice", PASSWORD, enrol(services.settings, "alice"), at=clock())
    assert client.post("/console/partners", data=FORM).status_code == 403
    assert count(services, Partner) == 0
    done = client.post("/console/partners", data={**FORM, "csrf_token": csrf},
                       follow_redirects=False)
    assert done.status_code == 303 and count(services, Partner) == 1
