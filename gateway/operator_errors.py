"""How an ``xgate`` process ends on an error: one line on stderr and a non-zero status.

Shared by the ``xgate`` command (gateway.cli) and the lean entry of ``xgate serve``'s parts
(gateway.serve.part), which must not import the whole CLI to report the same way. Every
problem an operator can cause or fix (bad configuration, missing database, unknown queue id
...) ends as one line, never as a traceback; ``debug`` shows the traceback of unexpected
errors for bug reports.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from crypto.errors import CryptoError
from gateway.errors import GatewayError
from scanning.errors import ScanningError

# Expected failures: the exception's message is the whole story. The gateway's own errors
# share one root; crypto and scanning are leaf packages with their own (gateway.errors).
OPERATOR_ERRORS = (GatewayError, CryptoError, ScanningError)


class CliError(GatewayError):
    """A problem the operator can fix; printed as one line, without a traceback."""


def print_error(message: str) -> int:
    for line in message.strip().splitlines() or ["unknown error"]:
        print(f"xgate: error: {line}", file=sys.stderr)
    return 1


def describe_db_error(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    detail = str(original or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    if isinstance(exc, OperationalError):
        return f"database unavailable: {first}"
    return f"database error: {first}"


def exit_status(run: Callable[[], int], *, debug: bool) -> int:
    """``run()``'s exit status, or 1 with its error as one line (130 on Ctrl-C)."""
    try:
        return run()
    except OPERATOR_ERRORS as exc:
        return print_error(str(exc))
    except SQLAlchemyError as exc:
        if debug:
            raise
        return print_error(describe_db_error(exc))
    except OSError as exc:
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        return print_error(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            raise
        return print_error(f"internal error: {type(exc).__name__}: {exc} "
                           "(run with --debug for the traceback)")
