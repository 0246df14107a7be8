"""Migrations are tested (SecureDrop-style) on SQLite and PostgreSQL.

- Upgrading an empty database to head gives exactly the schema the models describe.
- Every revision upgrades and downgrades one step at a time, down to base and up again.
- Production code never builds the schema with ``create_all``: Alembic is the only way.

Each test starts from an EMPTY database (not the migrated template of ``database_url``).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Engine, inspect

import gateway.consent.models
import gateway.keydir.models
import gateway.models
import gateway.portal.models
import gateway.portal.pickup.models
import gateway.quarantine.models
import gateway.staff.models
import gateway.tasks.models
import mailboxes.models
from gateway.db import Base, make_engine
from gateway.migrate import alembic_config, current_revision, downgrade, upgrade
from gateway.settings import Settings
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_PACKAGES = ("gateway", "crypto", "scanning", "mailboxes", "admin_ui")
_counter = itertools.count()

# Every model module must be imported so that every table is on Base.metadata.
_MODEL_MODULES = (gateway.models, gateway.consent.models, gateway.keydir.models,
                  gateway.quarantine.models, mailboxes.models, gateway.portal.models,
                  gateway.portal.pickup.models)


def _backends() -> list[Any]:
    backends: list[Any] = ["sqlite"]
    if os.environ.get("XGATE_TEST_SKIP_POSTGRES") != "1":
        backends.append(pytest.param("postgresql", marks=pytest.mark.postgres))
    return backends


@pytest.fixture(params=_backends())
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new, empty database, built as the application builds its engines."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(migrated=False)
    engine = make_engine(Settings(database={"url": url}))  # type: ignore[arg-type]
    assert _tables(engine) == set(), "the database should start empty"
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _revisions_base_to_head(engine: Engine) -> list[Script]:
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    assert len(scripts.get_heads()) == 1, "migrations must form one line (one head)"
    # walk_revisions goes from head down to base.
    return list(reversed(list(scripts.walk_revisions("base", "heads"))))


def test_models_are_registered() -> None:
    tables = set(Base.metadata.tables)
    assert {"messages", "message_recipients", "audit_log", "mailboxes",
            "mailbox_messages"} <= tables


def test_upgrade_from_empty_matches_models(empty_engine: Engine) -> None:
    upgrade(empty_engine)

    assert _schema_diff(empty_engine) == []
    assert _tables(empty_engine) == set(Base.metadata.tables) | {"alembic_version"}


def test_every_revision_upgrades_and_downgrades(empty_engine: Engine) -> None:
    revisions = _revisions_base_to_head(empty_engine)
    assert revisions, "no migrations found"

    for script in revisions:
        upgrade(empty_engine, script.revision)
        assert current_revision(empty_engine) == script.revision

    for script in reversed(revisions):
        assert current_revision(empty_engine) == script.revision
        target = script.down_revision
        assert target is None or isinstance(target, str), "merge revisions are not expected"
        downgrade(empty_engine, target or "base")
        assert current_revision(empty_engine) == target

    assert _tables(empty_engine) <= {"alembic_version"}, "downgrade to base must drop every table"

    upgrade(empty_engine)
    assert current_revision(empty_engine) == revisions[-1].revision
    assert _schema_diff(empty_engine) == []


_CREATE_ALL = re.compile(r"\bcreate_all\b")


def test_production_code_never_calls_create_all() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}"
        for package in PRODUCTION_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if _CREATE_ALL.search(line)
    ]
    assert offenders == [], "the schema is built by Alembic migrations only:\n" + "\n".join(
        offenders
    )
