"""Migration 0009 seals the personal part of release versions already in the register (and a
downgrade opens it again), with the master key that ``xgate db upgrade`` passes; on SQLite
and PostgreSQL. tests/test_migrations.py checks the schema; this checks the data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect, text

from crypto.at_rest import MasterKey
from crypto.errors import SealError
from gateway import audit
from gateway.consent.records import history, releases_for_case
from gateway.db import make_engine, make_session_factory, read_scope
from gateway.migrate import current_revision, downgrade, upgrade
from gateway.settings import load_settings
from tests.support.cli import Cli, master_key

CASE = "51.2-1234/2026"
CHILD = "Lotta Migrationstest"
GRANTOR = "Gerda Migrationstest"
PURPOSE = "Beratung nach Umzug (Migrationstest)"
TABLE = "consent_release_versions"


@pytest.fixture
def engine(cli: Cli) -> Iterator[Engine]:
    built = make_engine(load_settings(cli.config))
    yield built
    built.dispose()


def _register_in_clear(engine: Engine) -> None:
    """Two versions of a release as revision 0008 stored them."""
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO consent_releases (id, created_by, created_at) "
                          "VALUES (1, 'sb', :now)"), {"now": now})
        for version, purpose in ((1, PURPOSE), (2, PURPOSE + ", verlängert")):
            conn.execute(text(
                f"INSERT INTO {TABLE} (release_id, version, case_ref, case_key, data_subjects,"
                " grantor_name, grantor_role, categories, recipients, purpose, valid_from,"
                " valid_until, recorded_by, recorded_at, note) VALUES (1, :version, :case,"
                " :case, :subjects, :grantor, 'parent', :categories, :recipients, :purpose,"
                " '2026-03-01', '2026-12-31', 'sb', :now, '')"),
                {"version": version, "case": CASE, "subjects": json.dumps([CHILD]),
                 "grantor": GRANTOR, "categories": json.dumps(["Hilfeplan"]),
                 "recipients": json.dumps([{"kind": "address", "value": "a@b.example"}]),
                 "purpose": purpose, "now": now})


def _columns(engine: Engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(TABLE)}


def test_existing_releases_are_sealed_and_opened_again(cli: Cli, engine: Engine) -> None:
    key = master_key(load_settings(cli.config))
    downgrade(engine, "0008")
    _register_in_clear(engine)

    # Without the key the conversion cannot run, and nothing of it stays behind.
    with pytest.raises(RuntimeError, match="master key"):
        upgrade(engine, "0009")
    assert current_revision(engine) == "0008"
    assert "sealed_personal" not in _columns(engine)

    # The command passes the installation's key.
    _, out, _ = cli("db", "upgrade")
    assert out.startswith("database schema upgraded from 0008 to ")
    assert {"data_subjects", "grantor_name", "purpose"}.isdisjoint(_columns(engine))
    with engine.connect() as conn:
        blobs = conn.execute(text(f"SELECT sealed_personal FROM {TABLE}")).scalars().all()
    assert len(blobs) == 2
    for blob in blobs:
        for clear in (CHILD, GRANTOR, "Migrationstest"):
            assert clear.encode() not in bytes(blob)
    sessions = make_session_factory(engine)
    with read_scope(sessions) as s:
        v1, v2 = history(s, key, 1)
        assert (v1.release.data_subjects, v1.release.granted_by.name) == ((CHILD,), GRANTOR)
        assert v2.release.purpose == PURPOSE + ", verlängert"
        assert [t.ref for t in releases_for_case(s, CASE)] == [(1, 1), (1, 2)]
        assert audit.verify(s).ok

    downgrade(engine, "0008", master_key=lambda: key)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT data_subjects, grantor_name, purpose FROM {TABLE} "
                                 "ORDER BY version")).all()
    assert [tuple(r) for r in rows] == [
        (json.dumps([CHILD]), GRANTOR, PURPOSE),
        (json.dumps([CHILD]), GRANTOR, PURPOSE + ", verlängert")]
    assert "sealed_personal" not in _columns(engine)


def test_a_wrong_master_key_stops_the_downgrade(cli: Cli, engine: Engine) -> None:
    downgrade(engine, "0008")
    _register_in_clear(engine)
    cli("db", "upgrade")
    other = MasterKey.generate()
    with pytest.raises(SealError, match="another master key"):
        downgrade(engine, "0008", master_key=lambda: other)
    assert current_revision(engine) != "0008"
