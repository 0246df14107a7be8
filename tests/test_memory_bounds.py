"""Memory for large messages, measured with tracemalloc (Python's own allocations), bounded
at 3x the message: sealing and opening at rest, the SMTP edge's DATA path through the real
listener on loopback, and the worker's processing of a 10 MB attachment.

Timings are not asserted; the RSS figures live in benchmarks/memory_peak.py. The message is
built before tracing starts, so only what the code under test allocates is counted.
"""

from __future__ import annotations

import base64
import io
import os
import quopri
import socket
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from sqlalchemy import select

from crypto.at_rest import (
    STREAM_SEAL_BYTES,
    MasterKey,
    SealedStream,
    open_sealed,
    seal,
    seal_pieces,
)
from gateway.db import session_scope
from gateway.memory_release import release_freed_memory
from gateway.models import Direction, Message, MessageState, SealedContent
from gateway.queue.spool import Arrival, Envelope, content_context, prepare, store_batch
from gateway.services import Services
from gateway.settings import Settings
from gateway.smtp.handler import ListenerKind
from mailboxes.directory import mailbox_id_for
from mailboxes.store import (
    STREAMED_FILING_BYTES,
    file_sealed,
    messages_in,
    read_message,
    seal_for_mailbox,
)
from tests.conftest import make_settings
from tests.support.clamd import RunningClamd
from tests.support.memory import traced
from tests.support.pipeline import drain, enqueue, load_message
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    MAILBOX,
    Edge,
    mailbox_fixture,
    start_edge_fixture,
    tls_files_fixture,
)

ATTACHMENT = 10 * 1024 * 1024
# A large message's memory is a few whole copies; what the code allocates besides (SQL
# statements, log records, asyncio objects) is small beside 3 copies of 10 MB and is counted.
BOUND = 3


LIMIT = 4 * ATTACHMENT


@pytest.fixture(scope="module")
def big_clamd() -> Iterator[RunningClamd]:
    """A clamd of its own whose stream limit takes the whole message (the session's clamd
    stops at 8 MiB, which would make these messages unscannable)."""
    clamd = RunningClamd.start(max_message_bytes=LIMIT)
    yield clamd
    clamd.close()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, big_clamd: RunningClamd) -> Settings:
    return make_settings(tmp_path / "var", database_url, smtp={"max_message_bytes": LIMIT},
                         scanning={"clamd_socket": str(big_clamd.socket_path)})


def sealed_content(services: Services, queue_id: str) -> bytes:
    with session_scope(services.sessions) as session:
        return session.scalars(select(SealedContent.sealed).join(
            Message, Message.id == SealedContent.message_id)
            .where(Message.queue_id == queue_id)).one()


def test_a_large_blob_is_sealed_without_a_second_copy_and_opens() -> None:
    master = MasterKey.generate()
    plaintext = os.urandom(ATTACHMENT)
    with traced() as peak:
        blob = seal(master, plaintext, b"ctx")
        sealing = peak()
    # The blob itself (message + 80 bytes), a piece being encrypted, not two whole copies.
    assert sealing < 1.2 * len(plaintext), f"{sealing / len(plaintext):.2f}x"
    with traced() as peak:
        opened = open_sealed(master, blob, b"ctx")
        opening = peak()
    assert opened == plaintext
    assert opening < 1.2 * len(plaintext), f"{opening / len(plaintext):.2f}x"


@pytest.mark.parametrize("size", [0, 1, STREAM_SEAL_BYTES - 1, STREAM_SEAL_BYTES,
                                  3 * STREAM_SEAL_BYTES + 17])
