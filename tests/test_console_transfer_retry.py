"""Retrying a transfer from its timeline (POST /console/transfers/{queue_id}/retry) over HTTP,
on SQLite and PostgreSQL, through the real pipeline (real clamd; the test transport refuses the
relay): a deferred message is offered to an admin and sent back to the workers as ``xgate
queue retry`` does, audited with the admin; a delivered or quarantined one is not offered and
is refused with the library's reason, nothing changed; the auditor and the DPO read the
timeline without the form and get 403 for the POST; an unknown queue id is 404; the CSRF
token is required."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from admin_ui.app import create_app
from gateway.audit import AuditAction
from gateway.audit.view import all_entries
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.delivery.transport import RecordingTransport, TransportError
from gateway.models import Direction, MessageState
from gateway.services import Services
from gateway.settings import RelayRoute
from mailboxes.directory import add_mailbox
from tests.support.clamd import EICAR
from tests.support.console_web import add_console_staff, console_login
from tests.support.pipeline import drain, enqueue, load_message
from tests.support.staff_web import BASE_URL
from tests.support.ticket_web import BOX, CITIZEN, mail

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PARTNER = "asd@jugendamt-b.example"
VIRUS = "virus@web.example"


@dataclass(frozen=True)
class Queue:
    deferred: str  # outbound, the relay refused
    delivered: str  # inbound, filed into BOX
    quarantined: str  # inbound with EICAR


@pytest.fixture
def queue(services: Services) -> Queue:
    with session_scope(services.sessions) as s:
        add_mailbox(s, BOX, "Kindertagespflege")
    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]
    delivered = enqueue(services, [BOX], mail("Frage", msgid="c1"), mail_from=CITIZEN)
    quarantined = enqueue(services, [BOX], mail("Rechnung", msgid="v1", sender=VIRUS,
                                                attachment=EICAR), mail_from=VIRUS)
    drain(services)
    assert load_message(services, quarantined).state == MessageState.QUARANTINED
    # From now on the relay refuses every connection.
    transport = refusing(services)
    deferred = enqueue(services, [PARTNER], mail("Antwort", to=PARTNER, msgid="o1",
                                                 sender="anna@jugendamt.example"),
                       mail_from="anna@jugendamt.example", direction=Direction.OUTBOUND)
    drain(services)
    assert transport.error is not None
    assert load_message(services, delivered).state == MessageState.DELIVERED
    assert load_message(services, deferred).state == MessageState.DEFERRED
    return Queue(deferred, delivered, quarantined)


def refusing(services: Services) -> RecordingTransport:
    """The test set-up's transport (it records what is sent), now refusing every connection."""
    transport = services.transport
    assert isinstance(transport, RecordingTransport)
    transport.error = TransportError("connection refused")
    return transport


@pytest.fixture
def secrets(services: Services) -> dict[str, str]:
    return add_console_staff(services)


@pytest.fixture
def client(services: Services, clock: FakeClock, secrets: dict[str, str],
           queue: Queue) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def retries(services: Services) -> list[tuple[str, str | None, dict[str, object]]]:
    with read_scope(services.sessions) as s:
        return [(e.actor, e.queue_id, dict(e.details)) for e in all_entries(s)
                if e.action == AuditAction.RETRY]


def test_an_admin_retries_a_deferred_message_audited(
        client: TestClient, services: Services, secrets: dict[str, str], clock: FakeClock,
        queue: Queue) -> None:
    token = console_login(client, secrets, clock, "root")
    url = f"/console/transfers/{queue.deferred}"
    page = client.get(url)
    assert 'id="retry-form"' in page.text and "Jetzt erneut versuchen" in page.text
    reason_before = load_message(services, queue.deferred).reason
    assert reason_before
    answer = client.post(url + "/retry", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == url + "?done=retried"
    after = client.get(answer.headers["location"])
    assert "Die Nachricht wird jetzt erneut verarbeitet." in after.text
    message = load_message(services, queue.deferred)
    assert message.state == MessageState.RECEIVED
    assert message.reason == "retry requested by admin:root"
    assert retries(services) == [("admin:root", queue.deferred, {
        "previous_state": "deferred", "previous_reason": reason_before})]
    # Running again now, it is refused by the relay again: the retry really was a retry.
    drain(services)
    assert load_message(services, queue.deferred).state == MessageState.DEFERRED


@pytest.mark.parametrize(("which", "state", "said"), [
    ("delivered", MessageState.DELIVERED, "was delivered"),
    ("quarantined", MessageState.QUARANTINED, "released only by two admins"),
])
def test_a_message_the_cli_would_not_retry_is_not_offered_and_refused_with_the_reason(
        client: TestClient, services: Services, secrets: dict[str, str], clock: FakeClock,
        queue: Queue, which: str, state: MessageState, said: str) -> None:
    queue_id = getattr(queue, which)
    token = console_login(client, secrets, clock, "root")
    url = f"/console/transfers/{queue_id}"
    assert 'id="retry-form"' not in client.get(url).text
    answer = client.post(url + "/retry", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 409 and 'id="form-error"' in answer.text
    assert "kann nicht erneut versucht werden" in answer.text and said in answer.text
    assert load_message(services, queue_id).state == state
    assert retries(services) == []


@pytest.mark.parametrize("user", ["dora", "dpo"])
def test_the_auditor_and_the_dpo_read_but_may_not_retry(
        client: TestClient, services: Services, secrets: dict[str, str], clock: FakeClock,
        queue: Queue, user: str) -> None:
    token = console_login(client, secrets, clock, user)
    url = f"/console/transfers/{queue.deferred}"
    page = client.get(url)
    assert page.status_code == 200 and 'id="retry-form"' not in page.text
    answer = client.post(url + "/retry", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 403
    assert load_message(services, queue.deferred).state == MessageState.DEFERRED
    assert retries(services) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_caseworker_gets_403(client: TestClient, services: Services,
                               secrets: dict[str, str], clock: FakeClock, queue: Queue) -> None:
    token = console_login(client, secrets, clock, "anna")
    answer = client.post(f"/console/transfers/{queue.deferred}/retry",
                         data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 403 and retries(services) == []


def test_an_unknown_queue_id_is_404(client: TestClient, services: Services,
                                    secrets: dict[str, str], clock: FakeClock) -> None:
    token = console_login(client, secrets, clock, "root")
    for queue_id in ("0123456789ABCDEF", "nichts", "%20"):
        answer = client.post(f"/console/transfers/{queue_id}/retry",
                             data={"csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 404, queue_id
    assert retries(services) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_retry_without_the_csrf_token_is_refused(
        client: TestClient, services: Services, secrets: dict[str, str], clock: FakeClock,
        queue: Queue) -> None:
    console_login(client, secrets, clock, "root")
    answer = client.post(f"/console/transfers/{queue.deferred}/retry", data={},
                         follow_redirects=False)
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert load_message(services, queue.deferred).state == MessageState.DEFERRED
    assert retries(services) == []
