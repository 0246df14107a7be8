"""What every CLI command needs: its settings, the database, who the operator is, and proof
that the staff user a command acts as is really at the keyboard."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey

# The configuration file, the operator's errors and the database checks live in modules of
# their own, which the parts xgate serve starts (gateway.serve.part) import without the CLI.
from gateway.config_file import CONFIG_ENV as CONFIG_ENV
from gateway.config_file import DEFAULT_CONFIG as DEFAULT_CONFIG
from gateway.config_file import default_config_path as default_config_path
from gateway.config_file import load_config as load_config
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.migrate import alembic_config, current_revision
from gateway.operator_errors import CliError as CliError
from gateway.schema_check import refuse_missing_database, refuse_other_revision
from gateway.schema_check import sqlite_path as sqlite_path
from gateway.settings import Settings
from gateway.staff.users import find_user, password_matches


def settings_from_args(args: argparse.Namespace, *, serving: bool = False) -> Settings:
    return load_config(Path(args.config), serving=serving)


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def open_database(settings: Settings, *, need_schema: bool = True,
                  create: bool = False) -> Engine:
    """An engine for the configured database, refusing one that is absent or not migrated.

    SQLite would silently create an empty file for a mistyped path, and every command would
    then fail with a puzzling "no such table".
    """
    refuse_missing_database(settings, create=create)
    engine = make_engine(settings)
    if need_schema:
        head = head_revision(engine)
        # alembic's own reading here; the parts xgate serve starts read it without alembic.
        current = current_revision(engine)
        if current != head:
            engine.dispose()
            refuse_other_revision(current, head or "")
    return engine


@contextmanager
def command_session(settings: Settings, *, read_only: bool = False) -> Iterator[Session]:
    """One transaction for one CLI command: committed if the command succeeds.

    ``read_only`` commands (list, show, verify) never take SQLite's write lock, so a long
    ``audit verify`` does not hold up the SMTP edge or the workers.
    """
    engine = open_database(settings)
    scope = read_scope if read_only else session_scope
    try:
        with scope(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def operator_name() -> str:
    """Who runs the command, for the audit trail: the person behind sudo if there is one."""
    for var in ("SUDO_USER", "USER", "LOGNAME"):
        name = os.environ.get(var)
        if name:
            return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def operator_actor() -> str:
    """The audit trail's actor for a change made at the console: ``operator:NAME``."""
    return f"operator:{operator_name()}"


def authenticate(settings: Settings, username: str, from_stdin: bool, *,
                 admin_only: bool = False) -> None:
    """Make sure the person acting knows ``username``'s password (an active staff user).

    Commands that record a decision in someone's name (a release approval, a consent
    record) or reveal something take the name and the password, so one person at the
    console cannot act as another, or be both pairs of eyes, by typing two names.

    Checked in a read-only transaction of its own: argon2 takes a while, and on SQLite a write
    transaction would hold the database's write lock all that time.
    """
    password = read_password(username, from_stdin)
    with command_session(settings, read_only=True) as session:
        user = find_user(session, username)
        ok = password_matches(user.password_hash if user else None, password)
        if not ok or user is None or user.disabled:
            # One message for every failure: it does not tell which user names exist.
            raise CliError(f"authentication as {username} failed")
        # Only after the password: the admin right is not revealed to whoever guesses names.
        if admin_only and not user.admin:
            raise CliError(f"staff user {username} is not an admin; this needs an admin")


def read_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password of {username}: ")
    else:
        raise CliError(f"no terminal to ask for the password of {username}; "
                       "give it on standard input with --password-stdin")
    if not password:
        raise CliError("the password must not be empty")
    return password


def master_key(settings: Settings) -> MasterKey:
    """The installation's master key (storage.master_key_file)."""
    return MasterKey.load(settings.resolve(settings.storage.master_key_file))
