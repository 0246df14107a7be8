"""The capabilities stages and edges use, built once from the settings and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from crypto.at_rest import MasterKey
from crypto.pgp_backend import PgpBackend
from gateway.clock import Clock, system_clock
from gateway.db import make_engine, make_session_factory
from gateway.delivery.journal import FILE_NAME as JOURNAL_FILE
from gateway.delivery.journal import RelayJournal
from gateway.delivery.transport import Transport
from gateway.keydir.own_key_cache import OwnKeyLookup, PrivateKeyCache
from gateway.portal.pickup.sender import CodeSender
from gateway.queue import wake
from gateway.scanner_health import ScannerHealth
from gateway.settings import ScanningSettings, Settings
from gateway.trust import TrustStore
from scanning.archives import ArchiveLimits
from scanning.clamd_client import ClamdClient
from scanning.config import ScannerConfig
from scanning.parts import MimeLimits
from scanning.scanner import MessageScanner


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    master_key: MasterKey
    transport: Transport
    pgp: PgpBackend
    trust: TrustStore
    scanner: MessageScanner
    scanner_health: ScannerHealth
    clock: Clock = system_clock
    private_keys: PrivateKeyCache = field(default_factory=PrivateKeyCache)
    own_keys: OwnKeyLookup = field(default_factory=OwnKeyLookup)
    # Fingerprints of partner keys known to the directory (rows are never deleted, so a
    # fingerprint once seen stays known): saves the harvest check a query per message.
    known_partner_keys: set[str] = field(default_factory=set)
    # Relay deliveries noted the moment the next hop accepts them (gateway.delivery.journal).
    relay_journal: RelayJournal | None = None
    # Sends a pickup code by SMS (gateway.portal.pickup.sender); none is wired in by default,
    # and without one the caseworker gives the code from the ticket page.
    code_sender: CodeSender | None = None


def make_pgp_backend(settings: Settings) -> PgpBackend:
    """The OpenPGP backend the settings choose; both behave the same (tested as a pair)."""
    if settings.crypto.openpgp_backend == "gnupg":
        from crypto.pgp_gnupg import GnupgBackend

        return GnupgBackend(settings.resolve(settings.crypto.gnupg_home))
    from crypto.pgp_sequoia import SequoiaBackend

    return SequoiaBackend()


def scanner_config(scanning: ScanningSettings) -> ScannerConfig:
    """The scanner's own settings from the gateway's [scanning] section."""
    return ScannerConfig(blocked_types=frozenset(scanning.blocked_types),
                         max_concurrent_scans=scanning.max_concurrent_scans,
                         archive=ArchiveLimits.from_settings(scanning),
                         mime=MimeLimits.from_settings(scanning))


def build_services(settings: Settings, *, transport: Transport | None = None,
                   clock: Clock = system_clock) -> Services:
    if transport is None:
        from gateway.delivery.smtp_relay import SmtpRelayTransport

        transport = SmtpRelayTransport(settings)
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    wake.install(sessions, settings)
    return Services(
        settings=settings,
        sessions=sessions,
        master_key=MasterKey.load(settings.resolve(settings.storage.master_key_file)),
        transport=transport,
        pgp=make_pgp_backend(settings),
        trust=TrustStore.from_settings(settings),
        scanner=MessageScanner(ClamdClient.from_settings(settings),
                               scanner_config(settings.scanning)),
        scanner_health=ScannerHealth(settings.scanning.alert_after_seconds, clock),
        clock=clock,
        relay_journal=RelayJournal(settings.resolve(settings.data_dir) / JOURNAL_FILE),
    )
