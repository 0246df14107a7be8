"""``python -m gateway.serve.part -c CONFIG PART``: how ``xgate serve`` starts each part.

The same as ``xgate -c CONFIG serve PART``, without the whole ``xgate`` command: that builds
its argument parser from every command module and so imports alembic, argon2, pyotp, the demo
SMTP catcher and more, about 14 MiB a worker or SMTP process would hold for ever and never use
(the memory goal of a large message counts the process's idle size too). Here only the part's
own modules are imported: the settings are loaded as the CLI loads them (gateway.config_file),
errors end as the CLI ends them (gateway.operator_errors), and the part runs what
gateway.serve.parts runs.

The database's schema revision is checked without alembic: the supervisor checked it with
alembic before it started any part and passes the head revision it needs in
``XGATE_SCHEMA_HEAD``; a part compares it with the database's (gateway.schema_check), so a part
restarted after someone ran ``xgate db downgrade`` under a running serve refuses to start, with
the CLI's message. ``xgate serve PART`` run by hand (systemd units) keeps the CLI's full check.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.config_file import load_config
from gateway.db import make_engine
from gateway.operator_errors import CliError, exit_status
from gateway.schema_check import (
    refuse_missing_database,
    refuse_other_code,
    refuse_other_revision,
    stored_revision,
)
from gateway.settings import Settings

PARTS = ("clamd", "smtp", "worker", "web", "portal", "catcher")
# The parts that use the database from their start; the web app starts without it and
# reports it on /healthz.
PARTS_NEEDING_THE_SCHEMA = ("smtp", "worker", "portal")
SCHEMA_HEAD_ENV = "XGATE_SCHEMA_HEAD"


def child_argv(config: Path, part: str) -> list[str]:
    """The command line the supervisor starts ``part`` with."""
    return [sys.executable, "-m", "gateway.serve.part", "-c", str(config.resolve()), part]


def run_part(settings: Settings, part: str) -> int:
    """Check what ``part`` needs and bind its listeners (or take those the supervisor bound
    for it), then run it until it stops; its exit status."""
    # Here, not at the top: the xgate command imports this module for every command.
    from gateway.memory_release import fix_allocation_thresholds
    from gateway.serve import parts as serve_parts
    from gateway.serve.checks import check_before_serving

    # Before the part allocates anything large: what a large message took goes back to
    # the system afterwards (gateway.memory_release).
    fix_allocation_thresholds()
    bound = check_before_serving(settings, [part])
    if part == "smtp":
        return serve_parts.run_smtp(settings, bound)
    if part == "web":
        return serve_parts.run_web(settings, bound.get("web", []))
    if part == "portal":
        return serve_parts.run_portal(settings, bound.get("portal", []))
    if part == "catcher":
        # Only here: it imports aiosmtpd, which no other part but the SMTP one needs.
        from gateway.demo.catcher import run_catcher

        return run_catcher(settings)
    runner = {"clamd": serve_parts.run_clamd, "worker": serve_parts.run_workers}[part]
    return runner(settings)


def check_schema(settings: Settings, head: str) -> None:
    """Refuse (CliError) code that needs another head, and a database that is missing or not
    at ``head``."""
    refuse_other_code(head)
    refuse_missing_database(settings)
    engine = make_engine(settings)
    try:
        current = stored_revision(engine)
    finally:
        engine.dispose()
    refuse_other_revision(current, head)


def _serve(config: Path, part: str) -> int:
    settings = load_config(config, serving=True)
    if part in PARTS_NEEDING_THE_SCHEMA:
        head = os.environ.get(SCHEMA_HEAD_ENV)
        if not head:
            raise CliError(f"{SCHEMA_HEAD_ENV} is not set: this entry starts the parts of "
                           f"'xgate serve'; run 'xgate serve {part}' to run it alone")
        check_schema(settings, head)
    return run_part(settings, part)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.serve.part",
        description="One part of xgate serve, as the supervisor starts it.")
    parser.add_argument("-c", "--config", required=True, metavar="PATH")
    parser.add_argument("part", choices=PARTS, metavar="PART")
    args = parser.parse_args(argv)
    return exit_status(lambda: _serve(Path(args.config), args.part), debug=False)


if __name__ == "__main__":
    sys.exit(main())
