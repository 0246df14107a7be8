"""Logging in to the web app in tests: API tokens with known values, a second factor set up
straight in the database, and the browser's login through the real forms (for TestClient)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyotp
from fastapi.testclient import TestClient

from crypto.at_rest import MasterKey
from gateway.db import session_scope
from gateway.models import StaffUser
from gateway.settings import Settings
from gateway.staff import second_factor, tokens
from gateway.staff.models import ApiToken, SecondFactor
from gateway.staff.users import find_user
from tests.support.db import opened

# The web app's own base URL for TestClient: its session cookies are Secure, and httpx sends
# those over https only.
BASE_URL = "https://testserver"


def known_token(username: str) -> str:
    return f"{tokens.PREFIX}test-token-of-{username}"


def bearer(username: str) -> dict[str, str]:
    """The Authorization header of ``username``'s test token (made by ``add_tokens``)."""
    return {"Authorization": f"Bearer {known_token(username)}"}


def add_tokens(settings: Settings, *usernames: str) -> None:
    """An API token for each user, with the value ``bearer`` sends."""
    with opened(settings) as sessions, session_scope(sessions) as session:
        for username in usernames:
            user = find_user(session, username)
            assert user is not None, username
            session.add(ApiToken(user_id=user.id, name="test",
                                 token_hash=tokens.token_hash(known_token(username)),
                                 created_at=datetime.now(UTC)))


def enrol(settings: Settings, username: str) -> str:
    """A confirmed second factor for ``username``; returns its TOTP secret."""
    master = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    with opened(settings) as sessions, session_scope(sessions) as session:
        user = session.query(StaffUser).filter_by(username=username).one()
        secret = second_factor.begin_enrolment(session, user.id, master)
        factor = session.get(SecondFactor, user.id)
        assert factor is not None
        factor.confirmed_at = datetime.now(UTC)
    return secret


def form_csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def web_login(client: TestClient, username: str, password: str, secret: str,
              at: datetime | None = None) -> str:
    """Log in through the forms (password, then TOTP computed for ``at``, default now);
    returns the session's CSRF token."""
    page = client.get("/login")
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": form_csrf(page.text)},
                           follow_redirects=False)
    assert response.headers.get("location") == "/login/code", response.text
    page = client.get("/login/code")
    response = client.post("/login/code", data={"code": totp_code(secret, at),
                                                "csrf_token": form_csrf(page.text)},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/", response.text
    return form_csrf(client.get("/").text)


def totp_code(secret: str, at: datetime | None = None) -> str:
    return pyotp.TOTP(secret).at(at or datetime.now(UTC))
