"""An HTTP CONNECT proxy on loopback, for clients that cannot be told a port.

gpg's dirmngr fetches WKD keys from ``https://<host>/...`` on port 443, always. With this
proxy as its ``http-proxy`` it asks for ``CONNECT openpgpkey.jugendamt.example:443`` instead
of resolving and connecting itself, and the proxy opens a plain TCP tunnel to the test's
HTTPS server. TLS stays end to end: dirmngr still checks the server's certificate against
the host name, so the test server must present one naming it.

Each CONNECT target is recorded (``seen``), so tests can tell which WKD method was used.
"""

from __future__ import annotations

import socket
import threading

from tests.support.sockets import LoopbackListener, pipe


class ConnectProxy(LoopbackListener):
    def __init__(self, target: tuple[str, int], hosts: set[str]) -> None:
        """Tunnel CONNECTs for ``hosts`` (any port) to ``target``; refuse others (502)."""
        super().__init__("connect-proxy", poll=0.05)
        self.target = target
        self.hosts = {h.lower() for h in hosts}
        self.seen: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accepted(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            request = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(request) != 3 or request[0] != "CONNECT":
                client.sendall(b"HTTP/1.0 405 Method Not Allowed\r\n\r\n")
                return
            host = request[1].rpartition(":")[0].lower()
            with self._lock:
                self.seen.append(request[1])
            if host not in self.hosts:
                client.sendall(b"HTTP/1.0 502 Bad Gateway\r\n\r\n")
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.sendall(b"HTTP/1.0 502 Bad Gateway\r\n\r\n")
                return
            with upstream:
                client.sendall(b"HTTP/1.0 200 Connection established\r\n\r\n")
                # Anything the client sent after the request head belongs to the tunnel.
                rest = head.split(b"\r\n\r\n", 1)[1]
                if rest:
                    upstream.sendall(rest)
                back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
                back.start()
                pipe(client, upstream)
                back.join(10)
