"""The ``xgate`` command.

Every problem an operator can cause or fix (bad configuration, missing database, unknown
queue id ...) ends as one line on stderr and a non-zero exit status, never as a traceback.
``--debug`` shows the traceback of unexpected errors for bug reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from crypto.errors import CryptoError
from gateway.cli import (
    audit,
    call,
    consent,
    db,
    demo,
    init,
    keys,
    mailbox,
    partner,
    policy,
    quarantine,
    queue,
    serve,
    ticket,
    user,
)
from gateway.cli.common import CONFIG_ENV, DEFAULT_CONFIG, default_config_path
from gateway.errors import GatewayError
from scanning.errors import ScanningError

Handler = Callable[[argparse.Namespace], int]
# Expected failures: the exception's message is the whole story. The gateway's own errors
# share one root; crypto and scanning are leaf packages with their own (gateway.errors).
OPERATOR_ERRORS = (GatewayError, CryptoError, ScanningError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xgate",
        description="xgate: secure mail gateway for youth welfare offices.",
        epilog="Run 'xgate COMMAND --help' for a command's options.")
    parser.add_argument(
        "-c", "--config", default=str(default_config_path()), metavar="PATH",
        help=f"configuration file (default: ${CONFIG_ENV} or ./{DEFAULT_CONFIG}); "
             "XGATE_SECTION__KEY environment variables override its values")
    parser.add_argument("--debug", action="store_true",
                        help="show a traceback for unexpected errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (init, db, serve, queue, audit, mailbox, user, keys, partner, policy, consent,
                   quarantine, ticket, call, demo):
        module.register(commands)
    return parser


def _error(message: str) -> int:
    for line in message.strip().splitlines() or ["unknown error"]:
        print(f"xgate: error: {line}", file=sys.stderr)
    return 1


def _describe_db_error(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    detail = str(original or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    if isinstance(exc, OperationalError):
        return f"database unavailable: {first}"
    return f"database error: {first}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except OPERATOR_ERRORS as exc:
        return _error(str(exc))
    except SQLAlchemyError as exc:
        if args.debug:
            raise
        return _error(_describe_db_error(exc))
    except OSError as exc:
        if args.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        return _error(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        return _error(f"internal error: {type(exc).__name__}: {exc} "
                      "(run with --debug for the traceback)")
