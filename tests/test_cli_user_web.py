"""``xgate user role|token|second-factor-reset``: the web app's roles, API tokens that work
once made and stop when revoked, and a lost second factor reset."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin_ui.app import create_app
from gateway.db import read_scope, session_scope
from gateway.settings import load_settings
from gateway.staff import second_factor
from gateway.staff.models import WebSession
from gateway.staff.roles import roles_of
from gateway.staff.users import find_user
from gateway.web import sessions as web_sessions
from tests.support.cli import Cli
from tests.support.db import opened
from tests.support.staff_web import enrol

PASSWORD = "ein sehr langes passwort"


@pytest.fixture
def user(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    cli("user", "add", "jana", "--password-stdin")
    return "jana"


def _roles(cli: Cli, username: str) -> set[str]:
    with opened(load_settings(cli.config)) as sessions, read_scope(sessions) as session:
        found = find_user(session, username)
        assert found is not None
        return {r.value for r in roles_of(session, found.id, found.admin)}


def test_roles_are_granted_and_revoked(cli: Cli, user: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Another admin: the last active one cannot lose the right (test_cli_user.py).
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    cli("user", "add", "chef", "--password-stdin", "--admin")
    assert cli("user", "role", user, "dpo")[1].strip() == "staff user jana has the role dpo"
    assert cli("user", "role", user, "DPO")[1].strip() == (
        "staff user jana has the role dpo (unchanged)")
    cli("user", "role", user, "auditor")
    cli("user", "role", user, "admin")
    assert _roles(cli, user) == {"dpo", "auditor", "admin"}
    assert cli("user", "role", user, "auditor", "--revoke")[1].strip() == (
        "staff user jana no longer has the role auditor")
    cli("user", "role", user, "admin", "--revoke")
    assert _roles(cli, user) == {"dpo"}
    assert cli.fails("user", "role", user, "chef") == (
        "no role 'chef'; roles are admin, auditor, dpo")
    assert cli.fails("user", "role", "niemand", "dpo") == "no staff user niemand"
    actions = [action for _actor, action in cli.audit_actions()]
    assert actions.count("role-granted") == 2 and actions.count("role-revoked") == 1


def test_a_token_works_until_revoked(cli: Cli, user: str) -> None:
    out = cli("user", "token", "create", user, "--name", "Skript")[1]
    token_id, token = re.fullmatch(
        r"API token (\d+) for jana \(shown only now\):\n(xg_\S+)\n", out).groups()  # type: ignore[union-attr]
    settings = load_settings(cli.config)
    with TestClient(create_app(settings)) as api:
        def status() -> int:
            code: int = api.get("/api/v1/consents",
                                headers={"Authorization": f"Bearer {token}"}).status_code
            return code

        assert status() == 200
        listed = cli("user", "token", "list", user)[1]
        assert "Skript" in listed and token not in listed and "last used 20" in listed
        assert cli("user", "token", "revoke", user, token_id)[1].strip() == (
            f"API token {token_id} of jana revoked")
        assert status() == 401
    assert cli("user", "token", "revoke", user, token_id)[1].strip() == (
        f"API token {token_id} of jana was revoked already")
    assert cli.fails("user", "token", "revoke", user, "999") == "staff user jana has no token 999"
    assert "api-token-created" in [a for _, a in cli.audit_actions()]


def test_second_factor_reset(cli: Cli, user: str) -> None:
    settings = load_settings(cli.config)
    enrol(settings, user)
    with opened(settings) as sessions, session_scope(sessions) as session:
        found = find_user(session, user)
        assert found is not None
        web_sessions.start(session, found.id, datetime.now(UTC), second_factor=True)
    assert cli("user", "second-factor-reset", user)[1].strip() == (
        "staff user jana must set up a new second factor at the next login")
    with opened(settings) as sessions, read_scope(sessions) as session:
        found = find_user(session, user)
        assert found is not None and not second_factor.enrolled(session, found.id)
        # Whoever was logged in with the lost phone's codes is logged out.
        assert session.scalar(select(func.count()).select_from(WebSession)) == 0
    assert cli("user", "second-factor-reset", user)[1].strip() == (
        "staff user jana had no second factor")
    assert [a for _, a in cli.audit_actions()].count("second-factor-reset") == 1
