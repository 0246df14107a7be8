"""Listening sockets bound once, before anything says "serving", and handed to the parts.

``xgate serve`` binds every listener itself and passes the sockets to the SMTP and web
children (inherited descriptors, named in ``XGATE_LISTEN_FDS``). So a port that is taken is
found before the gateway announces anything, with the configuration key that names it; a
part that is restarted takes up the same socket again, and connections that arrive in the
meantime wait in its backlog instead of being refused. A part run alone (``xgate serve
smtp``, e.g. under systemd) binds its own sockets the same way before it starts.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.settings import Settings

FDS_ENV = "XGATE_LISTEN_FDS"
BACKLOG = 128


class ListenError(Exception):
    """A listener cannot be bound; the message names the configuration key and the port."""


@dataclass(frozen=True)
class Endpoint:
    # The configuration key that sets it ("smtp.inbound"); also its name in FDS_ENV.
    key: str
    host: str
    port: int


def smtp_endpoints(settings: Settings) -> list[Endpoint]:
    smtp = settings.smtp
    return [Endpoint(key, listener.host, listener.port)
            for key, listener in (("smtp.inbound", smtp.inbound),
                                  ("smtp.submission", smtp.submission))
            if listener.enabled]


def web_endpoint(settings: Settings) -> Endpoint:
    return Endpoint("web", settings.web.host, settings.web.port)


def portal_endpoint(settings: Settings) -> Endpoint:
    return Endpoint("portal", settings.portal.host, settings.portal.port)


def bind(endpoint: Endpoint) -> list[socket.socket]:
    """Listening sockets for the endpoint: one per address its host resolves to (as
    asyncio's create_server does). Raises ListenError naming the key and the port."""
    host = endpoint.host or None  # "" means every interface
    where = f"{endpoint.host or '*'}:{endpoint.port}"
    try:
        infos = socket.getaddrinfo(host, endpoint.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"{endpoint.key} host {endpoint.host}: cannot be resolved "
                          f"({exc.strerror})") from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(
                (i[0], i[1], i[2], i[3], i[4]) for i in infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Each address family binds its own socket (as asyncio does).
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ListenError(_describe(endpoint, where, exc)) from None
            sock.listen(BACKLOG)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound


def _describe(endpoint: Endpoint, where: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{endpoint.key} port {where} is in use"
    if exc.errno == errno.EACCES:
        return (f"{endpoint.key} port {where}: permission denied (ports below 1024 need "
                "root or CAP_NET_BIND_SERVICE)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{endpoint.key} host {endpoint.host}: not an address of this machine"
    return f"{endpoint.key} port {where}: cannot listen: {exc.strerror or exc}"


def bind_all(endpoints: Sequence[Endpoint]) -> dict[str, list[socket.socket]]:
    """Bind every endpoint or none: on the first failure the others are closed again."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for endpoint in endpoints:
            bound[endpoint.key] = bind(endpoint)
    except BaseException:
        close_all(bound)
        raise
    return bound


def close_all(bound: Mapping[str, Sequence[socket.socket]]) -> None:
    for sockets in bound.values():
        for sock in sockets:
            sock.close()


def fds_env(bound: Mapping[str, Sequence[socket.socket]]) -> str:
    """``smtp.inbound=5,6;web=7``: what a child finds in FDS_ENV."""
    return ";".join(f"{key}={','.join(str(s.fileno()) for s in sockets)}"
                    for key, sockets in bound.items())


def fds_of(bound: Mapping[str, Sequence[socket.socket]]) -> list[int]:
    return [s.fileno() for sockets in bound.values() for s in sockets]


def inherited(key: str, environ: Mapping[str, str] | None = None) -> list[socket.socket]:
    """In a child of ``xgate serve``: the sockets it was handed for ``key`` (none if it
    was not, e.g. a part run alone)."""
    text = (os.environ if environ is None else environ).get(FDS_ENV, "")
    for entry in text.split(";"):
        name, _, fds = entry.partition("=")
        if name == key and fds:
            return [socket.socket(fileno=int(fd)) for fd in fds.split(",")]
    return []
