"""Database transactions for API handlers, with a domain's errors turned into JSON answers
(SQLAlchemy sessions; login sessions belong to admin_ui.security).

Each router names its domain's three kinds of refusal (not found, conflict, refused); a
unique-constraint race is a conflict everywhere: two people changing the same thing at the
same moment, and the second one loses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.api.errors import ApiError
from gateway.db import read_scope, session_scope


@dataclass(frozen=True)
class DomainErrors:
    not_found: type[Exception]
    conflict: type[Exception]
    refused: type[Exception]
    # 400 for the key directory (what the admin sent is wrong), 422 for the consent rules.
    refused_status: int = 400


class ApiSessions:
    def __init__(self, sessions: sessionmaker[Session], errors: DomainErrors) -> None:
        self.sessions = sessions
        self.errors = errors

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        errors = self.errors
        try:
            yield
        except errors.not_found as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except errors.conflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except errors.refused as exc:
            raise ApiError(errors.refused_status, "refused", str(exc)) from None
        except IntegrityError:
            raise ApiError(409, "conflict",
                           "changed concurrently; reload and try again") from None

    @contextmanager
    def writing(self) -> Iterator[Session]:
        with self._mapped(), session_scope(self.sessions) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._mapped(), read_scope(self.sessions) as session:
            yield session
