"""The relay journal: a delivery noted the moment the next hop has accepted it.

Between the next hop's 250 to the final dot and our committed record of it, a relayed
message is delivered but we do not know it: a worker killed in that window leaves the
recipient pending, and whoever takes the message over sends it again. On SQLite the record
in the queue database has to wait for the database's one write lock, which the SMTP intake
and the other workers hold a few milliseconds at a time; under load that wait was tens of
milliseconds. So the delivery is first noted here, in a small SQLite file of its own
(``data_dir/relay-journal.db``) that only relay notes write to, with one fsync; then the
queue database is updated as before, and the note is forgotten.

A worker that takes a message over (``Worker`` after claiming it) looks here first: a
recipient that is noted as delivered but still pending in the queue database is recorded as
delivered from the note and not sent again. A worker process, when it starts, forgets notes
whose recipients are no longer pending.

The journal is local to one machine: with workers on several machines sharing PostgreSQL,
a message taken over by a worker on another machine is not protected by it.

This file is not part of the queue database's schema (no migration): it is a local
write-ahead note, created on first use, that may be deleted while no worker runs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.db import begin_immediate

log = logging.getLogger(__name__)

FILE_NAME = "relay-journal.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS relayed (
    queue_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    relay TEXT NOT NULL,
    reply TEXT NOT NULL,
    noted_at REAL NOT NULL,
    PRIMARY KEY (queue_id, recipient)
) WITHOUT ROWID
"""
# A note waits for another worker's note at most this long; each takes one fsync.
_LOCK_TIMEOUT_SECONDS = 30.0
# Each note and its removal add about three pages to the write-ahead log.
_CHECKPOINT_EVERY = 100


@dataclass(frozen=True)
class Noted:
    queue_id: str
    recipient: str
    relay: str
    reply: str
    # time.time() when the note was committed.
    noted_at: float


class RelayJournal:
    """One connection per process, shared by its worker threads under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._forgotten = 0

    def note(self, queue_id: str, relay: str, delivered: Sequence[tuple[str, str]]) -> None:
        """Record (recipient, reply) pairs as delivered, durably (committed and fsynced)."""
        with self._lock:
            conn = self._connection()
            conn.execute("PRAGMA synchronous=FULL")
            _begin_immediate(conn)
            try:
                noted_at = time.time()
                conn.executemany(
                    "INSERT OR REPLACE INTO relayed VALUES (?, ?, ?, ?, ?)",
                    [(queue_id, recipient, relay, reply, noted_at)
                     for recipient, reply in delivered])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def forget(self, queue_id: str, recipients: Iterable[str]) -> None:
        """Drop notes the queue database now has. Not fsynced: a note that comes back after
        a power cut is found to be recorded already, and forgotten again."""
        self._write_unsynced("DELETE FROM relayed WHERE queue_id = ? AND recipient = ?",
                             [(queue_id, r) for r in recipients])
        self._forgotten += 1
        if self._forgotten % _CHECKPOINT_EVERY == 0:
            self._checkpoint()

    def noted(self, queue_id: str) -> list[Noted]:
        if not self.path.exists():
            return []
        with self._lock:
            rows = self._connection().execute(
                "SELECT queue_id, recipient, relay, reply, noted_at FROM relayed "
                "WHERE queue_id = ?", (queue_id,)).fetchall()
        return [Noted(*row) for row in rows]

    def prune(self, still_pending: Callable[[list[Noted]], set[tuple[str, str]]]) -> int:
        """Forget every note whose (queue id, recipient) ``still_pending`` does not return;
        the number forgotten."""
        if not self.path.exists():
            return 0
        with self._lock:
            rows = [Noted(*row) for row in self._connection().execute(
                "SELECT queue_id, recipient, relay, reply, noted_at FROM relayed")]
        if not rows:
            return 0
        keep = still_pending(rows)
        done = [(n.queue_id, n.recipient) for n in rows if (n.queue_id, n.recipient) not in keep]
        self._write_unsynced("DELETE FROM relayed WHERE queue_id = ? AND recipient = ?", done)
        return len(done)

    def _checkpoint(self) -> None:
        # Here, after the queue database has the record, rather than inside some note's
        # commit (SQLite's automatic checkpoint), which would then take a few fsyncs longer.
        # PASSIVE: it neither waits for nor blocks another process's note.
        with self._lock:
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _write_unsynced(self, statement: str, rows: list[tuple[str, str]]) -> None:
        if not rows or not self.path.exists():
            return
        with self._lock:
            conn = self._connection()
            conn.execute("PRAGMA synchronous=NORMAL")
            _begin_immediate(conn)
            try:
                conn.executemany(statement, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # Waiting for the lock is done by _begin_immediate, in short steps.
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            _begin_immediate(conn)
            conn.execute(_SCHEMA)
            conn.execute("COMMIT")
            self._conn = conn
        return self._conn


def _begin_immediate(conn: sqlite3.Connection) -> None:
    # SQLite's busy handler sleeps in steps of up to 100 ms; only relay notes (each one
    # insert and one fsync) compete for this file, so short polls keep the wait short.
    begin_immediate(conn, timeout=_LOCK_TIMEOUT_SECONDS, first_delay=0.0001, max_delay=0.001)
