"""Helpers shared by the benchmarks: free ports, waiting, message corpora, percentiles."""

from __future__ import annotations

import base64
import os
import socket
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def make_message(size: int, index: int, rcpt: str, sender: str = "bench@partner.example") -> bytes:
    head = (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: benchmark {index}\r\n"
        f"Message-ID: <bench-{index}-{size}@partner.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    # Base64 text lines: a realistic shape for attachments, and always 7-bit and short lines.
    raw = base64.encodebytes(os.urandom(max(0, size - len(head)) * 3 // 4 + 3))
    body = raw.replace(b"\n", b"\r\n")
    return head + body[: max(0, size - len(head))].rsplit(b"\r\n", 1)[0] + b"\r\n"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
