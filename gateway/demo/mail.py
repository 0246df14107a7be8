"""What the demo catcher caught: one file per message under ``data_dir/demo-mail``, sealed
with the master key like every stored message (plaintext never touches the disk).

Only the demo uses this place. Each file holds the envelope and the message as received,
sealed together, with the message's number bound as associated data, so a file renamed to
another number does not open.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway.settings import Settings

_NAME = re.compile(r"^(\d{6,})\.sealed$")
_lock = threading.Lock()


@dataclass(frozen=True)
class CaughtMail:
    number: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: datetime
    content: bytes


def mail_dir(settings: Settings) -> Path:
    return settings.resolve(settings.data_dir) / "demo-mail"


def _context(number: int) -> bytes:
    return f"demo-mail:{number}".encode()


def _numbers(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    found = (_NAME.match(entry.name) for entry in directory.iterdir())
    return sorted(int(m[1]) for m in found if m)


def store(directory: Path, master: MasterKey, *, mail_from: str, rcpt_tos: list[str],
          content: bytes, now: datetime | None = None) -> int:
    """Seal and keep one message; its number (1, 2, ...)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    envelope = json.dumps({"mail_from": mail_from, "rcpt_tos": rcpt_tos,
                           "received_at": (now or datetime.now(UTC)).isoformat()})
    with _lock:
        number = (_numbers(directory) or [0])[-1] + 1
        while True:
            blob = seal(master, envelope.encode() + b"\n" + content, _context(number))
            temporary = directory / f".{number:06d}.tmp"
            temporary.write_bytes(blob)
            with temporary.open("rb") as fh:
                os.fsync(fh.fileno())
            try:
                # A link does not replace an existing file (another catcher, a stale one).
                os.link(temporary, directory / f"{number:06d}.sealed")
            except FileExistsError:
                number += 1
                continue
            finally:
                temporary.unlink()
            return number


def read(directory: Path, master: MasterKey, number: int) -> CaughtMail:
    path = directory / f"{number:06d}.sealed"
    if not path.is_file():
        raise LookupError(f"no caught message {number} (see: xgate demo mail list)")
    envelope, _, content = open_sealed(master, path.read_bytes(), _context(number)).partition(
        b"\n")
    fields = json.loads(envelope)
    return CaughtMail(number, str(fields["mail_from"]), tuple(fields["rcpt_tos"]),
                      datetime.fromisoformat(fields["received_at"]), content)


def read_all(directory: Path, master: MasterKey) -> list[CaughtMail]:
    return [read(directory, master, number) for number in _numbers(directory)]
