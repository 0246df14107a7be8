"""A real HTTPS server on loopback standing in for a partner's Web Key Directory.

One server plays every host of a test (openpgpkey.partner.example, partner.example, ...): the
client reaches it through ``resolve`` overrides and asks for the real host name in SNI, so the
server's certificate must name those hosts (tests.support.pki.make_named_pki). Paths map to
canned replies; everything else is 404. Each request is recorded with the SNI name and Host
header it came with, so tests can tell which method (advanced or direct) was used.

``BlackHole`` is a TCP listener that accepts and never says a word, not even a TLS handshake.
"""

from __future__ import annotations

import socket
import ssl
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.support.pki import CertPair
from tests.support.ports import free_port
from tests.support.sockets import LoopbackListener


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/octet-stream"),)
    # False: no Content-Length; the body ends when the connection closes (HTTP/1.0 style).
    send_length: bool = True
    # Read the request, then answer nothing until the server stops.
    stall: bool = False
    # Pause before each byte of the body: a server that trickles its answer.
    drip_seconds: float = 0.0


@dataclass(frozen=True)
class SeenRequest:
    sni: str | None  # server name the client sent in the TLS handshake
    host: str | None  # Host header
    target: str  # path and query as requested


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        # TLS in the connection's own thread: a client that stalls or aborts the handshake
        # must not hold up accepting the next connection.
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.owner._record(SeenRequest(
            sni=self.server.owner._sni.get(self.request),
            host=self.headers.get("Host"),
            target=self.path,
        ))
        reply = self.server.owner.routes.get(path)
        if reply is None:
            reply = Reply(status=404, body=b"not found\n",
                          headers=(("Content-Type", "text/plain"),))
        elif isinstance(reply, bytes):
            reply = Reply(body=reply)
        if reply.stall:
            self.server.owner._release.wait()
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.send_length:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.drip_seconds:
            for index in range(len(reply.body)):
                if self.server.owner._release.wait(reply.drip_seconds):
                    return
                self.wfile.write(reply.body[index:index + 1])
                self.wfile.flush()
        else:
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; requests are recorded instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: WkdServer, tls: ssl.SSLContext) -> None:
        self.owner = owner
        self.tls = tls
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (the client rejecting our certificate) and clients that hang up
        # after their timeout are expected in these tests; record them, do not print.
        self.owner._record_failure()


class WkdServer:
    """HTTPS on 127.0.0.1 with ``cert``; ``routes`` maps a path (without query) to a reply."""

    def __init__(self, cert: CertPair, routes: Mapping[str, bytes | Reply] | None = None
                 ) -> None:
        self.routes: dict[str, bytes | Reply] = dict(routes or {})
        self.requests: list[SeenRequest] = []
        self.failed_connections = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._sni: weakref.WeakKeyDictionary[ssl.SSLSocket | ssl.SSLObject, str] = \
            weakref.WeakKeyDictionary()
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert.cert_file, cert.key_file)
        tls.sni_callback = self._remember_sni
        self._server = _Server(self, tls)
        self.port: int = self._server.server_address[1]
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02},
                                        name="wkd-server", daemon=True)

    @property
    def address(self) -> str:
        """The "address:port" to put in a resolve override."""
        return f"127.0.0.1:{self.port}"

    def resolve(self, *hosts: str) -> dict[str, str]:
        return {host: self.address for host in hosts}

    def _remember_sni(self, sock: ssl.SSLSocket | ssl.SSLObject, name: str | None,
                      context: ssl.SSLContext) -> None:
        if name is not None:
            self._sni[sock] = name

    def _record(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)

    def _record_failure(self) -> None:
        with self._lock:
            self.failed_connections += 1

    def start(self) -> WkdServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # lets stalled and dripping handlers finish
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WkdServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class BlackHole(LoopbackListener):
    """Accepts TCP connections on 127.0.0.1 and never sends anything."""

    def __init__(self) -> None:
        super().__init__("black-hole", poll=0.02)
        self._held: list[socket.socket] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accepted(self, conn: socket.socket) -> None:
        self._held.append(conn)  # kept open so the client sees silence, not a reset

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        super().__exit__(exc_type, exc, tb)
        for conn in self._held:
            conn.close()


def closed_port() -> int:
    """A loopback port nothing listens on, for "refused" tests."""
    return free_port()
