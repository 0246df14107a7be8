"""Socket plumbing shared by the loopback stand-ins in tests/support.

``pipe``: one direction of a relay, copied until the source ends, then the sink half-closed.
"""

from __future__ import annotations

import socket
import threading


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
