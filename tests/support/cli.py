"""Running the real ``xgate`` command in a subprocess, and installations made by ``xgate init``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crypto.at_rest import MasterKey
from gateway.delivery.transport import RecordingTransport
from gateway.services import Services, build_services
from gateway.settings import Settings, load_settings

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
    return subprocess.run([str(XGATE), *map(str, args)], capture_output=True, text=True,
                          env=clean_env(env), input=stdin, cwd=cwd, timeout=timeout)


def init_installation(directory: Path, *extra: str) -> Path:
    """``xgate init DIR``; returns the configuration file."""
    result = run_xgate("init", directory, *extra)
    assert result.returncode == 0, result.stderr
    return directory / "xgate.toml"


def db_env(database_url: str) -> dict[str, str]:
    return {"XGATE_DATABASE__URL": database_url}


def installation_settings(config: Path, database_url: str | None = None,
                          **overrides: Any) -> Settings:
    if database_url is not None:
        overrides["database"] = {"url": database_url}
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
