"""``xgate db``: the database schema."""

from __future__ import annotations

import argparse

from crypto.at_rest import MasterKey
from gateway.cli.common import head_revision, open_database, settings_from_args
from gateway.migrate import current_revision, upgrade
from gateway.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="manage the database schema",
                             description="Create or upgrade the database schema.")
    sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    up = sub.add_parser("upgrade", help="create the schema or upgrade it to this version",
                        description="Run every migration not yet applied (creates the SQLite "
                                    "database file if there is none). Safe to run again.")
    up.set_defaults(handler=cmd_upgrade)
    cur = sub.add_parser("current", help="show the schema revision of the database",
                         description="Show the database's schema revision and whether it is "
                                     "the one this version of xgate needs.")
    cur.set_defaults(handler=cmd_current)


def migrate(settings: Settings) -> tuple[str | None, str | None]:
    """Upgrade the schema to this version's head; the revisions before and after."""
    engine = open_database(settings, need_schema=False, create=True)
    try:
        before = current_revision(engine)
        # Read only if a migration has stored data to seal (see gateway.migrate).
        upgrade(engine, master_key=lambda: MasterKey.load(
            settings.resolve(settings.storage.master_key_file)))
        return before, current_revision(engine)
    finally:
        engine.dispose()


def cmd_upgrade(args: argparse.Namespace) -> int:
    before, after = migrate(settings_from_args(args))
    if before == after:
        print(f"database schema is up to date (revision {after})")
    else:
        print(f"database schema upgraded from {before or 'empty'} to {after}")
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    engine = open_database(settings, need_schema=False)
    try:
        current = current_revision(engine)
        head = head_revision(engine)
    finally:
        engine.dispose()
    if current is None:
        print(f"database has no schema yet; this version needs {head} (run 'xgate db upgrade')")
        return 1
    note = "up to date" if current == head else f"this version needs {head}: run 'xgate db upgrade'"
    print(f"{current} ({note})")
    return 0 if current == head else 1
