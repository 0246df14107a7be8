"""The health check's facts: can we reach the database, and what is in the queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import read_scope
from gateway.queue_stats import state_counts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    database_reachable: bool
    queue: dict[str, int] = field(default_factory=dict)
    problem: str | None = None

    @property
    def status(self) -> str:
        return "ok" if self.database_reachable else "degraded"

    def as_json(self) -> dict[str, object]:
        database: dict[str, object] = {"reachable": self.database_reachable}
        if self.problem:
            database["problem"] = self.problem
        return {"status": self.status, "database": database, "queue": self.queue}


def check_health(sessions: sessionmaker[Session]) -> Health:
    try:
        with read_scope(sessions) as session:
            counts = state_counts(session)
    except SQLAlchemyError as exc:
        # The class name says enough (connection refused, missing table ...) without leaking
        # connection strings into an HTTP answer.
        problem = f"database error: {type(exc).__name__}"
        log.warning("health check: %s", problem)
        return Health(False, problem=problem)
    return Health(True, {state.value: count for state, count in counts.items()})
