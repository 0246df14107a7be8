"""Schema migrations (Alembic), run by ``xgate db upgrade`` and by ``xgate init``.

A migration that converts stored data into sealed form (0009: the personal part of consent
releases) needs the master key. It is passed as a function that loads it, so a database
without such data is migrated without the key file being read at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

from crypto.at_rest import MasterKey
from gateway.errors import GatewayError

KeySource = Callable[[], MasterKey]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


class MigrationError(GatewayError):
    """A migration would leave the database inconsistent; nothing of it was committed."""


def _run(engine: Engine, fn: str, revision: str, master_key: KeySource | None) -> None:
    cfg = alembic_config(engine)
    cfg.attributes["master_key"] = master_key
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one (alembic's batch
            # mode). With foreign keys on, that DROP deletes the rows referring to it first
            # (ON DELETE CASCADE: every article of every ticket) or fails. So they are off
            # while the schema changes, and checked as a whole before the commit instead.
            # The pragma works only outside a transaction, hence the driver's connection.
            _sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                getattr(command, fn)(cfg, revision)
                if sqlite:
                    _refuse_dangling_references(connection)
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _refuse_dangling_references(connection: Connection) -> None:
    dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if dangling:
        tables = sorted({str(row[0]) for row in dangling})
        raise MigrationError(f"the migration would leave {len(dangling)} row(s) referring to "
                             f"rows that do not exist (in {', '.join(tables)}); nothing changed")


def upgrade(engine: Engine, revision: str = "head", *,
            master_key: KeySource | None = None) -> None:
    _run(engine, "upgrade", revision, master_key)


def downgrade(engine: Engine, revision: str, *, master_key: KeySource | None = None) -> None:
    _run(engine, "downgrade", revision, master_key)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
