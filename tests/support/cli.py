"""Running the real ``xgate`` command in a subprocess, and installations made by ``xgate init``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit.view import opened as opened_entries
from gateway.cli import main
from gateway.db import read_scope
from gateway.delivery.transport import RecordingTransport
from gateway.models import AuditEntry
from gateway.services import Services, build_services
from gateway.settings import Settings, load_settings
from tests.support.clamd import shared_clamd
from tests.support.db import opened

XGATE = Path(sys.executable).with_name("xgate")


def clean_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without XGATE_* variables (they would override the config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGATE_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(overrides or {})
    return env


def run_xgate(*args: str | Path, env: Mapping[str, str] | None = None,
              stdin: str | None = None, cwd: Path | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # Never the test run's own terminal: commands that ask on a terminal would wait.
    return subprocess.run([str(XGATE), *map(str, args)], capture_output=True, text=True,
                          env=clean_env(env), input=stdin or "", cwd=cwd, timeout=timeout)


def init_installation(directory: Path, *extra: str) -> Path:
    """``xgate init DIR``; returns the configuration file."""
    result = run_xgate("init", directory, *extra)
    assert result.returncode == 0, result.stderr
    return directory / "xgate.toml"


def db_env(database_url: str) -> dict[str, str]:
    """Environment for an xgate process on the test's database, scanning with the session's
    clamd (an installation's own managed clamd is not running in these tests)."""
    return {"XGATE_DATABASE__URL": database_url,
            "XGATE_SCANNING__CLAMD_SOCKET": str(shared_clamd().socket_path)}


def installation_settings(config: Path, database_url: str | None = None,
                          **overrides: Any) -> Settings:
    if database_url is not None:
        overrides["database"] = {"url": database_url}
    overrides.setdefault("scanning", {"clamd_socket": str(shared_clamd().socket_path)})
    return load_settings(config, **overrides)


def installation_services(settings: Settings) -> Services:
    """Services on the installation's database and master key, with a recording relay.

    On the real clock: the CLI, in another process, uses it too.
    """
    return build_services(settings, transport=RecordingTransport())


def master_key(settings: Settings) -> MasterKey:
    return MasterKey.load(settings.resolve(settings.storage.master_key_file))


def dispose(services: Services) -> None:
    services.sessions.kw["bind"].dispose()


@dataclass
class Cli:
    config: Path
    capsys: pytest.CaptureFixture[str]
    tmp: Path

    def __call__(self, *args: str, ok: bool = True) -> tuple[int, str, str]:
        code = main(["-c", str(self.config), *args])
        out, err = self.capsys.readouterr()
        if ok:
            assert code == 0, err
        return code, out, err

    def fails(self, *args: str) -> str:
        code, out, err = self(*args, ok=False)
        assert code == 1, out
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("xgate: error: "), err
        assert "Traceback" not in err
        return lines[0].removeprefix("xgate: error: ")

    def file(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def audit_actions(self) -> list[tuple[str, str]]:
        with opened(load_settings(self.config)) as sessions, read_scope(sessions) as session:
            assert audit.verify(session).ok
            return [(e.actor, e.action) for e in opened_entries(session, session.scalars(
                select(AuditEntry).order_by(AuditEntry.seq)))]
