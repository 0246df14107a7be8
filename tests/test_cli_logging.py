"""Log lines: JSON objects with the extra fields, or plain text; configured from settings."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.init import sample_config
from gateway.logging_setup import configure_logging
from gateway.settings import ConfigError, LoggingSettings
from tests.support.cli import run_xgate


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_extra_fields() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="INFO", json=True), stream=stream)
    logging.getLogger("gateway.test").info("message %s", "queued",
                                           extra={"queue_id": "ABC", "size": 12})
    logging.getLogger("gateway.test").debug("not shown")
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "message queued"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "gateway.test"
    assert entry["queue_id"] == "ABC" and entry["size"] == 12
    assert entry["timestamp"].endswith("+00:00")


def test_json_lines_include_exceptions() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(json=True), stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    entry = json.loads(stream.getvalue())
    assert "ValueError: boom" in entry["exception"]


def test_plain_lines_for_people() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="warning", json=False), stream=stream)
    logging.getLogger("gateway.test").info("hidden")
    logging.getLogger("gateway.test").warning("lease lost", extra={"queue_id": "ABC"})
    text = stream.getvalue()
    assert "hidden" not in text
    assert "WARNING gateway.test: lease lost queue_id=ABC" in text
    assert not text.lstrip().startswith("{")


def test_floor_quietens_one_shot_commands() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", json=False), floor=logging.WARNING,
                      stream=stream)
    logging.getLogger("x").info("chatter")
    assert stream.getvalue() == ""


def test_unknown_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"logging\.level"):
        configure_logging(LoggingSettings(level="LOUD"))


def test_cli_reports_an_unknown_level(tmp_path: Path) -> None:
    path = tmp_path / "xgate.toml"
    path.write_text(sample_config().replace('level = "INFO"', 'level = "LOUD"'))
    result = run_xgate("-c", path, "queue", "list")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "logging.level" in result.stderr
