"""Staff accounts and the submission listener: AUTH only over TLS, nothing without AUTH."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest
from sqlalchemy import select

import gateway.staff.users
from gateway.audit import AuditAction
from gateway.audit.view import opened
from gateway.db import session_scope
from gateway.models import AuditEntry, Direction, Message, StaffUser
from gateway.services import Services
from gateway.staff.users import (
    StaffError,
    add_user,
    find_user,
    set_disabled,
    set_password,
    verify_password,
)
from mailboxes.directory import add_mailbox
from tests.support.smtp_client import (
    RawSMTP,
    b64,
    client_context,
    count_messages,
    make_message,
    plain_credentials,
)
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    TLS_NAME,
    Edge,
    edge_fixture,
    start_edge_fixture,
    tls_files_fixture,
)

# Argon2 at production cost takes 0.3 s a hash; these tests are about who gets in.
pytestmark = pytest.mark.usefixtures("cheap_hashing")

USER = "m.mueller"
PASSWORD = "correct horse battery staple"
MAILBOX = "kita@jugendamt.example"
SENDER = "m.mueller@jugendamt.example"


PRODUCTION_HASHER = gateway.staff.users._hasher


@pytest.fixture
def staff(services: Services) -> str:
    with session_scope(services.sessions) as session:
        add_user(session, USER, PASSWORD, addresses=[SENDER])
        add_mailbox(session, MAILBOX, "Kita")
    return USER


def _tls_client(edge: Edge) -> smtplib.SMTP:
    client = smtplib.SMTP(*edge.submission)
    client.starttls(context=client_context(edge.cert))
    client.ehlo()
    return client


# --- gateway.staff.users -------------------------------------------------------------------------


def test_password_is_stored_as_argon2id_hash(services: Services, staff: str) -> None:
    with session_scope(services.sessions) as session:
        user = session.scalars(select(StaffUser)).one()
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


@pytest.mark.parametrize("via", ["verify_password", "smtp"])
def test_hash_is_upgraded_to_current_parameters_on_login(services: Services, staff: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         start_edge: Callable[..., Edge],
                                                         via: str) -> None:
    monkeypatch.setattr(gateway.staff.users, "_hasher", PRODUCTION_HASHER)
    if via == "smtp":
        with _tls_client(start_edge()) as client:
            assert client.login(USER, PASSWORD)[0] == 235
    else:
        with session_scope(services.sessions) as session:
            assert verify_password(session, USER, PASSWORD) is not None
    with session_scope(services.sessions) as session:
        user = session.scalars(select(StaffUser)).one()
        assert not PRODUCTION_HASHER.check_needs_rehash(user.password_hash)
        assert verify_password(session, USER, PASSWORD) is not None


def test_verify_password(services: Services, staff: str) -> None:
    with session_scope(services.sessions) as session:
        user = verify_password(session, USER, PASSWORD)
        assert user is not None and user.username == USER
        assert verify_password(session, USER, PASSWORD + "x") is None
        assert verify_password(session, "nobody", PASSWORD) is None
        assert verify_password(session, "", "") is None
        set_disabled(session, USER, True)
        assert verify_password(session, USER, PASSWORD) is None
        set_disabled(session, USER, False)
        set_password(session, USER, "another long password")
        assert verify_password(session, USER, PASSWORD) is None
        assert verify_password(session, USER, "another long password") is not None


@pytest.mark.parametrize(("username", "password"), [
    ("", PASSWORD), ("a b", PASSWORD), ("tab\tuser", PASSWORD), ("u", "short"),
    ("u", "x" * 2000), ("u", "with a NUL \x00 inside"),
])
def test_add_user_refuses_bad_input(services: Services, username: str, password: str) -> None:
    with session_scope(services.sessions) as session, pytest.raises(StaffError):
        add_user(session, username, password)


def test_add_user_refuses_duplicates(services: Services, staff: str) -> None:
    with session_scope(services.sessions) as session:
        with pytest.raises(StaffError, match="exists"):
            add_user(session, USER, PASSWORD)
        assert find_user(session, USER) is not None


# --- the submission listener -----------------------------------------------------------------


def test_auth_is_refused_before_starttls(services: Services, edge: Edge, staff: str) -> None:
    with smtplib.SMTP(*edge.submission) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, _ = client.docmd("AUTH", "PLAIN " + plain_credentials(USER, PASSWORD))
        assert code == 530
        assert client.docmd("MAIL", "FROM:<m.mueller@jugendamt.example>")[0] == 530


@pytest.mark.parametrize(("mechanism", "initial_response"), [
    ("PLAIN", True), ("PLAIN", False), ("LOGIN", True), ("LOGIN", False)])
def test_auth_after_starttls_lets_staff_submit(services: Services, edge: Edge, staff: str,
                                               mechanism: str, initial_response: bool) -> None:
    with _tls_client(edge) as client:
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        client.user, client.password = USER, PASSWORD
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, text = client.auth(mechanism, auth, initial_response_ok=initial_response)
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        client.mail("m.mueller@jugendamt.example")
        client.rcpt(MAILBOX)
        code, _ = client.data(make_message(sender="m.mueller@jugendamt.example"))
        assert code == 250
    with session_scope(services.sessions) as session:
        message = session.scalars(select(Message)).one()
        assert message.direction == Direction.OUTBOUND
        assert message.auth_user == USER


@pytest.mark.parametrize("password", [PASSWORD + "!", ""])
def test_wrong_password_gets_535(services: Services, edge: Edge, staff: str,
                                 password: str) -> None:
    with _tls_client(edge) as client:
        code, text = client.docmd("AUTH", "PLAIN " + plain_credentials(USER, password))
        assert (code, text[:5]) == (535, b"5.7.8")
        assert client.docmd("MAIL", "FROM:<m.mueller@jugendamt.example>")[0] == 530


def test_disabled_user_cannot_authenticate(services: Services, edge: Edge,
                                           staff: str) -> None:
    with session_scope(services.sessions) as session:
        set_disabled(session, USER, True)
    with _tls_client(edge) as client:
        assert client.docmd("AUTH", "PLAIN " + plain_credentials(USER, PASSWORD))[0] == 535


def test_plain_for_another_identity_is_refused(services: Services, edge: Edge,
                                               staff: str) -> None:
    blob = b64(f"chef\0{USER}\0{PASSWORD}")
    with _tls_client(edge) as client:
        assert client.docmd("AUTH", "PLAIN " + blob)[0] == 535


def test_malformed_auth_data_gets_501(services: Services, edge: Edge, staff: str) -> None:
    with _tls_client(edge) as client:
        assert client.docmd("AUTH", "PLAIN not-base64!")[0] == 501
        assert client.docmd("AUTH", "PLAIN " + b64("no separators"))[0] == 501


def test_submission_without_auth_is_refused(services: Services, edge: Edge,
                                            staff: str) -> None:
    with _tls_client(edge) as client:
        code, text = client.docmd("MAIL", "FROM:<m.mueller@jugendamt.example>")
        assert (code, text[:5]) == (530, b"5.7.0")
        assert client.docmd("RCPT", f"TO:<{MAILBOX}>")[0] == 530
        assert client.docmd("DATA")[0] == 530
    assert count_messages(services) == 0


def test_password_guessing_is_cut_off_per_connection(services: Services, edge: Edge,
                                                     staff: str) -> None:
    client = RawSMTP(edge.submission)
    client.reply()
    client.ehlo()
    assert client.command("STARTTLS").code == 220
    client.starttls(client_context(edge.cert), TLS_NAME)
    client.ehlo()
    codes = [client.command("AUTH PLAIN " + plain_credentials(USER, f"guess {i}")).code
             for i in range(3)]
    assert codes == [535, 535, 535]
    assert client.command("AUTH PLAIN " + plain_credentials(USER, PASSWORD)).code == 421
    client.close()


def _auth_codes(edge: Edge, username: str, passwords: list[str]) -> list[tuple[int, bytes]]:
    """AUTH PLAIN with each password, a new connection for each (aiosmtpd's own per-connection
    cut-off is not what is tested here)."""
    replies = []
    for password in passwords:
        with _tls_client(edge) as client:
            code, text = client.docmd("AUTH", "PLAIN " + plain_credentials(username, password))
            replies.append((code, text[:5]))
    return replies


def test_the_shared_throttle_locks_a_name_across_connections(services: Services, edge: Edge,
                                                             staff: str) -> None:
    free = services.settings.login.free_failures_per_user
    guesses = [f"guess {i}" for i in range(free)]
    assert _auth_codes(edge, USER, guesses) == [(535, b"5.7.8")] * free
    # Locked now: even the right password is not checked, and the answer says to wait.
    assert _auth_codes(edge, USER, [PASSWORD]) == [(454, b"4.7.0")]
    # A name that does not exist is locked the same way, with the same answer.
    assert _auth_codes(edge, "niemand", [*guesses, PASSWORD]) == (
        [(535, b"5.7.8")] * free + [(454, b"4.7.0")])


def test_submission_refuses_the_null_sender(services: Services, edge: Edge,
                                            staff: str) -> None:
    with _tls_client(edge) as client:
        client.login(USER, PASSWORD)
        assert client.docmd("MAIL", "FROM:<>")[0] == 550


def test_submission_accepts_only_deliverable_recipients(
        services: Services, start_edge: Callable[..., Edge], staff: str) -> None:
    edge = start_edge()
    with _tls_client(edge) as client:
        client.login(USER, PASSWORD)
        client.mail("m.mueller@jugendamt.example")
        # No relay route configured: only our own mailboxes are deliverable.
        assert client.rcpt("someone@partner.example")[0] == 550
        assert client.rcpt(MAILBOX)[0] == 250


def test_staff_may_submit_only_as_their_own_senders(services: Services, edge: Edge,
                                                    staff: str) -> None:
    with _tls_client(edge) as client:
        client.login(USER, PASSWORD)
        code, text = client.docmd("MAIL", "FROM:<amtsleitung@jugendamt.example>")
        assert (code, text) == (553, b"5.7.1 Sender address not allowed for this login")
        # The session goes on: the user's own address, in any case, is accepted.
        assert client.docmd("MAIL", "FROM:<M.Mueller@Jugendamt.example>")[0] == 250
        assert client.rcpt(MAILBOX)[0] == 250
        assert client.data(make_message(sender=SENDER))[0] == 250


def test_a_user_without_sender_addresses_cannot_submit(services: Services,
                                                       edge: Edge) -> None:
    with session_scope(services.sessions) as session:
        add_user(session, "neu", PASSWORD)
        add_mailbox(session, MAILBOX, "Kita")
    with _tls_client(edge) as client:
        client.login("neu", PASSWORD)
        assert client.docmd("MAIL", f"FROM:<{SENDER}>")[0] == 553
        assert client.docmd("MAIL", "FROM:<neu@jugendamt.example>")[0] == 553


def test_the_received_entry_says_how_the_message_came_in(services: Services, edge: Edge,
                                                         staff: str) -> None:
    """The audit trail (and the console's timeline) records the session's TLS."""
    with _tls_client(edge) as client:
        client.login(USER, PASSWORD)
        client.mail("m.mueller@jugendamt.example")
        client.rcpt(MAILBOX)
        assert client.data(make_message(sender="m.mueller@jugendamt.example"))[0] == 250
    with session_scope(services.sessions) as session:
        entries = list(session.scalars(select(AuditEntry).where(
            AuditEntry.action == AuditAction.RECEIVED.value)))
        [received] = opened(session, entries)
    assert str(received.details["tls"]).startswith("TLSv1.")
