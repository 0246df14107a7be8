"""Logging for every xgate process, configured once by the process's entry point.

JSON lines (one object per record) are for log collectors; plain lines are for people. Extra
fields given with ``log.info("...", extra={"queue_id": qid})`` become keys of the JSON object,
so a collector can filter by queue id without parsing the message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.settings import ConfigError, LoggingSettings

# The attributes every LogRecord has; anything else on a record came in through ``extra``.
# uvicorn's color_message is the message again with terminal colour codes.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName", "color_message"}

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in record.__dict__.items()
                  if k not in _STANDARD_ATTRS and not k.startswith("_")}
        if extras:
            text += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return text


def parse_level(name: str) -> int:
    upper = name.strip().upper()
    if upper not in _LEVELS:
        raise ConfigError(
            f"invalid configuration: logging.level: expected one of {', '.join(_LEVELS)} "
            f"(got {name!r})"
        )
    return int(getattr(logging, upper))


def configure_logging(settings: LoggingSettings, *, floor: int = logging.NOTSET,
                      stream: TextIO | None = None) -> None:
    """Send all records to stderr in the configured format.

    ``floor`` raises the level for one-shot CLI commands, whose INFO chatter (e.g. Alembic's)
    would drown the command's own output.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.json_format else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = max(parse_level(settings.level), floor)
    root.setLevel(level)
    # Alembic announces its dialect at INFO each time a process checks the schema revision.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING)
                                          if level > logging.DEBUG else logging.DEBUG)
