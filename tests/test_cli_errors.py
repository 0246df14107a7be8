"""The CLI catches the gateway's own errors by their one root, GatewayError."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

import gateway.cli as cli
from crypto.errors import CryptoError
from gateway.cli import OPERATOR_ERRORS
from gateway.cli.common import CliError
from gateway.consent.errors import ConsentError
from gateway.errors import GatewayError
from gateway.keydir.errors import KeyDirError
from gateway.quarantine.records import QuarantineError
from gateway.queue.admin import QueueAdminError
from gateway.settings import ConfigError
from gateway.staff.users import StaffError
from gateway.tls import TlsError
from mailboxes.directory import MailboxError
from scanning.errors import ScanningError

# What the CLI listed by hand before the common root.
LISTED_BEFORE = (CliError, ConfigError, ConsentError, KeyDirError, QueueAdminError, QuarantineError,
                 MailboxError, StaffError, TlsError)


@pytest.mark.parametrize("error", LISTED_BEFORE, ids=lambda e: e.__name__)
def test_every_error_the_cli_listed_derives_from_gateway_error(error: type[Exception]) -> None:
    assert issubclass(error, GatewayError)


def test_the_leaf_packages_keep_their_own_roots_and_are_still_caught() -> None:
    # crypto and scanning import nothing of gateway (tests/test_layering.py).
    assert not issubclass(CryptoError, GatewayError)
    assert not issubclass(ScanningError, GatewayError)
    assert set(OPERATOR_ERRORS) == {GatewayError, CryptoError, ScanningError}


class _Parser:
    """Stands in for the argument parser: every command line runs ``handler``."""

    def __init__(self, handler: Callable[[argparse.Namespace], int]) -> None:
        self.handler = handler

    def parse_args(self, argv: object) -> argparse.Namespace:
        return argparse.Namespace(handler=self.handler, debug=False)


@pytest.mark.parametrize("error", [*LISTED_BEFORE, CryptoError, ScanningError],
                         ids=lambda e: e.__name__)
def test_an_operator_error_ends_as_one_line(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            error: type[Exception]) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise error("something the operator can fix")

    monkeypatch.setattr(cli, "build_parser", lambda: _Parser(fail))
    assert cli.main(["queue", "list"]) == 1
    assert capsys.readouterr().err == "xgate: error: something the operator can fix\n"
