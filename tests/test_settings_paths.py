"""Relative paths in the configuration are relative to the configuration file's directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.db import sqlite_url_for
from gateway.settings import load_settings


def test_relative_sqlite_path_follows_the_config_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "etc" / "xgate.toml"
    config.parent.mkdir()
    config.write_text('[database]\nurl = "sqlite:///data/xgate.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(config)
    assert sqlite_url_for(settings) == f"sqlite:///{tmp_path}/etc/data/xgate.db"
    assert settings.resolve(settings.storage.master_key_file) == (
        tmp_path / "etc" / "var" / "keys" / "master.key")


@pytest.mark.parametrize("url", ["sqlite:////abs/xgate.db", "sqlite:///:memory:",
                                 "postgresql+psycopg://u@h/db"])
def test_absolute_memory_and_server_urls_are_kept(tmp_path: Path, url: str) -> None:
    config = tmp_path / "xgate.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    settings = load_settings(config)
    if url.startswith("sqlite"):
        assert sqlite_url_for(settings) == url
    assert settings.database.url == url
