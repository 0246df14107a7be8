"""Engine and session factory.

Transactions are owned by the edges (an SMTP transaction, a worker's unit of work, a request,
a CLI command): they open ``session_scope`` and commit once. Data functions never commit.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from crypto.at_rest import MasterKey
from gateway.settings import Settings


class Base(DeclarativeBase):
    pass


def table_of(model: type[Base]) -> Table:
    """A mapped class's Table, typed, for Core statements on hot paths."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(settings: Settings) -> Engine:
    url = settings.database.url
    if is_sqlite(url):
        engine = _sqlite_engine(sqlite_url_for(settings), settings.database.echo)
    else:
        engine = create_engine(url, echo=settings.database.echo, pool_pre_ping=True)
    _offer_master_key(engine, settings.resolve(settings.storage.master_key_file))
    return engine


# Where a connection offers the master key (a function that loads it once): the audit trail
# seals every entry's personal part under a key wrapped with it (gateway.audit.keys), and
# every unit of work that records reaches it through its session, whichever edge opened it.
MASTER_KEY_INFO = "xgate_master_key"


def _offer_master_key(engine: Engine, path: Path) -> None:
    # Read when first needed, not here: a database opened only to read or migrate works
    # without the key file.
    source = functools.cache(lambda: MasterKey.load(path))

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info[MASTER_KEY_INFO] = source


def sqlite_url_for(settings: Settings) -> str:
    """The SQLite URL with a relative file path taken relative to the configuration file's
    directory, like every other path in the configuration, not to the working directory."""
    url = make_url(settings.database.url)
    database = url.database
    if not database or database == ":memory:" or Path(database).is_absolute():
        return settings.database.url
    return url.set(database=str(settings.resolve(Path(database)))).render_as_string(
        hide_password=False)


def _sqlite_engine(url: str, echo: bool) -> Engine:
    engine = create_engine(
        url,
        echo=echo,
        # Workers run in threads and the SMTP edge hands commits to a thread pool.
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _on_begin); pysqlite's implicit BEGIN would
        # be DEFERRED, and a deferred transaction that reads and then writes fails at once
        # with "database is locked" instead of waiting for the lock.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsynced before we answer 250.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        # No busy handler: SQLite's own sleeps in steps of up to 100 ms while it waits for
        # the write lock, which shows up as 250s held back for a tenth of a second. The
        # write lock is taken by begin_immediate below, polling in short steps instead;
        # readers in WAL mode never wait for a lock.
        cur.execute("PRAGMA busy_timeout=0")
        # Temporary tables and indices stay in memory, never in a temp file.
        cur.execute("PRAGMA temp_store=MEMORY")
        # Checkpoints run in the background (gateway.checkpoint), not inside a commit.
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        raw: sqlite3.Connection = conn.connection.driver_connection
        # Readers need no write lock: in WAL mode they see a snapshot and block no writer.
        if conn.get_execution_options().get(_READ_ONLY_OPTION):
            raw.execute("BEGIN")
        else:
            begin_immediate(raw)

    return engine


_READ_ONLY_OPTION = "xgate_read_only"


# How long a writer waits for SQLite's write lock before its unit of work fails (the SMTP
# edge then answers 451; a worker retries the message later).
WRITE_LOCK_TIMEOUT = 30.0


def begin_immediate(conn: sqlite3.Connection, *, timeout: float = WRITE_LOCK_TIMEOUT,
                    first_delay: float = 0.0002, max_delay: float = 0.002) -> None:
    """``BEGIN IMMEDIATE`` on a SQLite connection without a busy handler: while another
    connection holds the write lock, try again after ``first_delay`` seconds, doubling up to
    ``max_delay``; the lock error once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    delay = first_delay
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work that only reads. On SQLite it does not take the write lock, so lookups
    (recipient checks, routing) never wait behind, or hold up, writers. Never commits."""
    session = factory(execution_options={_READ_ONLY_OPTION: True})
    try:
        yield session
    finally:
        session.rollback()
        session.close()