def test_the_sealed_layout_is_the_same_for_small_and_large_content(size: int) -> None:
    """Both ways of sealing write MAGIC | key id | wrapped key | nonce | AES-GCM(ciphertext,
    tag) with the header and context as associated data: blobs stored before open the same."""
    master = MasterKey.generate()
    plaintext = os.urandom(size)
    blob = seal(master, plaintext, b"ctx")
    header, body = blob[:64], blob[64:]
    assert header[:4] == b"XGS1" and header[4:12] == master.key_id
    data_key = aes_key_unwrap(master.key, header[12:52])
    assert AESGCM(data_key).decrypt(header[52:64], body, header + b"ctx") == plaintext
    assert open_sealed(master, blob, b"ctx") == plaintext
    with pytest.raises(Exception, match="authentication"):
        open_sealed(master, blob, b"other")


@pytest.mark.parametrize("sizes", [(0, 0), (40, 300), (300, STREAM_SEAL_BYTES),
                                   (1, 2 * STREAM_SEAL_BYTES + 5, 0, 77)])
def test_sealing_pieces_is_sealing_them_joined(sizes: tuple[int, ...]) -> None:
    # A filed copy is sealed from the result header fields and the message, not joined.
    master = MasterKey.generate()
    pieces = [os.urandom(size) for size in sizes]
    blob = seal_pieces(master, [pieces[0], *(memoryview(p) for p in pieces[1:])], b"ctx")
    assert open_sealed(master, blob, b"ctx") == b"".join(pieces)
    assert len(blob) == len(seal(master, b"".join(pieces), b"ctx"))


def test_a_large_message_is_filed_from_its_pieces_without_joining_them() -> None:
    master = MasterKey.generate()
    head, message = b"X-Xgate-Queue-Id: Q\r\n", os.urandom(ATTACHMENT)
    with traced() as peak:
        blob = seal_pieces(master, (head, message), b"ctx")
        sealing = peak()
    assert sealing < 1.2 * len(message), f"{sealing / len(message):.2f}x"
    assert open_sealed(master, blob, b"ctx") == head + message


def _attachment_message(part: bytes) -> bytes:
    return (b"From: a@partner.example\r\nTo: " + MAILBOX.encode() + b"\r\nSubject: Akte\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nDie Akte im Anhang.\r\n"
            + part + b"\r\n--b--\r\n")


