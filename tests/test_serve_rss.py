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
import os
import quopri
import re
import smtplib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.cli.demo import DEMO_MAILBOX
from tests.support.clamd import RunningClamd, large_message_clamd
from tests.support.served import Served, running_serve
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
    clamd = large_message_clamd(LIMIT)
    yield clamd
    clamd.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           big_clamd: RunningClamd) -> Iterator[Served]:
    with running_serve(tmp_path_factory.mktemp("serve-rss"), {
        "XGATE_WORKERS__PROCESSES": "1",
        "XGATE_SMTP__MAX_MESSAGE_BYTES": str(LIMIT),
        "XGATE_SCANNING__CLAMD_SOCKET": str(big_clamd.socket_path),
    }) as served:
        # A first small message: the worker has imported and warmed up all it needs, so
        # what the large ones cost is not mixed with that.
        sender = "rss-warm-up@partner.example"
        with smtplib.SMTP("127.0.0.1", served.inbound, timeout=60) as client:
            client.sendmail(sender, [DEMO_MAILBOX], _message(sender, base64_part(1000)))
        wait_until(lambda: _state(served, sender) == "delivered", timeout=120,
                   what="the warm-up message filed", detail=served.log_tail, poll=0.1)
        yield served


def _state(served: Served, sender: str) -> str | None:
    rows = served.rows("SELECT state, reason FROM messages WHERE mail_from = ?", sender)
    if rows and rows[0][0] in ("quarantined", "failed", "rejected"):
        pytest.fail(f"{sender}: {rows[0][0]}: {rows[0][1]}")
    return str(rows[0][0]) if rows else None


@pytest.fixture(scope="module")
def idle(served: Served) -> dict[str, int]:
    """Private memory (RssAnon) by part after the warm-up, before the first large message:
    RSS also counts the pages of libraries and modules mapped from files, and a part touches
    more of those the first time it meets a kind of message (12-15 MiB of them, shared and
    not the message's)."""
    return {part: _status(served.pid(part), "RssAnon") for part in PARTS}


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
        served: Served, idle: dict[str, int], build: Callable[[int], bytes], mb: int
) -> None:
    sender = f"rss-{build.__name__}-{mb}@partner.example"
    message = _message(sender, build(mb * MiB))
    pids = {part: served.pid(part) for part in PARTS}
    before = {name: _status(pid, "VmRSS") for name, pid in pids.items()}
    for pid in pids.values():
        _reset_peak(pid)
    with smtplib.SMTP("127.0.0.1", served.inbound, timeout=300) as client:
        client.sendmail(sender, [DEMO_MAILBOX], message)
    wait_until(lambda: _state(served, sender) == "delivered", timeout=300,
               what=f"{sender} filed", detail=served.log_tail, poll=0.1)
    for name, pid in pids.items():
        cost = (_status(pid, "VmHWM") - before[name]) / len(message)
        assert cost < BOUND, f"{name}: peak {cost:.2f}x the message above its RSS before"

    allowed = max(KEPT * len(message), FLOOR)

    def given_back() -> bool:
        return all(_status(pid, "RssAnon") - idle[name] < allowed
                   for name, pid in pids.items())

    wait_until(given_back, timeout=30, what="the message's memory given back",
               detail=lambda: ", ".join(
                   f"{name} {(_status(pid, 'RssAnon') - idle[name]) / MiB:.0f} MiB "
                   f"private above idle" for name, pid in pids.items()))
