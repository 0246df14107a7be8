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
from sqlalchemy import Engine

from crypto.at_rest import MasterKey

KeySource = Callable[[], MasterKey]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def _run(engine: Engine, fn: str, revision: str, master_key: KeySource | None) -> None:
    cfg = alembic_config(engine)
    cfg.attributes["master_key"] = master_key
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        getattr(command, fn)(cfg, revision)


def upgrade(engine: Engine, revision: str = "head", *,
            master_key: KeySource | None = None) -> None:
    _run(engine, "upgrade", revision, master_key)


def downgrade(engine: Engine, revision: str, *, master_key: KeySource | None = None) -> None:
    _run(engine, "downgrade", revision, master_key)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
