"""The ``xgate`` command.

Every problem an operator can cause or fix (bad configuration, missing database, unknown
queue id ...) ends as one line on stderr and a non-zero exit status, never as a traceback.
``--debug`` shows the traceback of unexpected errors for bug reports.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

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

# How an error ends (one line, no traceback) is shared with the parts xgate serve starts.
from gateway.operator_errors import OPERATOR_ERRORS as OPERATOR_ERRORS
from gateway.operator_errors import exit_status

Handler = Callable[[argparse.Namespace], int]


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return exit_status(lambda: handler(args), debug=args.debug)
