"""Shared fixtures: real databases (SQLite and PostgreSQL), settings, services.

Every test that takes ``database_url`` runs twice: on SQLite and on a real PostgreSQL server
started on loopback for the run. Each test gets its own database, cloned from one migrated
template, because the code under test commits (workers, the SMTP edge) and a rollback per test
could not undo that.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

import gateway.staff.users
from crypto.at_rest import MasterKey
from gateway.clock import FakeClock
from gateway.db import make_engine
from gateway.delivery.smtp_relay import SmtpRelayTransport
from gateway.delivery.transport import RecordingTransport
from gateway.migrate import upgrade
from gateway.services import Services, build_services
from gateway.settings import RelayRoute, Settings, TlsPolicy, load_settings
from tests.support.clamd import shared_clamd
from tests.support.cli import Cli
from tests.support.pki import TestPki, make_pki
from tests.support.postgres import PostgresServer
from tests.support.sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
_counter = itertools.count()


def _backends() -> list[str]:
    if os.environ.get("XGATE_TEST_SKIP_POSTGRES") == "1":
        return ["sqlite"]
    return ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer.start_migrated()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(Settings(database={"url": f"sqlite:///{path}"}))  # type: ignore[arg-type]
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "xgate.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


def write_master_key(data_dir: Path) -> Path:
    path = data_dir / "keys" / "master.key"
    MasterKey.generate().write(path)
    return path


def make_settings(data_dir: Path, database_url: str, **sections: Any) -> Settings:
    """Settings for a test: everything under ``data_dir``, listeners on free ports."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir / "keys" / "master.key"
    if not key.exists():
        write_master_key(data_dir)
    base: dict[str, Any] = {
        "data_dir": str(data_dir),
        "database": {"url": database_url},
        "storage": {"master_key_file": str(key)},
        "logging": {"level": "DEBUG", "json": False},
        # The gateway-core tests relay to unknown test domains; the crypto tests set the
        # fail-closed default ("either") or partner records themselves.
        "crypto": {"unknown_partner_outbound": "plaintext",
                   "gnupg_home": str(data_dir / "gnupg")},
        # One real clamd for the whole session, with the test signatures.
        "scanning": {"clamd_socket": str(shared_clamd().socket_path)},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(name), dict):
            base[name] = {**base[name], **value}
        else:
            base[name] = value
    return load_settings(None, **base)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "var", database_url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def services(settings: Settings, transport: RecordingTransport,
             clock: FakeClock) -> Iterator[Services]:
    svc = build_services(settings, transport=transport, clock=clock)
    yield svc
    engine = svc.sessions.kw["bind"]
    engine.dispose()


# -- relay to a real SMTP sink on loopback (tests/support/sink.py) ---------------------------


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A throwaway CA with server certificates, made once per run."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def make_sink() -> Iterator[Callable[..., SmtpSink]]:
    """Start SMTP sinks (keyword arguments as SmtpSink's); all are stopped after the test."""
    started: list[SmtpSink] = []

    def start(**kwargs: Any) -> SmtpSink:
        sink = SmtpSink(**kwargs).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def sink(make_sink: Callable[..., SmtpSink]) -> SmtpSink:
    """A plain sink: no STARTTLS, accepts everything unless told otherwise."""
    return make_sink()


@pytest.fixture
def relay_services(settings: Settings, clock: FakeClock
                   ) -> Iterator[Callable[..., Services]]:
    """Services with the real SMTP relay; every domain routed to the given sink.

    Call as ``relay_services(sink, tls=TlsPolicy.NONE, ca_file=None)``.
    """
    built: list[Services] = []

    def build(sink: SmtpSink, tls: TlsPolicy = TlsPolicy.NONE,
              ca_file: Path | None = None) -> Services:
        settings.delivery.routes = [RelayRoute(domain="*", host=sink.host, port=sink.port,
                                               tls=tls, ca_file=ca_file)]
        svc = build_services(settings, transport=SmtpRelayTransport(settings), clock=clock)
        built.append(svc)
        return svc

    yield build
    for svc in built:
        svc.sessions.kw["bind"].dispose()


# -- the xgate command in process, on a configuration of its own -----------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    # Every command configures the root logger (gateway.cli.common.load_config).
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def cli(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str],
        restore_logging: None) -> Cli:
    # One installation, one master key: a test that also takes ``settings`` (or
    # ``services``) works on the same database, and the audit trail's month keys written by
    # either side are wrapped with this key (gateway.audit.keys), so both must hold the same
    # one. make_settings keeps a key that is already there, and so does this.
    key_file = tmp_path / "var" / "keys" / "master.key"
    if not key_file.exists():
        write_master_key(tmp_path / "var")
    config = tmp_path / "xgate.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n[database]\nurl = "{database_url}"\n'
        f'[storage]\nmaster_key_file = "{key_file}"\n'
        '[logging]\nlevel = "INFO"\njson = false\n'
        '[crypto]\nexpiry_warning_days = 30\n', encoding="utf-8")
    return Cli(config, capsys, tmp_path)


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at test cost: production parameters take 0.3 s a hash here, and the tests that
    use this are about who gets in, not about argon2's cost. Test modules take it with
    ``pytestmark = pytest.mark.usefixtures("cheap_hashing")``."""
    monkeypatch.setattr(gateway.staff.users, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    gateway.staff.users._dummy_hash.cache_clear()
