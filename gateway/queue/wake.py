"""Waking the workers when there is work, instead of letting them find it by polling.

A message intake commits is runnable at once; a worker asleep in its poll took up to a poll
interval to notice (0.5 s by default: most of a small message's time from 250 to the
mailbox). So whoever commits runnable work rings:

- on PostgreSQL, ``NOTIFY xgate_queue`` inside the very transaction: PostgreSQL delivers it
  only if that transaction commits, to every listening worker process on every machine;
- on SQLite (one machine, ``xgate serve``), right after the commit, one datagram to each
  worker process's socket in ``<data_dir>/wake/``.

A ring is only a hint and carries nothing: a worker woken for nothing finds no message and
sleeps again, and a lost ring (a full socket buffer, a worker restarting, the listening
connection down, a process that committed and died) costs at most one poll interval, which
stays as the fallback. No message depends on a ring, so nothing is lost when one is missed.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import socket
import threading
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import is_sqlite
from gateway.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "xgate_queue"
_NOTIFY = text(f"NOTIFY {CHANNEL}")
# Set on a SQLite session that stored runnable work; rung after its commit.
_PENDING = "xgate_wake_pending"
_SOCKET_SUFFIX = ".sock"
# How often a listener looks whether it should stop (its thread is a daemon besides).
_LISTEN_SLICE_SECONDS = 1.0


def mark_runnable(session: Session) -> None:
    """This unit of work makes a message runnable: wake the workers once it has committed."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY)
    else:
        session.info[_PENDING] = True


def wake_dir(settings: Settings) -> Path:
    """Where the worker processes of one SQLite gateway bind their wake sockets."""
    return settings.resolve(settings.data_dir) / "wake"


def ring_after_commit(sessions: sessionmaker[Session], directory: Path) -> None:
    """Sessions of ``sessions`` that marked work runnable ring ``directory``'s workers after
    their commit (SQLite; PostgreSQL's NOTIFY needs nothing after the commit)."""
    bell = LocalBell(directory)

    @event.listens_for(sessions, "after_commit")
    def _rang(session: Session) -> None:
        if session.info.pop(_PENDING, False):
            bell.ring()

    @event.listens_for(sessions, "after_rollback")
    def _dropped(session: Session) -> None:
        # Nothing was stored: nothing to wake anyone for.
        session.info.pop(_PENDING, None)


def install(sessions: sessionmaker[Session], settings: Settings) -> None:
    """What a process that stores mail needs so its commits wake the workers."""
    if is_sqlite(settings.database.url):
        ring_after_commit(sessions, wake_dir(settings))


class LocalBell:
    """Rings every worker process bound in one directory, one datagram each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def ring(self) -> None:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return  # no worker has ever listened here
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for name in names:
                if name.endswith(_SOCKET_SUFFIX):
                    self._ring_one(sock, self.directory / name)
        finally:
            sock.close()

    @staticmethod
    def _ring_one(sock: socket.socket, path: Path) -> None:
        try:
            sock.sendto(b"!", str(path))
        except BlockingIOError:
            pass  # its queue is full of rings it has not read yet: it will wake
        except ConnectionRefusedError:
            # Nobody bound any more: a worker killed before it could remove its socket.
            # The name carries a random part, so this is never a newer worker's socket.
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("wake %s: %s", path, exc)


class Doorbell:
    """What the worker threads of one process sleep on between messages.

    A counter, not a flag: a worker notes it before it looks for work and sleeps only while
    it is unchanged, so a ring between the look and the sleep is not slept through.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rings = 0
        self._sleepers = 0

    @property
    def rings(self) -> int:
        return self._rings

    @property
    def sleepers(self) -> int:
        """Threads asleep on it now (for health checks and tests)."""
        return self._sleepers

    def ring(self) -> None:
        with self._cond:
            self._rings += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Sleep until rung after ``seen`` or ``timeout`` seconds; True if rung."""
        with self._cond:
            self._sleepers += 1
            try:
                return self._cond.wait_for(lambda: self._rings != seen, timeout)
            finally:
                self._sleepers -= 1


class WakeListener(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class LocalListener:
    """A worker process's datagram socket in the wake directory (SQLite, one machine)."""

    def __init__(self, directory: Path, doorbell: Doorbell) -> None:
        self.directory = directory
        self.doorbell = doorbell
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(4)}{_SOCKET_SUFFIX}"
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="wake-listener", daemon=True)

    def start(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            # E.g. a data directory whose path is too long for a socket: the poll still
            # finds every message, only later.
            sock.close()
            log.warning("cannot listen for wake-ups at %s (%s); workers poll only",
                        self.path, exc)
            return
        self._sock = sock
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2 * _LISTEN_SLICE_SECONDS)
        if self._sock is not None:
            self._sock.close()
            self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        assert self._sock is not None
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(_LISTEN_SLICE_SECONDS * 1000):
                continue
            # Every ring that has arrived meanwhile is one wake-up.
            try:
                while True:
                    self._sock.recv(16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
            except OSError as exc:
                log.warning("wake listener: %s", exc)
            self.doorbell.ring()


class PostgresListener:
    """``LISTEN xgate_queue`` on a connection of its own (PostgreSQL, any machine)."""

    def __init__(self, engine: Engine, doorbell: Doorbell) -> None:
        self.engine = engine
        self.doorbell = doorbell
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wake-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2 * _LISTEN_SLICE_SECONDS + 1)

    def _run(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            try:
                self._listen()
                pause = 1.0
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect, the poll covers
                log.warning("wake listener: %s; listening again in %.0f s",
                            type(exc).__name__, pause)
                self._stop.wait(pause)
                pause = min(30.0, pause * 2)

    def _listen(self) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            try:
                conn.exec_driver_sql(f"LISTEN {CHANNEL}")
                raw: Any = conn.connection.driver_connection
                # Work committed while nobody listened was announced to nobody.
                self.doorbell.ring()
                while not self._stop.is_set():
                    rung = False
                    for _notice in raw.notifies(timeout=_LISTEN_SLICE_SECONDS):
                        rung = True
                        break
                    if rung:
                        self.doorbell.ring()
            finally:
                # Closed, not returned to the pool: a pooled connection still listening
                # would collect notifications nobody reads.
                conn.invalidate()


def listener_for(settings: Settings, engine: Engine, doorbell: Doorbell) -> WakeListener:
    if is_sqlite(settings.database.url):
        return LocalListener(wake_dir(settings), doorbell)
    return PostgresListener(engine, doorbell)
