"""Socket plumbing shared by the loopback stand-ins in tests/support.

``LoopbackListener``: a TCP listener on 127.0.0.1 and a thread that accepts until the
``with`` block ends; a subclass says what becomes of each connection. ``pipe``: one direction
of a relay, copied until the source ends, then the sink half-closed.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self


class LoopbackListener:
    """Accepts on 127.0.0.1 (a free port: ``port``) in a thread while in the ``with`` block.

    ``poll`` bounds how long the thread takes to notice the block has ended.
    """

    def __init__(self, name: str, poll: float) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(poll)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=name, daemon=True)

    def _accepted(self, conn: socket.socket) -> None:
        """What becomes of an accepted connection; runs in the accepting thread."""
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._accepted(conn)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


def pipe(source: socket.socket, sink: socket.socket,
         gate: threading.Event | None = None) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends or fails, then shut ``sink``'s
    sending side. With ``gate``, each piece waits for it to be set before it is passed on."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            if gate is not None:
                gate.wait()
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def greets(port: int) -> bool:
    """Whether an SMTP server on 127.0.0.1:``port`` answers with its 220 greeting (``xgate
    serve`` binds the socket before its SMTP part runs, so a connection alone proves
    nothing)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            return conn.recv(100).startswith(b"220 ")
    except OSError:
        return False
