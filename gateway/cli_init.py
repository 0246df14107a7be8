"""``xgate init DIR``: a ready-to-run installation in one directory.

Idempotent: whatever exists already (configuration, master key, database, certificate, demo
data) is kept, and the command says so. Losing the master key would make every stored
message unreadable, so nothing here ever overwrites one.
"""

from __future__ import annotations

import argparse
import os
from importlib import resources
from pathlib import Path

from crypto.at_rest import MasterKey
from gateway.cli_common import load_config
from gateway.cli_db import migrate
from gateway.cli_demo import create_demo
from gateway.settings import Settings

SAMPLE_DB_LINE = 'url = "sqlite:///xgate.db"'
SUBDIRS = ("keys", "tls", "metrics")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser(
        "init", help="create a configuration, master key and database in a directory",
        description="Create DIR/xgate.toml (the fully commented sample configuration, paths "
                    "relative to DIR), a new master key (mode 0600), DIR's subdirectories and "
                    "the database schema. Running it again keeps everything that exists.")
    init.add_argument("directory", metavar="DIR", type=Path,
                      help="the installation directory (created if missing)")
    init.add_argument("--demo", action="store_true",
                      help="also create a self-signed TLS certificate, a demo shared mailbox "
                           "and a demo staff user whose password is printed once")
    init.set_defaults(handler=cmd_init)


def sample_config() -> str:
    return resources.files("gateway").joinpath("sample_config.toml").read_text("utf-8")


def render_config(database_path: Path) -> str:
    """The sample, with an absolute SQLite path (a relative one would follow the cwd)."""
    text = sample_config()
    if text.count(SAMPLE_DB_LINE) != 1:
        raise RuntimeError("sample_config.toml lost its database url line")
    url = f"sqlite:///{database_path.resolve()}"
    return text.replace(SAMPLE_DB_LINE, f"url = {_toml_string(url)}")


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cmd_init(args: argparse.Namespace) -> int:
    # The directory holds the master key and personal data (addresses, audit trail): nothing
    # created here is for other users' eyes.
    os.umask(0o077)
    directory: Path = args.directory
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "xgate.toml"
    if config.exists():
        print(f"kept existing configuration {config}")
    else:
        _write_new(config, render_config(directory / "xgate.db"))
        print(f"wrote configuration {config}")
    settings = load_config(config)
    base = settings.resolve(settings.data_dir)
    for name in SUBDIRS:
        (base / name).mkdir(parents=True, exist_ok=True)
    _master_key(settings)
    _migrate(settings)
    if args.demo:
        create_demo(settings)
    print(f"done; start everything with: xgate -c {config} serve")
    return 0


def _write_new(path: Path, text: str) -> None:
    # "x": fail rather than overwrite if another init raced us to it.
    with path.open("x", encoding="utf-8") as fh:
        fh.write(text)


def _master_key(settings: Settings) -> None:
    path = settings.resolve(settings.storage.master_key_file)
    if path.exists():
        # Loading checks the format and the file mode, so a broken key shows up now.
        MasterKey.load(path)
        print(f"kept existing master key {path}")
        return
    MasterKey.generate().write(path)
    print(f"generated master key {path} (mode 0600); back it up apart from the database")


def _migrate(settings: Settings) -> None:
    before, after = migrate(settings)
    if before == after:
        print(f"kept existing database (schema revision {after})")
    else:
        print(f"database schema created/upgraded to revision {after}")
