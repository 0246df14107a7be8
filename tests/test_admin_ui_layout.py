"""The web app's shape: which routes answer without a login, which right every other route
needs, and the templates and assets that ship in the package.

The routes are found through the OpenAPI schema, not by walking ``app.routes``: since
FastAPI 0.137 that holds one entry per included router, and a guard walking it would check
nothing.
"""

from __future__ import annotations

import glob
import re
import shutil
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import admin_ui
from admin_ui.app import create_app
from gateway.db import make_engine, make_session_factory, session_scope
from gateway.settings import Settings, load_settings
from gateway.staff import users as staff
from tests.conftest import write_master_key
from tests.support.staff_web import add_tokens, bearer

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "ein sehr langes passwort"
STAFF = bearer("sachb")

# Adding to this list puts a route on the app without a login: a decision to make on purpose
# (and such routes belong in admin_ui/public).
PUBLIC = {
    "/healthz", "/metrics",
    "/.well-known/openpgpkey/hu/{digest}", "/.well-known/openpgpkey/policy",
    "/.well-known/openpgpkey/{domain}/hu/{digest}", "/.well-known/openpgpkey/{domain}/policy",
    # The login itself, which each checks what it needs (admin_ui.pages.auth).
    "/login", "/login/code", "/login/enrol", "/logout", "/language",
}
ADMIN_ONLY = ("/api/v1/keys", "/api/v1/partners", "/console/quarantine", "/console/partners",
              "/console/keys", "/console/users")
ANY_STAFF = ("/api/v1/consents", "/", "/logout/everywhere", "/account/recovery-codes",
             "/account/password")
# Mailbox members only: anyone else gets 404 (tests/test_web_ticket_rights.py tries each;
# tests/test_web_pickup_ticket.py the pickup items').
MEMBERS_ONLY = ("/mailboxes/", "/tickets/", "/hotline/", "/pickup/")
# The consent register: any staff user but an auditor or DPO only; a release or held report
# outside the user's mailboxes is 404 (tests/test_web_consent.py tries each, and the roles).
CONSENT = "/console/consent"


@pytest.fixture
def settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    database = tmp_path / "xgate.db"
    shutil.copyfile(sqlite_template, database)
    # Every installation has its master key; the audit trail seals with it (logout
    # everywhere, for one, records an entry).
    key = write_master_key(tmp_path / "var")
    settings = load_settings(None, data_dir=str(tmp_path / "var"),
                             database={"url": f"sqlite:///{database}"},
                             storage={"master_key_file": str(key)})
    engine = make_engine(settings)
    with session_scope(make_session_factory(engine)) as session:
        staff.add_user(session, "sachb", PASSWORD)
    engine.dispose()
    add_tokens(settings, "sachb")
    return settings


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _guarded(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of the app but the public ones."""
    paths = app.openapi()["paths"]
    assert PUBLIC <= set(paths), "PUBLIC names a route the app does not have"
    operations = [(method.upper(), path) for path, ops in paths.items() if path not in PUBLIC
                  for method in ops]
    assert len(operations) > 15
    return operations


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_but_the_public_ones_needs_a_login(app: FastAPI,
                                                      client: TestClient) -> None:
    for method, path in _guarded(app):
        response = client.request(method, _concrete(path), follow_redirects=False)
        if path.startswith("/api/"):
            assert response.status_code == 401, f"{method} {path} answers without a login"
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="xgate admin"'
        else:
            assert response.status_code == 303, f"{method} {path} answers without a login"
            assert response.headers["location"] == "/login"


def test_admin_routes_refuse_staff_without_the_admin_right(app: FastAPI,
                                                           client: TestClient) -> None:
    for method, path in _guarded(app):
        if path.startswith("/console/"):
            continue  # every console route, for every role: tests/test_console_roles.py
        response = client.request(method, _concrete(path), headers=STAFF)
        if path.startswith(ADMIN_ONLY):
            assert response.status_code == 403, f"{method} {path} is not admin-only"
            if path.startswith("/api/"):
                assert response.json()["error"] == "forbidden"
        elif path.startswith(MEMBERS_ONLY):
            assert response.status_code == 404, f"{method} {path} answers a non-member"
        elif path.startswith(CONSENT):
            # A user of no mailbox: the lists are empty, a form is refused on the page.
            expected = 404 if "{" in path else 200 if method == "GET" else 422
            assert response.status_code == expected, f"{method} {path}"
        else:
            assert path in ANY_STAFF or path.startswith(ANY_STAFF[0]), (
                f"{method} {path}: which right does it need?")
            assert response.status_code not in (401, 403), f"{method} {path} refuses staff"


def _package_data() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns: list[str] = config["tool"]["setuptools"]["package-data"]["admin_ui"]
    return patterns


@pytest.mark.parametrize("folder", ["templates", "static"])
def test_templates_and_assets_are_package_data(folder: str) -> None:
    # The editable install reads the source tree and would not miss a rule; a wheel would.
    # Matched as setuptools matches package-data: glob, recursive, files only.
    package = Path(admin_ui.__file__).parent
    present = {p for p in (package / folder).rglob("*") if p.is_file()
               and "__pycache__" not in p.parts}
    shipped = {Path(p) for pattern in _package_data()
               for p in glob.glob(str(package / pattern), recursive=True) if Path(p).is_file()}
    assert present
    assert present <= shipped


def test_the_installed_package_carries_the_layout_and_stylesheet() -> None:
    files = resources.files("admin_ui")
    assert files.joinpath("templates", "layout.html").is_file()
    assert files.joinpath("static", "app.css").is_file()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_layout_is_german_and_uses_nothing_from_outside() -> None:
    text = resources.files("admin_ui").joinpath("templates", "layout.html").read_text("utf-8")
    parser = _Tags()
    parser.feed(text)
    tags = dict(parser.tags)
    assert tags["html"]["lang"] == "{{ lang }}"
    assert "script" not in tags
    assert not any(name.startswith("on") for _tag, attrs in parser.tags for name in attrs)
    assert "url_for('static', path='app.css')" in (tags["link"]["href"] or "")
    values = [v or "" for _tag, attrs in parser.tags for v in attrs.values()]
    assert not any(v.startswith(("http:", "https:", "//")) for v in values)
    css = resources.files("admin_ui").joinpath("static", "app.css").read_text("utf-8")
    for outside in ("http:", "https:", "@import", "url("):
        assert outside not in css
