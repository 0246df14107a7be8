"""Helpers shared by the benchmarks: free ports, waiting, message corpora, percentiles, the
counting sink and stopping the processes they start."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds; reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Sink:
    """benchmarks/counting_sink.py in a process of its own; it logs the time of each 250."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "sink.log"
        self.log.touch()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.counting_sink", str(self.port), str(self.log)],
            cwd=ROOT, stdout=subprocess.DEVNULL)
        wait_for_port(self.port)

    def _entries(self) -> list[tuple[float, int, str]]:
        """(time of the 250, size, Message-ID) per transaction, in the order answered."""
        entries = []
        for line in self.log.read_text().splitlines():
            when, size, message_id = line.split(" ", 2)
            entries.append((float(when), int(size), message_id))
        return entries

    def replies(self) -> list[tuple[float, str]]:
        """(time of the 250, Message-ID) for every transaction, duplicates included."""
        return [(when, message_id) for when, _size, message_id in self._entries()]

    def deliveries(self) -> dict[str, tuple[float, int]]:
        """Message-ID -> (time of the 250, size), for everything received so far; a
        Message-ID received more than once keeps its last transaction."""
        return {message_id: (when, size) for when, size, message_id in self._entries()}

    def wait_for(self, message_ids: Sequence[str], timeout: float) -> list[float]:
        """The delivery times of ``message_ids``; TimeoutError if not all arrive in time."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.deliveries()
            missing = [m for m in message_ids if m not in seen]
            if not missing:
                return [seen[m][0] for m in message_ids]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(missing)} of {len(message_ids)} messages not "
                                   f"delivered within {timeout:g} s, e.g. {missing[0]}")
            time.sleep(0.02)

    def stop(self) -> None:
        stop_process(self.proc, 10)
