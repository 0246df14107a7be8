"""Fixtures that run the real SMTP listeners on loopback for a test.

Test modules import the fixtures they use (``from tests.support.smtp_fixtures import
edge_fixture``); pytest knows them by the ``name`` given here, so a test's ``edge`` argument
does not shadow the import.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.db import session_scope
from gateway.delivery.smtp_relay import SmtpRelayTransport
from gateway.services import Services, build_services
from gateway.settings import ListenerSettings, RelayRoute, Settings, TlsPolicy, TlsSettings
from gateway.smtp.background import BackgroundListeners
from gateway.smtp.handler import ListenerKind
from gateway.staff.users import add_user
from gateway.tls import generate_self_signed
from mailboxes.directory import add_mailbox
from tests.conftest import make_settings
from tests.support.sink import SmtpSink
from tests.support.smtp_client import client_context, wait_for

# The certificate is issued for the loopback address the clients connect to, so clients
# verify it for real (chain and name) instead of switching verification off.
TLS_NAME = "127.0.0.1"
HOSTNAME = "xgate.test"


@dataclass
class Edge:
    listeners: BackgroundListeners
    cert: Path

    @property
    def inbound(self) -> tuple[str, int]:
        return self.listeners.addresses[ListenerKind.INBOUND]

    @property
    def submission(self) -> tuple[str, int]:
        return self.listeners.addresses[ListenerKind.SUBMISSION]

    def wait_connections(self, kind: ListenerKind, count: int) -> None:
        """Wait until the server counts ``count`` open connections on one listener."""
        wait_for(lambda: self.listeners.active_connections(kind) == count)

    def wait_idle(self, kind: ListenerKind = ListenerKind.INBOUND) -> None:
        """Wait until the server has seen every connection of ``kind`` end."""
        self.wait_connections(kind, 0)

    def submit(self, user: str, password: str, sender: str, rcpts: list[str],
               raw: bytes) -> None:
        """One message as a staff member's mail client sends it: STARTTLS (checking the
        test certificate), AUTH, then the transaction."""
        with smtplib.SMTP(*self.submission) as client:
            client.starttls(context=client_context(self.cert))
            client.login(user, password)
            client.sendmail(sender, rcpts, raw)


@pytest.fixture(scope="session", name="tls_files")
def tls_files_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    generate_self_signed(cert, key, TLS_NAME)
    return cert, key


@pytest.fixture(name="start_edge")
def start_edge_fixture(services: Services, tls_files: tuple[Path, Path]
               ) -> Iterator[Callable[..., Edge]]:
    """Start the listeners on free ports; keyword arguments override settings.smtp."""
    running: list[BackgroundListeners] = []
    cert, key = tls_files

    def start(**smtp: Any) -> Edge:
        settings = services.settings
        settings.tls = TlsSettings(cert_file=cert, key_file=key)
        settings.smtp = settings.smtp.model_copy(update={
            "hostname": HOSTNAME, "inbound": ListenerSettings(port=0),
            "submission": ListenerSettings(port=0), **smtp})
        listeners = BackgroundListeners(services)
        listeners.start()
        running.append(listeners)
        return Edge(listeners, cert)

    yield start
    for listeners in running:
        listeners.stop()


@pytest.fixture(name="edge")
def edge_fixture(start_edge: Callable[..., Edge]) -> Edge:
    return start_edge()


# The shared mailbox most SMTP tests deliver to.
MAILBOX = "kita@jugendamt.example"


@pytest.fixture(name="mailbox")
def mailbox_fixture(services: Services) -> str:
    with session_scope(services.sessions) as session:
        add_mailbox(session, MAILBOX, "Kita")
    return MAILBOX


def partner_relay_settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    """Settings for an office talking to partners over the real relay: every domain goes to
    ``sink``, S/MIME signatures chain to ``tmp_path/ca.pem``, and the fail-closed outbound
    default (held without a key) applies."""
    return make_settings(tmp_path / "var", database_url, crypto={
        "trust_anchors_file": str(tmp_path / "ca.pem"), "unknown_partner_outbound": "either"},
        delivery={"routes": [RelayRoute(domain="*", host=sink.host, port=sink.port,
                                        tls=TlsPolicy.NONE).model_dump()]})


def relaying_services(settings: Settings, *, mailboxes: Mapping[str, str],
                      users: Mapping[str, tuple[str, list[str]]]) -> Services:
    """Services that deliver over the real SMTP relay, with the shared ``mailboxes``
    (address: name) and staff ``users`` (name: (password, addresses)) in place."""
    built = build_services(settings, transport=SmtpRelayTransport(settings))
    with session_scope(built.sessions) as s:
        for address, name in mailboxes.items():
            add_mailbox(s, address, name)
        for user, (password, addresses) in users.items():
            add_user(s, user, password, addresses=addresses)
    return built