def base64_message() -> bytes:
    body = base64.encodebytes(os.urandom(ATTACHMENT)).replace(b"\n", b"\r\n")
    return _attachment_message(
        b"--b\r\nContent-Type: application/octet-stream; name=\"akte.bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body)


def quoted_printable_message() -> bytes:
    # Text with umlauts and long lines: quoted-printable as a mail client writes it.
    words = [b"Hilfeplan", b"Gespr\xc3\xa4ch", b"Jugendamt", b"f\xc3\xbcr", b"Kind", b"="]
    text = b" ".join(words[i % len(words)] for i in range(ATTACHMENT // 8))[:ATTACHMENT]
    body = quopri.encodestring(text).replace(b"\n", b"\r\n")
    return _attachment_message(
        b"--b\r\nContent-Type: text/plain; charset=utf-8; name=\"bericht.txt\"\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body)


def zip_message() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("akte.bin", os.urandom(ATTACHMENT))
    body = base64.encodebytes(archive.getvalue()).replace(b"\n", b"\r\n")
    return _attachment_message(
        b"--b\r\nContent-Type: application/zip; name=\"akte.zip\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body)


def _send_raw(address: tuple[str, int], message: bytes) -> bytes:
    """One SMTP transaction by hand, sending the prepared bytes as they are: smtplib would
    copy the message (dot-stuffing, line ends) in this process, where it would be traced."""
    assert b"\r\n." not in message  # nothing to stuff in these test messages
    with socket.create_connection(address, timeout=60) as sock:
        reader = sock.makefile("rb")

        def reply() -> bytes:
            line = reader.readline()
            while line[3:4] == b"-":
                line = reader.readline()
            return line

        assert reply().startswith(b"220")
        for command in (b"EHLO client.partner.example", b"MAIL FROM:<a@partner.example>",
                        b"RCPT TO:<" + MAILBOX.encode() + b">", b"DATA"):
            sock.sendall(command + b"\r\n")
            answer = reply()
            assert answer[:1] in (b"2", b"3"), answer
        with memoryview(message) as view:
            sock.sendall(view)
        sock.sendall(b".\r\n")
        answer = reply()
        sock.sendall(b"QUIT\r\n")
        return answer


def test_the_smtp_edge_takes_a_10_mb_attachment_in_3x_its_size(
        services: Services, start_edge: Callable[..., Edge], mailbox: str) -> None:
    edge = start_edge(max_message_bytes=LIMIT)
    message = base64_message()
    with traced() as peak:
        answer = _send_raw(edge.inbound, message)
        edge.wait_idle(ListenerKind.INBOUND)
        used = peak()
    assert answer.startswith(b"250"), answer
    queue_id = answer.split()[-1].decode()
    stored = load_message(services, queue_id)
    assert stored.state == MessageState.RECEIVED
    content = open_sealed(services.master_key, sealed_content(services, queue_id),
                          content_context(queue_id))
    assert content.endswith(message) and content.startswith(b"Received: ")
    assert used < BOUND * len(message), f"peak {used / len(message):.2f}x the message"


# The message is held through the stages (1x); its parse holds a large body only as where it
# stands in the message (gateway.mime.parsed: read when asked for), and the scanner decodes
# it from there. Measured: base64 2.1x (from 8.75x before issue 17, 4.1x at its first
# stop), quoted-printable 2.1x (decoded in pieces by crypto.mime_qp; from 4.8x), zip 2.6x
# (the decoded archive and its member; from 4.3x).
@pytest.mark.parametrize("build", [base64_message, quoted_printable_message, zip_message],
                         ids=["base64", "quoted-printable", "zip"])
def test_the_worker_processes_a_10_mb_attachment_in_3x_its_size(
        services: Services, mailbox: str, build: Callable[[], bytes]) -> None:
    message = build()
    queue_id = enqueue(services, [mailbox], message)
    with traced() as peak:
        drain(services)
        used = peak()
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    assert used < BOUND * len(message), f"peak {used / len(message):.2f}x the message"


def test_the_smtp_edge_lets_go_of_a_large_message_after_the_250(
        services: Services, start_edge: Callable[..., Edge], mailbox: str) -> None:
    edge = start_edge(max_message_bytes=LIMIT)
    message = base64_message()
    with traced():
        answer = _send_raw(edge.inbound, message)
        edge.wait_idle(ListenerKind.INBOUND)
        kept = tracemalloc.get_traced_memory()[0]
    assert answer.startswith(b"250"), answer
    assert kept < len(message) / 4, f"kept {kept / len(message):.2f}x the message"


@pytest.mark.parametrize("size", [100, 3 * STREAMED_FILING_BYTES + 5])
def test_a_filed_copy_reads_back_whole_and_is_filed_once(
        services: Services, mailbox: str, size: int) -> None:
    """Large copies go into SQLite through the blob handle (small ones, and PostgreSQL, as
    a bound parameter): what was sealed is what reads back, and a second filing of the same
    message is refused as before."""
    content = os.urandom(size)
    queue_id = enqueue(services, [mailbox], b"Subject: x\r\n\r\nx\r\n")
    with session_scope(services.sessions) as session:
        found = mailbox_id_for(session, mailbox)
        assert found is not None
        message_id = session.scalars(select(Message.id).where(
            Message.queue_id == queue_id)).one()
        sealed = seal_for_mailbox(services.master_key, found[0], message_id, content)
        filed = file_sealed(session, mailbox_id=found[0], message_id=message_id,
                            mail_from="a@partner.example", size=size, sealed=sealed,
                            now=services.clock(), queue_id=queue_id)
        again = file_sealed(session, mailbox_id=found[0], message_id=message_id,
                            mail_from="a@partner.example", size=size, sealed=sealed,
                            now=services.clock(), queue_id=queue_id)
    assert filed is not None and again is None
    with session_scope(services.sessions) as session:
        copies = messages_in(session, found[0])
        assert [c.id for c in copies] == [filed]
        if isinstance(sealed, bytes):
            assert copies[0].sealed == sealed
        else:
            # A large copy is sealed as it is written (SealedStream): its bytes are known
            # only from the store; the layout's length is fixed.
            assert isinstance(sealed, SealedStream) and len(copies[0].sealed) == len(sealed)
        assert read_message(services.master_key, copies[0]) == content


def test_freed_memory_goes_back_to_the_system_on_glibc() -> None:
    """The SMTP edge trims the heap after a large message (gateway.memory_release); on this
    platform (Linux with glibc, as the gateway is deployed) the call must be available."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    assert release_freed_memory() is True
    assert release_freed_memory() is True  # and harmless to repeat


ROOT = Path(__file__).resolve().parents[1]
# In a process of its own: the thresholds hold for the rest of a process's life.
_THREAD_ARENA = """
import re, sys, threading
from pathlib import Path
from gateway.memory_release import fix_allocation_thresholds, release_freed_memory

def private_mib():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"RssAnon:\\s+(\\d+)", status).group(1)) // 1024

if sys.argv[1] == "fixed":
    assert fix_allocation_thresholds()

def message_sized_blocks():
    # The first block is a mapping of its own and raises glibc's threshold past the
    # next ones, which then come from the thread's arena, as in a worker.
    for mib in (13, 12, 12):
        block = bytearray(mib << 20)
        del block
    release_freed_memory()

before = private_mib()
thread = threading.Thread(target=message_sized_blocks)
thread.start()
thread.join()
print(private_mib() - before)
"""


@pytest.mark.parametrize("thresholds", ["fixed", "glibc's own"])
def test_a_thread_gives_large_blocks_back_once_the_thresholds_are_fixed(
        thresholds: str) -> None:
    """What ``xgate serve``'s parts do first (gateway.memory_release.fix_allocation_thresholds):
    without it a thread's arena keeps a freed 12 MiB block resident even after the trim,
    with it nothing stays. Both cases are run, so the test shows the difference it relies
    on is still there."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt's thresholds are glibc's")
    result = subprocess.run([sys.executable, "-c", _THREAD_ARENA, thresholds],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    kept_mib = int(result.stdout)
    if thresholds == "fixed":
        assert kept_mib < 4, f"{kept_mib} MiB kept"
    else:
        assert kept_mib >= 10, f"only {kept_mib} MiB kept: glibc no longer keeps it"


def test_a_batch_of_small_and_large_messages_is_stored_whole(services: Services) -> None:
    """The edge's group commit with large messages (streamed into SQLite through the blob
    handle, gateway.db_blobs) between small ones: each reads back as it was received."""
    bodies = [b"Subject: klein\r\n\r\n" + os.urandom(50),
              b"Subject: gross\r\n\r\n" + os.urandom(3 * STREAMED_FILING_BYTES + 7),
              b"Subject: klein 2\r\n\r\n" + os.urandom(10),
              b"Subject: gross 2\r\n\r\n" + os.urandom(STREAMED_FILING_BYTES)]
    now = services.clock()
    with session_scope(services.sessions) as session:
        stored = store_batch(session, [Arrival(prepare(services.master_key, Envelope(
            Direction.INBOUND, "a@partner.example", ["b@jugendamt.example"], body)),
            "test", now) for body in bodies])
    with session_scope(services.sessions) as session:
        for body, one in zip(bodies, stored, strict=True):
            sealed = session.scalars(select(SealedContent.sealed).where(
                SealedContent.message_id == one.id)).one()
            assert open_sealed(services.master_key, sealed,
                               content_context(one.queue_id)) == body
