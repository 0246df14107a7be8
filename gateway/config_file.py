"""The configuration file an ``xgate`` process reads, and this process's logging set up from it.

Kept apart from the CLI's helpers (gateway.cli.common) so that the parts ``xgate serve``
starts (gateway.serve.part) load their settings exactly as the CLI does without importing
what only the CLI needs (alembic, argon2 ...).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gateway.logging_setup import configure_logging
from gateway.operator_errors import CliError
from gateway.settings import Settings, load_settings

DEFAULT_CONFIG = Path("var/xgate.toml")
CONFIG_ENV = "XGATE_CONFIG"


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: Path, *, serving: bool = False) -> Settings:
    """Load the configuration and set up this process's logging from it (once)."""
    if not path.exists():
        raise CliError(f"configuration file not found: {path} (create one with "
                       f"'xgate init {path.parent}', or pass -c/--config or set {CONFIG_ENV})")
    settings = load_settings(path)
    # One-shot commands print their results; their logs show only what went wrong.
    configure_logging(settings.logging, floor=logging.NOTSET if serving else logging.WARNING)
    return settings
