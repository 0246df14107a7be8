"""The configuration ``xgate init`` writes: the commented sample, plus where staff mail goes.

Held and quarantine notices and bounces go to staff addresses in the office's own domains. A
gateway without a route for those domains cannot deliver them, so the written configuration
always says where they go: to the office's internal mail server (``--staff-relay``, or the
answer to a prompt), to the demo catcher (``--demo``), or, when nobody said, a commented
placeholder that explains what is missing. The demo also switches the citizen portal on, on
its own port, with topics filed into the demo's shared mailbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gateway.settings import GatewaySettings, TlsPolicy

SAMPLE_DB_LINE = 'url = "sqlite:///xgate.db"'
# The route blocks go at the end of [delivery], just before the next section.
_ROUTES_BEFORE = "\n[workers]\n"
_CATCHER_SECTION = "[demo.catcher]\n"
_CATCHER_OFF = "enabled = false\n"
_PORTAL_SECTION = "[portal]\n"
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+))"
                        r"(?::(?P<port>\d{1,5}))?$")


class RelayAddressError(ValueError):
    """Not a HOST:PORT the gateway can relay to; the message says what is expected."""


@dataclass(frozen=True)
class NextHop:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_next_hop(text: str) -> NextHop:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT``; the port defaults to 25."""
    found = _HOST_PORT.match(text.strip())
    if found is None:
        raise RelayAddressError(f"not a HOST:PORT: {text.strip()!r} (e.g. "
                                "mail.jugendamt.example:25)")
    port = int(found["port"] or 25)
    if not 1 <= port <= 65535:
        raise RelayAddressError(f"port must be 1 to 65535, not {port}")
    return NextHop(found["v6"] or found["host"], port)


def sample_config() -> str:
    return resources.files("gateway").joinpath("sample_config.toml").read_text("utf-8")


def office_domains() -> list[str]:
    """The office's own domains as the sample configuration names them."""
    return GatewaySettings().local_domains


@dataclass(frozen=True)
class DemoPortal:
    """The demo's citizen portal: its port on loopback and its topics (name -> mailbox)."""

    port: int
    topics: tuple[tuple[str, str], ...]


def render_config(database_path: Path, *, staff_relay: NextHop | None = None,
                  catcher: NextHop | None = None, portal: DemoPortal | None = None) -> str:
    """The sample, with an absolute SQLite path (a relative one would follow the cwd) and
    the routes for staff mail.

    ``staff_relay``: the office's own domains go to the internal mail server. ``catcher``
    (the demo): every domain not routed otherwise goes to the demo catcher, which is
    switched on, and so do the office's own domains unless ``staff_relay`` is given.
    Neither: a commented placeholder for the internal mail server. ``portal`` (the demo):
    the citizen portal switched on, on loopback at that port, with those topics.
    """
    text = sample_config()
    if text.count(SAMPLE_DB_LINE) != 1:
        raise RuntimeError("sample_config.toml lost its database url line")
    url = f"sqlite:///{database_path.resolve()}"
    text = text.replace(SAMPLE_DB_LINE, f"url = {_toml_string(url)}")
    if staff_relay is not None:
        block = _staff_routes(staff_relay)
    elif catcher is not None:
        block = _catcher_routes(catcher, office_domains())
    else:
        block = _placeholder()
    if catcher is not None:
        if staff_relay is not None:
            block += "\n" + _catcher_routes(catcher, [])
        text = _catcher_on(text, catcher)
    if portal is not None:
        text = _portal_on(text, portal)
    if text.count(_ROUTES_BEFORE) != 1:
        raise RuntimeError("sample_config.toml lost its [workers] section")
    return text.replace(_ROUTES_BEFORE, "\n" + block + _ROUTES_BEFORE)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _route(domain: str, hop: NextHop, tls: TlsPolicy, *, internal: bool) -> list[str]:
    lines = ["[[delivery.routes]]", f"domain = {_toml_string(domain)}",
             f"host = {_toml_string(hop.host)}", f"port = {hop.port}",
             f"tls = {_toml_string(tls.value)}"]
    return lines + (["internal = true"] if internal else []) + [""]


def _staff_routes(hop: NextHop) -> str:
    lines = [
        "# Staff mail: the office's own domains go to its internal mail server (written by",
        '# "xgate init --staff-relay"). Held and quarantine notices and bounces reach staff',
        "# this way. TLS is used when the server offers it; with the internal CA's",
        '# certificate at hand, tls = "required-with-verification" and ca_file = "..." are',
        "# better.",
    ]
    for domain in office_domains():
        lines += _route(domain, hop, TlsPolicy.OPPORTUNISTIC, internal=True)
    return "\n".join(lines)


def _catcher_routes(hop: NextHop, domains: list[str]) -> str:
    lines = [
        "# Demo: mail for " + ("the office's own domain and for " if domains else "")
        + "every other domain goes to the demo catcher",
        '# ([demo.catcher]), which keeps it for "xgate demo mail list" and delivers nothing.',
        "# Replace these routes before real use.",
    ]
    for domain in domains:
        lines += _route(domain, hop, TlsPolicy.NONE, internal=True)
    lines += _route("*", hop, TlsPolicy.NONE, internal=False)
    return "\n".join(lines)


def _placeholder() -> str:
    domains = ", ".join(office_domains())
    lines = [
        "# !! STAFF MAIL HAS NO ROUTE YET. Held and quarantine notices and bounces go to staff",
        f"# addresses in the office's own domains ({domains}). Without a route to the office's",
        "# internal mail server they cannot be delivered: they stay in the queue as failed",
        '# ("xgate queue list --state failed"). Put in the internal mail server and remove the',
        '# "# " before these lines (one table per domain):',
        "#",
    ]
    example = NextHop("mail.jugendamt.example", 25)
    for domain in office_domains():
        lines += ["# " + line if line else "#"
                  for line in _route(domain, example, TlsPolicy.OPPORTUNISTIC, internal=True)]
    return "\n".join(lines[:-1]) + "\n"


def _catcher_on(text: str, hop: NextHop) -> str:
    start = text.index(_CATCHER_SECTION)
    end = text.index(_CATCHER_OFF, start)
    section = text[start:end]
    section = re.sub(r'(?m)^host = ".*"$', f"host = {_toml_string(hop.host)}", section, count=1)
    section = re.sub(r"(?m)^port = \d+$", f"port = {hop.port}", section, count=1)
    return text[:start] + section + "enabled = true\n" + text[end + len(_CATCHER_OFF):]


def _portal_on(text: str, portal: DemoPortal) -> str:
    start = text.index(_PORTAL_SECTION)
    end = text.index("\n[", start + len(_PORTAL_SECTION)) + 1  # the next section's header
    section = text[start:end]
    changes = ((r"^enabled = false$", "enabled = true"),
               (r"^port = \d+$", f"port = {portal.port}"),
               (r'^public_url = ".*"$',
                f"public_url = {_toml_string(f'http://127.0.0.1:{portal.port}')}"))
    for pattern, line in changes:
        section, found = re.subn(f"(?m){pattern}", line, section, count=1)
        if not found:
            raise RuntimeError(f"sample_config.toml's [portal] lost its line {pattern}")
    tables = ["# Demo: the citizen portal's topics, filed into the demo's shared mailbox."]
    for name, mailbox in portal.topics:
        tables += ["[[portal.topics]]", f"name = {_toml_string(name)}",
                   f"mailbox = {_toml_string(mailbox)}", ""]
    return text[:start] + section.rstrip("\n") + "\n\n" + "\n".join(tables) + "\n" + text[end:]
