"""The real memory of ``xgate serve``'s processes for one large message: 10 MB and 50 MB
attachments as base64, as quoted-printable and inside a zip.

tracemalloc (``tests/test_memory_bounds.py``) sees only Python's own allocations; this test
reads what the operating system charges the processes: the SMTP part's and the worker's peak
RSS (``VmHWM``, reset through ``/proc/<pid>/clear_refs`` before each message) while the
message passes, SMTP in to filed in the demo mailbox. Each is bounded at three times the
message as sent above the RSS the process had just before (an idle part is 80-95 MiB of
interpreter and libraries, more than six 10 MB messages), and what it held for the message
must be given back afterwards: the RSS back near what the part had when idle.

One ``xgate serve`` (SQLite, one worker process, a clamd of its own whose stream limit takes
the largest message) takes the six messages one after the other.
"""

from __future__ import annotations

import base64
import io
import json
import os
import quopri
import re
import smtplib
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.cli.demo import DEMO_MAILBOX
from tests.support.clamd import RunningClamd
from tests.support.cli import XGATE, clean_env, init_installation
from tests.support.ports import free_port
from tests.support.sockets import greets
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
LIMIT = 80 * MiB  # the 50 MB attachment is about 68 MiB as base64 mail
BOUND = 3.0
PARTS = ("smtp", "worker-1")
# Once a message is filed, a part's private memory goes back to about where it was when
# idle: less than half a copy of the message above it, and for the 10 MB messages 8 MiB
# (measured: 1.5-3.7 MiB for all six; before the parts fixed glibc's thresholds,
# gateway.memory_release, a worker kept up to 27 MiB after 10 MB messages).
KEPT = 0.5
FLOOR = 8 * MiB


@pytest.fixture(scope="module")
def big_clamd() -> Iterator[RunningClamd]:
    clamd = RunningClamd.start(max_message_bytes=LIMIT, clamd_max_file_size_mb=100,
                               clamd_max_scan_size_mb=400)
    yield clamd
    clamd.close()


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    inbound: int
    var: Path
    log: Path
    # Private memory (RssAnon) after the warm-up, by part: RSS also counts the pages of
    # libraries and modules mapped from files, and a part touches more of those the first
    # time it meets a kind of message (12-15 MiB of them, shared and not the message's).
    idle: dict[str, int] = field(default_factory=dict)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def pid(self, part: str) -> int:
        parts = json.loads((self.var / "metrics" / "parts.json").read_text())["parts"]
        return int(parts[part]["pid"])

    def state(self, sender: str) -> str | None:
        with sqlite3.connect(self.var / "xgate.db", timeout=30) as conn:
            row = conn.execute("SELECT state, reason FROM messages WHERE mail_from = ?",
                               (sender,)).fetchone()
        if row is not None and row[0] in ("quarantined", "failed", "rejected"):
            pytest.fail(f"{sender}: {row[0]}: {row[1]}")
        return None if row is None else str(row[0])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           big_clamd: RunningClamd) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("serve-rss")
    config = init_installation(base / "inst", "--demo")
    inbound = free_port()
    env = clean_env({
        "XGATE_SMTP__INBOUND__PORT": str(inbound),
        "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
        "XGATE_WEB__PORT": str(free_port()),
        "XGATE_PORTAL__PORT": str(free_port()),
        "XGATE_DEMO__CATCHER__PORT": str(free_port()),
        "XGATE_WORKERS__PROCESSES": "1",
        "XGATE_SMTP__MAX_MESSAGE_BYTES": str(LIMIT),
        "XGATE_SCANNING__CLAMD_SOCKET": str(big_clamd.socket_path),
    })
    log = base / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(XGATE), "-c", str(config), "serve"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    served = Served(process, inbound, config.parent, log)
    try:
        wait_until(lambda: greets(inbound) or process.poll() is not None, timeout=60,
                   what="xgate serve's SMTP listener", detail=served.log_tail)
        assert process.poll() is None, served.log_tail()
        # A first small message: the worker has imported and warmed up all it needs, so
        # what the large ones cost is not mixed with that.
        sender = "rss-warm-up@partner.example"
        with smtplib.SMTP("127.0.0.1", inbound, timeout=60) as client:
            client.sendmail(sender, [DEMO_MAILBOX], _message(sender, base64_part(1000)))
        wait_until(lambda: served.state(sender) == "delivered", timeout=120,
                   what="the warm-up message filed", detail=served.log_tail, poll=0.1)
        served.idle = {part: _status(served.pid(part), "RssAnon") for part in PARTS}
        yield served
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _message(sender: str, part: bytes) -> bytes:
    return (f"From: {sender}\r\nTo: {DEMO_MAILBOX}\r\nSubject: Akte\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nDie Akte im Anhang.\r\n--b\r\n"
            ).encode() + part + b"\r\n--b--\r\n"


def base64_part(size: int) -> bytes:
    return (b"Content-Type: application/octet-stream; name=\"akte.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n"))


def quoted_printable_part(size: int) -> bytes:
    # German text with umlauts and long lines, as a mail program writes it.
    words = [b"Hilfeplan", b"Gespr\xc3\xa4ch", b"Jugendamt", b"f\xc3\xbcr", b"Kind", b"="]
    text = b" ".join(words[i % len(words)] for i in range(size // 8))[:size]
    return (b"Content-Type: text/plain; charset=utf-8; name=\"bericht.txt\"\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            + quopri.encodestring(text).replace(b"\n", b"\r\n"))


def zip_part(size: int) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("akte.bin", os.urandom(size))
    return (b"Content-Type: application/zip; name=\"akte.zip\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(archive.getvalue()).replace(b"\n", b"\r\n"))


def _status(pid: int, field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(),
                      re.MULTILINE)
    assert found is not None, field
    return int(found.group(1)) * 1024


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


@pytest.mark.parametrize("mb", [10, 50])
@pytest.mark.parametrize("build", [base64_part, quoted_printable_part, zip_part],
                         ids=["base64", "quoted-printable", "zip"])
def test_a_large_attachment_costs_each_part_at_most_3x_the_message_in_rss(
        served: Served, build: Callable[[int], bytes], mb: int) -> None:
    sender = f"rss-{build.__name__}-{mb}@partner.example"
    message = _message(sender, build(mb * MiB))
    pids = {part: served.pid(part) for part in PARTS}
    before = {name: _status(pid, "VmRSS") for name, pid in pids.items()}
    for pid in pids.values():
        _reset_peak(pid)
    with smtplib.SMTP("127.0.0.1", served.inbound, timeout=300) as client:
        client.sendmail(sender, [DEMO_MAILBOX], message)
    wait_until(lambda: served.state(sender) == "delivered", timeout=300,
               what=f"{sender} filed", detail=served.log_tail, poll=0.1)
    for name, pid in pids.items():
        cost = (_status(pid, "VmHWM") - before[name]) / len(message)
        assert cost < BOUND, f"{name}: peak {cost:.2f}x the message above its RSS before"

    allowed = max(KEPT * len(message), FLOOR)

    def given_back() -> bool:
        return all(_status(pid, "RssAnon") - served.idle[name] < allowed
                   for name, pid in pids.items())

    wait_until(given_back, timeout=30, what="the message's memory given back",
               detail=lambda: ", ".join(
                   f"{name} {(_status(pid, 'RssAnon') - served.idle[name]) / MiB:.0f} MiB "
                   f"private above idle" for name, pid in pids.items()))
