"""A message held for a missing key goes through its pipeline again when the policy of the
partner its recipient belongs to changes, as it does when a key is approved: one rule
(gateway.queue.held, called by gateway.keydir.partners), so ``xgate partner set``, the API's PUT
and the library behave alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from admin_ui.app import create_app
from gateway.clock import FakeClock, system_clock
from gateway.db import read_scope, session_scope
from gateway.keydir.partners import add_partner, add_partner_pattern, update_partner
from gateway.models import AuditEntry, Direction, HoldKind, MessageState
from gateway.queue.held import KEY_HOLD_PREFIX
from gateway.queue.spool import Envelope
from gateway.services import Services
from gateway.settings import OutboundPolicy, RelayRoute, Settings, load_settings
from gateway.staff import users as staff
from tests.support.cli import Cli
from tests.support.db import message_state, opened, store_held
from tests.support.pipeline import drain, enqueue, load_message
from tests.support.staff_web import add_tokens, bearer

STAFF = "sb@jugendamt.example"
PARTNER = "team@beratung.example"
OTHER = "info@anderswo.example"
PASSWORD = "ein sehr langes passwort"


def _mail(to: str) -> bytes:
    return (f"From: {STAFF}\r\nTo: {to}\r\nSubject: Terminabsprache\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nBis Dienstag.\r\n").encode()


@pytest.fixture
def office(services: Services) -> Services:
    services.settings.delivery.routes = [
        RelayRoute(domain="jugendamt.example", host="internal.invalid", internal=True),
        RelayRoute(domain="*", host="relay.invalid")]
    # Fail closed for addresses of no partner, as in production.
    services.settings.crypto.unknown_partner_outbound = OutboundPolicy.EITHER
    with session_scope(services.sessions) as s:
        add_partner(s, "Beratungsstelle", actor="admin", now=services.clock(),
                    patterns=["beratung.example"],
                    outbound_policy=OutboundPolicy.REQUIRE_OPENPGP)
    return services


def _held(services: Services, to: str) -> str:
    qid = enqueue(services, [to], _mail(to), mail_from=STAFF, direction=Direction.OUTBOUND)
    drain(services)
    message = load_message(services, qid)
    assert message.state == MessageState.HELD
    assert message.reason is not None and message.reason.startswith(KEY_HOLD_PREFIX)
    assert message.hold_kind == HoldKind.KEY_MISSING
    return qid


def _actions(services: Services, qid: str) -> list[str]:
    with read_scope(services.sessions) as s:
        return list(s.scalars(select(AuditEntry.action).where(AuditEntry.queue_id == qid)
                              .order_by(AuditEntry.seq)))


def test_a_new_policy_lets_the_held_message_go(office: Services) -> None:
    held = _held(office, PARTNER)
    elsewhere = _held(office, OTHER)
    with session_scope(office.sessions) as s:
        # Only a note: nothing that could let it go, so nothing is re-queued.
        update_partner(s, "Beratungsstelle", actor="admin", now=office.clock(), note="neu")
    assert load_message(office, held).state == MessageState.HELD
    with session_scope(office.sessions) as s:
        update_partner(s, "Beratungsstelle", actor="admin", now=office.clock(),
                       outbound_policy=OutboundPolicy.PLAINTEXT, non_sensitive=True)
    message = load_message(office, held)
    assert message.state == MessageState.DEFERRED
    assert message.reason == "re-queued: partner 'Beratungsstelle' changed"
    drain(office)
    assert load_message(office, held).state == MessageState.DELIVERED
    actions = _actions(office, held)
    assert actions.index("held") < actions.index("requeued") < actions.index("delivered")
    # A recipient of no partner the change touched stays held.
    assert load_message(office, elsewhere).state == MessageState.HELD


def test_an_address_given_to_a_partner_lets_its_held_message_go(office: Services) -> None:
    held = _held(office, OTHER)
    with session_scope(office.sessions) as s:
        add_partner(s, "Schule", actor="admin", now=office.clock(),
                    outbound_policy=OutboundPolicy.PLAINTEXT, non_sensitive=True)
        add_partner_pattern(s, "Schule", OTHER, actor="admin", now=office.clock())
    drain(office)
    assert load_message(office, held).state == MessageState.DELIVERED


def test_a_new_partner_lets_the_held_message_to_its_domain_go(office: Services) -> None:
    held = _held(office, OTHER)
    with session_scope(office.sessions) as s:
        add_partner(s, "Anderswo", actor="admin", now=office.clock(),
                    patterns=["anderswo.example"], outbound_policy=OutboundPolicy.PLAINTEXT,
                    non_sensitive=True)
    drain(office)
    assert load_message(office, held).state == MessageState.DELIVERED


# -- the same rule from the command line and the API ------------------------------------------


def _store_held(settings: Settings, to: str) -> str:
    """An outbound message as the outbound policy stage leaves it: held, no key."""
    return store_held(
        settings, Envelope(Direction.OUTBOUND, STAFF, [to], _mail(to)), now=system_clock(),
        kind=HoldKind.KEY_MISSING,
        reason=f"{KEY_HOLD_PREFIX}: needs an approved, valid OpenPGP key for {to}")


def test_partner_set_requeues(cli: Cli) -> None:
    settings = load_settings(cli.config)
    cli("partner", "add", "Beratungsstelle", "--domain", "beratung.example",
        "--outbound", "require-openpgp")
    held, other = _store_held(settings, PARTNER), _store_held(settings, OTHER)
    cli("partner", "set", "Beratungsstelle", "--outbound", "plaintext", "--non-sensitive")
    assert message_state(settings, held) == MessageState.DEFERRED
    assert message_state(settings, other) == MessageState.HELD
    cli("partner", "set", "Beratungsstelle", "--add-address", OTHER)
    assert message_state(settings, other) == MessageState.DEFERRED
    assert [action for _, action in cli.audit_actions()].count("requeued") == 2


@pytest.fixture
def admin_client(settings: Settings) -> Iterator[TestClient]:
    with opened(settings) as sessions, session_scope(sessions) as s:
        staff.add_user(s, "chef", PASSWORD, admin=True)
        add_partner(s, "Beratungsstelle", actor="chef", now=system_clock(),
                    patterns=["beratung.example"],
                    outbound_policy=OutboundPolicy.REQUIRE_OPENPGP)
    add_tokens(settings, "chef")
    with TestClient(create_app(settings, clock=FakeClock(system_clock()))) as client:
        yield client


def test_api_put_requeues(admin_client: TestClient, settings: Settings) -> None:
    held = _store_held(settings, PARTNER)
    response = admin_client.put("/api/v1/partners/Beratungsstelle", headers=bearer("chef"),
                                json={"outbound_policy": "plaintext", "non_sensitive": True})
    assert response.status_code == 200, response.text
    assert message_state(settings, held) == MessageState.DEFERRED
