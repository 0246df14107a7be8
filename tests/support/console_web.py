"""Staff of the admin console for web tests: an admin, an auditor, a data-protection officer
and a caseworker, each with a second factor, and logging them in through the forms."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.services import Services
from gateway.staff.roles import GlobalRole, grant
from gateway.staff.users import add_user
from tests.support.staff_web import enrol, web_login

PASSWORD = "ein sehr langes passwort"
# user name -> global role (None: a caseworker without one).
CONSOLE_STAFF: dict[str, GlobalRole | None] = {
    "root": GlobalRole.ADMIN, "ada": GlobalRole.ADMIN, "dora": GlobalRole.AUDITOR,
    "dpo": GlobalRole.DPO, "anna": None,
}


def add_console_staff(services: Services) -> dict[str, str]:
    """The console's staff; returns each user's TOTP secret."""
    with session_scope(services.sessions) as s:
        for name, role in CONSOLE_STAFF.items():
            add_user(s, name, PASSWORD)
            if role is not None:
                grant(s, name, role, actor="test")
    return {name: enrol(services.settings, name) for name in CONSOLE_STAFF}


def console_login(client: TestClient, secrets: dict[str, str], clock: FakeClock,
                  user: str) -> str:
    """Log ``user`` in (the client's cookies replaced); returns the CSRF token. The clock
    moves on by a TOTP period first: a code is good for one login only."""
    client.cookies.clear()
    clock.advance(30)
    return web_login(client, user, PASSWORD, secrets[user], at=clock())
