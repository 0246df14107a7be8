"""Staff for the admin console's quarantine, partner and key pages in tests: two admins
(four eyes), a caseworker, an auditor and a data-protection officer, each with an API token
(tests.support.staff_web.bearer) and a password for the login forms."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.audit.view import opened
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry
from gateway.settings import Settings
from gateway.staff import roles
from gateway.staff import users as staff
from gateway.staff.roles import GlobalRole
from tests.support.staff_web import add_tokens, bearer

PASSWORD = "ein sehr langes passwort"
ADMINS = ("alice", "bob")
# The users who must not open the admin-only areas, with their role (None: a caseworker).
NOT_ADMINS = {"carol": None, "pruef": GlobalRole.AUDITOR, "dsb": GlobalRole.DPO}


def add_console_admins(settings: Settings, sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        for name in ADMINS:
            staff.add_user(session, name, PASSWORD, admin=True)
        for name, role in NOT_ADMINS.items():
            staff.add_user(session, name, PASSWORD)
            if role is not None:
                roles.grant(session, name, role, actor="test")
    add_tokens(settings, *ADMINS, *NOT_ADMINS)


def as_user(name: str) -> dict[str, str]:
    return bearer(name)


def audit_trail(sessions: sessionmaker[Session]) -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, action, details) of every audit entry, after checking the chain."""
    with read_scope(sessions) as session:
        assert audit.verify(session).ok
        return [(e.actor, e.action, e.details) for e in opened(session, session.scalars(
            select(AuditEntry).order_by(AuditEntry.seq)))]


def not_forbidden(client: TestClient, method: str, path: str,
                  data: dict[str, str] | None = None) -> Iterator[str]:
    """The non-admin users NOT answered 403 (expected: none), with what they got."""
    for name in NOT_ADMINS:
        response = client.request(method, path, headers=as_user(name), data=data,
                                  follow_redirects=False)
        if response.status_code != 403:
            yield f"{name}: {response.status_code}"
