"""Upgrading a SQLite database that holds data keeps every row.

SQLite alters a table by copying it and dropping the old one (alembic's batch mode); with
foreign keys on, that drop first deleted the rows referring to it: upgrading from 0014 lost
every ticket's articles (0015 rebuilds ``tickets``), from 0018 every pickup download (0019
rebuilds ``pickup_items``). gateway.migrate turns foreign keys off while the schema changes and
checks them as a whole before the commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from gateway.db import make_engine
from gateway.migrate import MigrationError, current_revision, upgrade
from tests.conftest import make_settings


def _fill(c: Connection, table: str, **given: Any) -> None:
    """One row in ``table`` as the schema of that revision has it: the columns given, and a
    plausible value for every other NOT NULL column without a default."""
    values = dict(given)
    for _cid, name, kind, notnull, default, pk in c.execute(text(f"PRAGMA table_info({table})")):
        if name in values or pk or not notnull or default is not None:
            continue
        kind = str(kind).upper()
        values[name] = (1 if "INT" in kind or "BOOL" in kind else b"x" if "BLOB" in kind
                        else "2026-01-01 00:00:00" if "DATETIME" in kind else f"{table}-{name}")
    c.execute(text(f"INSERT INTO {table} ({', '.join(values)}) VALUES "
                   f"({', '.join(':' + k for k in values)})"), values)


def _counts(engine: Engine, *tables: str) -> dict[str, int]:
    with engine.connect() as c:
        return {t: int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in tables}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(make_settings(tmp_path / "var", f"sqlite:///{tmp_path}/x.db"))


def test_tickets_keep_their_articles_through_0015(engine: Engine) -> None:
    upgrade(engine, "0014")
    with engine.begin() as c:
        _fill(c, "mailboxes", id=1)
        _fill(c, "tickets", id=1, mailbox_id=1)
        _fill(c, "ticket_articles", ticket_id=1)
    upgrade(engine, "head")
    assert _counts(engine, "tickets", "ticket_articles") == {"tickets": 1,
                                                            "ticket_articles": 1}


def test_pickup_items_keep_their_downloads_through_0019(engine: Engine) -> None:
    upgrade(engine, "0018")
    with engine.begin() as c:
        _fill(c, "mailboxes", id=1)
        _fill(c, "tickets", id=1, mailbox_id=1)
        _fill(c, "pickup_items", id=1, ticket_id=1)
        _fill(c, "pickup_downloads", item_id=1)
    upgrade(engine, "head")
    assert _counts(engine, "pickup_items", "pickup_downloads") == {"pickup_items": 1,
                                                                  "pickup_downloads": 1}


def test_a_dangling_reference_stops_the_upgrade_and_changes_nothing(engine: Engine) -> None:
    upgrade(engine, "0018")
    with engine.connect() as c:
        raw = c.connection.driver_connection
        assert raw is not None
        # Only possible with the checks off, as a damaged database might hold it.
        raw.execute("PRAGMA foreign_keys=OFF")
        with c.begin():
            _fill(c, "pickup_downloads", item_id=999)
        raw.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(MigrationError, match="pickup_downloads"):
        upgrade(engine, "head")
    assert current_revision(engine) == "0018"
