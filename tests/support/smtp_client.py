"""Client side for SMTP edge tests: a raw socket client and small helpers.

The raw client exists because smtplib cannot send what a hostile client sends: pipelined
commands, bare CR/LF, a DATA cut off midway.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from gateway.db import session_scope
from gateway.models import Message
from gateway.services import Services


@dataclass(frozen=True)
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class RawSMTP:
    def __init__(self, address: tuple[str, int], timeout: float = 10) -> None:
        self.sock: socket.socket = socket.create_connection(address, timeout=timeout)
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str | bytes) -> Reply:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def reply(self) -> Reply:
        lines: list[str] = []
        while True:
            line = self._line()
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return Reply(int(line[:3]), lines)

    def replies(self, count: int) -> list[Reply]:
        return [self.reply() for _ in range(count)]

    def replies_until_closed(self) -> list[Reply]:
        out: list[Reply] = []
        while True:
            try:
                out.append(self.reply())
            except ConnectionError:
                return out

    def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Wrap the socket after a 220 to STARTTLS. Fails if the server sent more first."""
        assert self._buf == b"", f"unexpected data before TLS: {self._buf!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def ehlo(self, name: str = "client.partner.example") -> Reply:
        reply = self.command(f"EHLO {name}")
        assert reply.code == 250, reply
        return reply

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> str:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unread: {self._buf!r}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("utf-8", errors="replace")


def client_context(cert: Path) -> ssl.SSLContext:
    """Verifies the server against the test certificate (issued for 127.0.0.1)."""
    context = ssl.create_default_context(cafile=str(cert))
    return context


def plain_credentials(username: str, password: str) -> str:
    return base64.b64encode(f"\0{username}\0{password}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def make_message(*, to: str = "kita@jugendamt.example", subject: str = "Hallo",
                 body: bytes = b"Body line\r\n", sender: str = "a@partner.example",
                 extra_headers: bytes = b"") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.monotonic_ns()}@partner.example>\r\n").encode() \
        + extra_headers + b"\r\n" + body


def count_messages(services: Services) -> int:
    with session_scope(services.sessions) as session:
        return session.scalar(select(func.count()).select_from(Message)) or 0


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
