"""Is the configured database there, and at the schema revision this version of xgate needs?

The rule and its one-line refusals live here; two callers use them. The CLI
(gateway.cli.common.open_database) asks alembic for both revisions. The parts that ``xgate
serve`` starts (gateway.serve.part) are told the head revision by the supervisor, which asked
alembic before it started them, and read the database's revision with one plain query
(``stored_revision``): importing alembic (with mako and pygments) would cost each worker and
SMTP process about 11 MiB it never uses again.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from gateway.db import is_sqlite, sqlite_url_for
from gateway.operator_errors import CliError
from gateway.settings import Settings

# Where alembic keeps the revision a database is at (its default name; gateway.migrations
# does not change it).
VERSION_TABLE = "alembic_version"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other backends or in-memory databases."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def refuse_missing_database(settings: Settings, *, create: bool = False) -> None:
    """SQLite would silently create an empty file for a mistyped path, and every command would
    then fail with a puzzling "no such table". With ``create``, its directory is made."""
    path = sqlite_path(sqlite_url_for(settings)) if is_sqlite(settings.database.url) else None
    if path is None:
        return
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise CliError(f"database not found: {path} (run 'xgate db upgrade' to create it)")


def refuse_other_revision(current: str | None, head: str) -> None:
    """The database must be at ``head``: better to refuse than fail on every query later."""
    if current is None:
        raise CliError("the database has no xgate schema yet (run 'xgate db upgrade')")
    if current != head:
        raise CliError(f"the database schema is at revision {current} but this version "
                       f"needs {head} (run 'xgate db upgrade')")


# The migrations shipped with this code: revision "NNNN" lives in versions/NNNN_*.py, one
# after the other (tests/test_migrations.py holds every file to that).
_VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"


def shipped_head() -> str | None:
    """The newest revision among the migrations shipped with this code, read from their file
    names (alembic would cost the part's process its 11 MiB)."""
    found = sorted(p.name[:4] for p in _VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    return found[-1] if found else None


def refuse_other_code(head: str) -> None:
    """A part restarted after xgate was upgraded on disk under a running serve would run the
    new code against the head its supervisor was started for: refuse, the supervisor must
    be restarted (and the database upgraded) first."""
    shipped = shipped_head()
    if shipped != head:
        raise CliError(f"this xgate's code needs schema revision {shipped} but xgate serve "
                       f"was started for {head}: xgate was upgraded under a running serve; "
                       "restart it (after 'xgate db upgrade')")


def stored_revision(engine: Engine) -> str | None:
    """The revision the database is at, read without alembic; None without one (no table, or
    downgraded to the base). Several rows (branches, which xgate's migrations never have)
    come back joined, so they never equal a head."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        found = sorted(str(row) for row in rows)
    return ",".join(found) or None
