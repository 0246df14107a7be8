"""The health check's facts: can we reach the database, and what is in the queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import read_scope
from gateway.metrics import part_status_file
from gateway.queue.stats import state_counts
from gateway.serve.part_status import PartStatus, read_status
from gateway.settings import Settings
from scanning.clamd_client import ClamdClient
from scanning.errors import ScanningError
from scanning.managed import select_signatures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScannerHealth:
    reachable: bool
    managed: bool
    # False on an offline machine where only the test signatures are loaded: it must be said
    # loudly, because such a scanner finds EICAR and nothing real.
    real_signatures: bool | None
    version: str | None = None
    problem: str | None = None

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {"reachable": self.reachable, "managed": self.managed,
                                   "real_signatures": self.real_signatures}
        if self.version:
            data["version"] = self.version
        if self.problem:
            data["problem"] = self.problem
        if self.real_signatures is False:
            data["warning"] = ("RUNNING WITHOUT REAL VIRUS SIGNATURES: only the test "
                               "signatures are loaded; real malware is not detected")
        return data


@dataclass(frozen=True)
class Health:
    database_reachable: bool
    queue: dict[str, int] = field(default_factory=dict)
    problem: str | None = None
    scanner: ScannerHealth | None = None
    # The parts of ``xgate serve`` (None when no supervisor of ours runs them).
    parts: dict[str, PartStatus] | None = None

    @property
    def status(self) -> str:
        scanner_ok = self.scanner is None or (self.scanner.reachable
                                              and self.scanner.real_signatures is not False)
        parts_ok = self.parts is None or all(p.healthy for p in self.parts.values())
        return "ok" if self.database_reachable and scanner_ok and parts_ok else "degraded"

    def as_json(self) -> dict[str, object]:
        database: dict[str, object] = {"reachable": self.database_reachable}
        if self.problem:
            database["problem"] = self.problem
        data: dict[str, object] = {"status": self.status, "database": database,
                                   "queue": self.queue}
        if self.scanner is not None:
            data["scanner"] = self.scanner.as_json()
        if self.parts is not None:
            data["parts"] = {name: part.as_json() for name, part in sorted(self.parts.items())}
        return data


def check_scanner(settings: Settings) -> ScannerHealth:
    managed = (settings.scanning.clamd_socket is None
               and settings.scanning.clamd_host is None)
    real: bool | None = None
    if managed:
        try:
            real = not select_signatures(settings).test_only
        except ScanningError:
            real = False
    try:
        version = ClamdClient.from_settings(settings).version(timeout=2)
    except ScanningError as exc:
        return ScannerHealth(False, managed, real, problem=str(exc))
    if not managed:
        # An external clamd names its database in the version string ("ClamAV x/DB/date").
        real = "/" in version
    return ScannerHealth(True, managed, real, version=version)


def check_health(sessions: sessionmaker[Session], settings: Settings | None = None) -> Health:
    scanner = check_scanner(settings) if settings is not None else None
    parts = read_status(part_status_file(settings)) if settings is not None else None
    try:
        with read_scope(sessions) as session:
            counts = state_counts(session)
    except SQLAlchemyError as exc:
        # The class name says enough (connection refused, missing table ...) without leaking
        # connection strings into an HTTP answer.
        problem = f"database error: {type(exc).__name__}"
        log.warning("health check: %s", problem)
        return Health(False, problem=problem, scanner=scanner, parts=parts)
    return Health(True, {state.value: count for state, count in counts.items()},
                  scanner=scanner, parts=parts)
