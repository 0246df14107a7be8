"""A real PostgreSQL server from Debian's packages, started on loopback for the test run."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql; "
            "run 'make test' (it installs Debian's postgresql package)"
        )
    return Path(found[-1]).parent


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    bindir: Path
    run_as: str | None

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://xgate@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://xgate@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            # initdb and postgres refuse to run as root.
            return ["runuser", "-u", self.run_as, "--", *cmd]
        return cmd

    def _run(self, *args: str) -> None:
        # cwd: the server's own directory, which the postgres user can always enter (the
        # checkout may sit under a directory only root can read).
        result = subprocess.run(self._cmd(*args), cwd=self.datadir.parent,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.datadir.parent / "log"
            log_tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{args[0]} failed with exit {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{log_tail}"
            )

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = _bin_dir()
        run_as = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root but no 'postgres' user") from None
            run_as = "postgres"
        base = Path(tempfile.mkdtemp(prefix="xgate-pg-"))
        datadir = base / "data"
        if run_as:
            shutil.chown(base, run_as)
        server = cls(datadir, free_port(), bindir, run_as)
        try:
            server._run("initdb", "-D", str(datadir), "-U", "xgate",
                        "--auth=trust", "-E", "UTF8", "--no-sync")
            server._run(
                "pg_ctl", "-D", str(datadir), "-l", str(base / "log"), "-w", "-t", "60", "start",
                "-o", f"-h 127.0.0.1 -p {server.port} -k {base} -c fsync=on "
                "-c max_connections=200",
            )
            server._wait_until_reachable(timeout=30)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_until_reachable(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"PostgreSQL did not accept connections on 127.0.0.1:{self.port}"
                    ) from None
                time.sleep(0.1)

    TEMPLATE = "xgate_template"

    def create_database(self, name: str | None = None, *, migrated: bool = True) -> str:
        """A new database, cloned from the migrated template (or empty); its URL."""
        from sqlalchemy import create_engine, text

        name = name or f"t_{secrets.token_hex(6)}"
        clause = f" TEMPLATE {self.TEMPLATE}" if migrated else ""
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        finally:
            admin.dispose()
        return self.url(name)

    @classmethod
    def start_migrated(cls) -> PostgresServer:
        """A server whose template database carries the current schema (Alembic head);
        tests clone it with create_database, which is far quicker than migrating."""
        from sqlalchemy import create_engine

        from gateway.migrate import upgrade

        server = cls.start()
        engine = create_engine(server.create_database(cls.TEMPLATE, migrated=False))
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return server

    def stop(self) -> None:
        if self.datadir.exists():
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "stop"),
                           cwd=self.datadir.parent, capture_output=True, check=False)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)
