"""The citizen portal app on its own: its security headers, its health answer, its assets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.portal.app import create_portal_app
from gateway.settings import Settings, load_settings
from tests.conftest import write_master_key


@pytest.fixture
def settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    database = tmp_path / "xgate.db"
    shutil.copyfile(sqlite_template, database)
    key = write_master_key(tmp_path / "var")
    return load_settings(None, data_dir=str(tmp_path / "var"),
                         database={"url": f"sqlite:///{database}"},
                         storage={"master_key_file": str(key)})


def test_every_answer_has_the_strict_headers_and_no_hsts_without_tls(settings: Settings) -> None:
    with TestClient(create_portal_app(settings)) as client:
        for path in ("/healthz", "/static/portal.css", "/nowhere"):
            answer = client.get(path)
            assert "default-src 'none'" in answer.headers["content-security-policy"]
            assert "data:" not in answer.headers["content-security-policy"]
            assert answer.headers["referrer-policy"] == "no-referrer"
            assert "camera=()" in answer.headers["permissions-policy"]
            assert "strict-transport-security" not in answer.headers
        assert client.get("/healthz").text == "ok"
        assert client.get("/healthz").headers["cache-control"] == "no-store"
        assert client.get("/static/print.css").headers["cache-control"] == "no-cache"


def test_hsts_when_the_portal_serves_tls(settings: Settings) -> None:
    settings.portal.tls = True
    with TestClient(create_portal_app(settings), base_url="https://testserver") as client:
        assert client.get("/healthz").headers["strict-transport-security"].startswith("max-age=")


def test_the_portal_is_off_by_default_on_its_own_port() -> None:
    portal = Settings().portal
    assert (portal.enabled, portal.port, portal.max_files) == (False, 8026, 10)
    assert portal.max_upload_bytes == 25 * 1024 * 1024
