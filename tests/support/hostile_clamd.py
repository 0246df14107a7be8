"""A clamd that takes a scan and then fails, on a real unix socket: the peer a message meets
when it crashes or hangs clamd.

``drop``: reads the INSTREAM command and the first chunk, then closes without a word, as a
clamd that crashed on the content does (and as the real clamd's child dies mid-scan).
``hang``: reads everything and never answers, as a clamd stuck in a scan does.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Literal


class HostileClamd:
    def __init__(self, path: Path, mode: Literal["drop", "hang"]) -> None:
        self.path = path
        self.mode = mode
        self.scans = 0  # INSTREAM commands taken
        self._held: list[socket.socket] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hostile-clamd", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        # A timeout, since closing a listening socket does not wake a thread in accept().
        self._server.settimeout(0.05)
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            first = conn.recv(65536)
            if first.startswith(b"zINSTREAM\0"):
                self.scans += 1
            if self.mode == "drop":
                conn.close()
                return
            self._held.append(conn)
            while conn.recv(65536):  # take the whole stream, answer nothing
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for conn in self._held:
            conn.close()
        self._thread.join(5)
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> HostileClamd:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
