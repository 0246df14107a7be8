"""WAL checkpoints on SQLite, off the hot path.

SQLite's automatic checkpoint runs inside whichever commit happens to cross the threshold,
so now and then one SMTP transaction waits for a whole checkpoint (writing pages into the
database file and fsyncing it) before its 250. Automatic checkpoints are therefore off on
every connection (gateway.db), and each long-running process checkpoints here instead:
PASSIVE, so it never waits for or blocks a writer.
"""

from __future__ import annotations

import logging
import sqlite3

from sqlalchemy import Engine

from gateway.periodic import PeriodicJob

log = logging.getLogger(__name__)


class WalCheckpointer(PeriodicJob):
    def __init__(self, engine: Engine, interval: float = 1.0) -> None:
        super().__init__("wal-checkpoint", interval, first_run_at_start=False,
                         join_timeout=None)
        self.engine = engine

    def start(self) -> None:
        if self.engine.dialect.name == "sqlite":
            super().start()

    def checkpoint(self) -> None:
        # The raw connection: through SQLAlchemy the statement would open a transaction, and
        # ours begin IMMEDIATE, which takes the write lock this is meant not to take.
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cursor.close()
        finally:
            raw.close()

    def run_once(self) -> None:
        try:
            self.checkpoint()
        except sqlite3.Error as exc:
            # The next round tries again; the WAL only grows meanwhile.
            log.warning("WAL checkpoint failed: %s", exc)
