"""``xgate init DIR``: a ready-to-run installation in one directory.

Idempotent: whatever exists already (configuration, master key, database, certificate, demo
data) is kept, and the command says so. Losing the master key would make every stored
message unreadable, so nothing here ever overwrites one.

A new configuration says where staff mail goes (``gateway.cli.init_config``): the internal mail
server from ``--staff-relay`` or a prompt, the demo catcher, or a placeholder with a warning.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from crypto.at_rest import MasterKey
from gateway.cli.common import CliError, load_config
from gateway.cli.db import migrate
from gateway.cli.demo import DEMO_PORTAL_TOPICS, create_demo, login_hint
from gateway.cli.init_config import (
    DemoPortal,
    NextHop,
    RelayAddressError,
    office_domains,
    parse_next_hop,
    render_config,
    sample_config,
)
from gateway.delivery.staff_routes import staff_route_problems
from gateway.settings import DemoSettings, PortalSettings, Settings

__all__ = ["register", "render_config", "sample_config"]

SUBDIRS = ("keys", "tls", "metrics")
_DEFAULT_CATCHER = DemoSettings().catcher
_DEFAULT_PORTAL_PORT = PortalSettings().port


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser(
        "init", help="create a configuration, master key and database in a directory",
        description="Create DIR/xgate.toml (the fully commented sample configuration, paths "
                    "relative to DIR), a new master key (mode 0600), DIR's subdirectories and "
                    "the database schema. Running it again keeps everything that exists.")
    init.add_argument("directory", metavar="DIR", type=Path,
                      help="the installation directory (created if missing)")
    init.add_argument("--demo", action="store_true",
                      help="also create a self-signed TLS certificate, a demo shared mailbox "
                           "with two demo staff users as its members (passwords and the "
                           "caseworker's TOTP secret printed once), demo keys, and a few "
                           "demo messages queued for the mailbox ('xgate serve' files them "
                           "as tickets); switch the citizen portal on with topics filed into "
                           "the demo mailbox; and route all mail the gateway sends out (staff "
                           "notices too) to the demo catcher, which 'xgate serve' runs and "
                           "'xgate demo mail' shows")
    init.add_argument("--staff-relay", metavar="HOST:PORT",
                      help="the office's internal mail server, where mail for staff in the "
                           "office's own domains goes (notices, bounces); without it, init "
                           "asks on a terminal, and otherwise writes a placeholder and warns")
    init.add_argument("--catcher-port", type=int, default=_DEFAULT_CATCHER.port,
                      metavar="PORT",
                      help=f"with --demo: the demo catcher's port on {_DEFAULT_CATCHER.host} "
                           f"(default: {_DEFAULT_CATCHER.port})")
    init.add_argument("--portal-port", type=int, default=_DEFAULT_PORTAL_PORT,
                      metavar="PORT",
                      help="with --demo: the citizen portal's port on 127.0.0.1 "
                           f"(default: {_DEFAULT_PORTAL_PORT})")
    init.set_defaults(handler=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    # The directory holds the master key and personal data (addresses, audit trail): nothing
    # created here is for other users' eyes.
    os.umask(0o077)
    directory: Path = args.directory
    staff_relay = _staff_relay_option(args.staff_relay)
    if not 1 <= args.catcher_port <= 65535:
        raise CliError(f"--catcher-port must be 1 to 65535, not {args.catcher_port}")
    if not 1 <= args.portal_port <= 65535:
        raise CliError(f"--portal-port must be 1 to 65535, not {args.portal_port}")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "xgate.toml"
    if config.exists():
        print(f"kept existing configuration {config}")
        if staff_relay is not None:
            print(f"  (--staff-relay {staff_relay} is not written into it: add a "
                  "[[delivery.routes]] table for the office's own domains yourself)")
    else:
        if staff_relay is None and not args.demo:
            staff_relay = _ask_staff_relay()
        catcher = NextHop(_DEFAULT_CATCHER.host, args.catcher_port) if args.demo else None
        portal = DemoPortal(args.portal_port, DEMO_PORTAL_TOPICS) if args.demo else None
        _write_new(config, render_config(directory / "xgate.db", staff_relay=staff_relay,
                                         catcher=catcher, portal=portal))
        print(f"wrote configuration {config}")
        _say_where_staff_mail_goes(staff_relay, catcher)
        if portal is not None:
            print(f"  the citizen portal is on, on port {portal.port}; its topics are filed "
                  "into the demo mailbox")
    settings = load_config(config)
    base = settings.resolve(settings.data_dir)
    for name in SUBDIRS:
        (base / name).mkdir(parents=True, exist_ok=True)
    _master_key(settings)
    _migrate(settings)
    if args.demo:
        create_demo(settings)
    _warn_unrouted(settings, config)
    print(f"done; start everything with: xgate -c {config} serve")
    if args.demo:
        for line in login_hint(settings):
            print(line)
    return 0


def _staff_relay_option(value: str | None) -> NextHop | None:
    if value is None:
        return None
    try:
        return parse_next_hop(value)
    except RelayAddressError as exc:
        raise CliError(f"--staff-relay: {exc}") from None


def _ask_staff_relay() -> NextHop | None:
    """On a terminal: where staff mail goes. None when not asked or left empty."""
    if not sys.stdin.isatty():
        return None
    domains = ", ".join(office_domains())
    print(f"Where does mail for staff ({domains}) go? Notices and bounces reach them there.")
    while True:
        try:
            answer = input("  the office's internal mail server as HOST:PORT "
                           "(empty: decide later): ")
        except EOFError:
            print()
            return None
        if not answer.strip():
            return None
        try:
            return parse_next_hop(answer)
        except RelayAddressError as exc:
            print(f"  {exc}")


def _say_where_staff_mail_goes(staff_relay: NextHop | None, catcher: NextHop | None) -> None:
    domains = ", ".join(office_domains())
    if staff_relay is not None:
        print(f"  staff mail for {domains} goes to the internal mail server {staff_relay}")
    elif catcher is not None:
        print(f"  all mail the gateway sends out goes to the demo catcher on {catcher}; "
              "read it with: xgate demo mail list")


def _warn_unrouted(settings: Settings, config: Path) -> None:
    problems = staff_route_problems(settings)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if problems:
        print(f"warning: fill in the STAFF MAIL placeholder under [delivery] in {config}, "
              "or add a [[delivery.routes]] table there; a new installation takes "
              "--staff-relay HOST:PORT", file=sys.stderr)


def _write_new(path: Path, text: str) -> None:
    # "x": fail rather than overwrite if another init raced us to it.
    with path.open("x", encoding="utf-8") as fh:
        fh.write(text)


def _master_key(settings: Settings) -> None:
    path = settings.resolve(settings.storage.master_key_file)
    if path.exists():
        # Loading checks the format and the file mode, so a broken key shows up now.
        MasterKey.load(path)
        print(f"kept existing master key {path}")
        return
    MasterKey.generate().write(path)
    print(f"generated master key {path} (mode 0600); back it up apart from the database")


def _migrate(settings: Settings) -> None:
    before, after = migrate(settings)
    if before == after:
        print(f"kept existing database (schema revision {after})")
    else:
        print(f"database schema created/upgraded to revision {after}")
