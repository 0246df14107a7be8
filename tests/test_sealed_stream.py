"""Large content sealed while it is written and opened while it is read (issue 17's memory
goal): ``crypto.at_rest.SealedStream`` and ``open_sealed_file``, the queue's intake and the
worker's load through SQLite's blob handle, and a filed copy sealed into its blob.

Memory is measured with tracemalloc (Python's allocations), as in test_memory_bounds.py.
"""

from __future__ import annotations

import io
import os

import pytest
from sqlalchemy import select, update

from crypto.at_rest import (
    STREAM_SEAL_BYTES,
    MasterKey,
    SealedStream,
    open_sealed,
    open_sealed_file,
    seal,
    seal_later,
    seal_pieces,
    sealed_bytes,
)
from crypto.errors import SealError
from gateway.db import session_scope
from gateway.mime.headers import header_block_alone
from gateway.mime.parsed import parse_header_block
from gateway.models import Direction, Message, MessageState, SealedContent
from gateway.queue.spool import Arrival, Envelope, content_context, prepare, store_batch
from gateway.queue.store import load
from gateway.services import Services
from mailboxes.directory import mailbox_id_for
from mailboxes.store import messages_in, read_message
from tests.support.memory import traced
from tests.support.pipeline import drain, enqueue, load_message
from tests.support.smtp_fixtures import MAILBOX, mailbox_fixture  # noqa: F401 - fixture

SIZE = 3 * STREAM_SEAL_BYTES + 17


def test_a_sealed_stream_is_the_blob_seal_makes_and_opens() -> None:
    master = MasterKey.generate()
    head, body = b"X-Xgate-Queue-Id: Q\r\n", os.urandom(SIZE)
    stream = SealedStream(master, (head, memoryview(body)), b"ctx")
    blob = b"".join(stream.chunks())
    assert len(blob) == len(stream) == len(seal(master, head + body, b"ctx"))
    assert blob[:4] == b"XGS1" and blob[4:12] == master.key_id
    assert open_sealed(master, blob, b"ctx") == head + body
    with pytest.raises(SealError, match="authentication"):
        open_sealed(master, blob, b"other context")


def test_each_pass_over_a_stream_seals_afresh() -> None:
    # A store that failed halfway writes again: a new data key and nonce, never the same
    # nonce twice under one key.
    master = MasterKey.generate()
    stream = SealedStream(master, (os.urandom(SIZE),), b"ctx")
    first, second = b"".join(stream.chunks()), b"".join(stream.chunks())
    assert first[12:64] != second[12:64]
    assert open_sealed(master, first, b"ctx") == open_sealed(master, second, b"ctx")
    assert open_sealed(master, stream.whole(), b"ctx") == open_sealed(master, first, b"ctx")


@pytest.mark.parametrize("size", [0, 100, STREAM_SEAL_BYTES - 1])
def test_small_content_is_sealed_at_once(size: int) -> None:
    master = MasterKey.generate()
    sealed = seal_later(master, (os.urandom(size),), b"ctx")
    assert isinstance(sealed, bytes) and sealed_bytes(sealed) is sealed


def test_large_content_is_sealed_only_when_written() -> None:
    master = MasterKey.generate()
    data = os.urandom(SIZE)
    with traced() as peak:
        sealed = seal_later(master, (data,), b"ctx")
        deferred = peak()
    assert isinstance(sealed, SealedStream) and deferred < 4096
    assert open_sealed(master, sealed_bytes(sealed), b"ctx") == data


@pytest.mark.parametrize("size", [0, 1, 100, STREAM_SEAL_BYTES, SIZE])
def test_opening_from_a_file_is_opening_the_bytes(size: int) -> None:
    master = MasterKey.generate()
    data = os.urandom(size)
    blob = seal_pieces(master, (data,), b"ctx")
    assert open_sealed_file(master, io.BytesIO(blob), len(blob), b"ctx") == data


def test_opening_from_a_file_holds_the_plaintext_and_a_piece() -> None:
    master = MasterKey.generate()
    data = os.urandom(10 * STREAM_SEAL_BYTES)
    source = io.BytesIO(seal(master, data, b"ctx"))
    size = len(source.getbuffer())
    with traced() as peak:
        opened = open_sealed_file(master, source, size, b"ctx")
        used = peak()
    assert opened == data
    assert used < 1.25 * len(data), f"{used / len(data):.2f}x"


@pytest.mark.parametrize("where", [0, 20, 60, 64, 64 + STREAM_SEAL_BYTES + 3, -1])
def test_a_changed_byte_anywhere_refuses_the_whole(where: int) -> None:
    master = MasterKey.generate()
    blob = bytearray(seal(master, os.urandom(2 * STREAM_SEAL_BYTES), b"ctx"))
    blob[where] ^= 0x01
    with pytest.raises(SealError):
        open_sealed_file(master, io.BytesIO(blob), len(blob), b"ctx")


def test_a_truncated_or_foreign_blob_is_refused() -> None:
    master = MasterKey.generate()
    blob = seal(master, os.urandom(STREAM_SEAL_BYTES + 5), b"ctx")
    with pytest.raises(SealError, match="truncated"):
        open_sealed_file(master, io.BytesIO(blob[:50]), 50, b"ctx")
    # The size promised is more than the source holds.
    with pytest.raises(SealError):
        open_sealed_file(master, io.BytesIO(blob[:-1000]), len(blob), b"ctx")
    with pytest.raises(SealError, match="another master key"):
        open_sealed_file(MasterKey.generate(), io.BytesIO(blob), len(blob), b"ctx")


def _stored_blob(services: Services, queue_id: str) -> bytes:
    with session_scope(services.sessions) as session:
        return session.scalars(select(SealedContent.sealed).join(
            Message, Message.id == SealedContent.message_id)
            .where(Message.queue_id == queue_id)).one()


def test_a_large_message_is_stored_sealed_and_loads_opened(services: Services) -> None:
    """On both databases: a large message is sealed into its row (as it is written on
    SQLite, whole for PostgreSQL's bytea) and the worker's load gives back its bytes."""
    data = b"Subject: gross\r\n\r\n" + os.urandom(SIZE)
    queue_id = enqueue(services, [MAILBOX], data)
    blob = _stored_blob(services, queue_id)
    assert open_sealed(services.master_key, blob, content_context(queue_id)) == data
    message_id = load_message(services, queue_id).id
    with session_scope(services.sessions) as session:
        loaded = load(session, message_id, services.master_key, content_context)
    assert loaded.content == data and loaded.queue_id == queue_id


@pytest.mark.parametrize("size", [100, SIZE])
def test_stored_content_that_does_not_open_fails_the_message(
        services: Services, mailbox: str, size: int) -> None:
    """Damaged storage or another master key: the worker records the message as failed
    instead of retrying it for ever (small content and content read through the blob
    handle alike)."""
    data = b"Subject: x\r\n\r\n" + os.urandom(size)
    queue_id = enqueue(services, [mailbox], data)
    message_id = load_message(services, queue_id).id
    with session_scope(services.sessions) as session:
        session.execute(update(SealedContent).where(SealedContent.message_id == message_id)
                        .values(sealed=seal(MasterKey.generate(), data,
                                            content_context(queue_id))))
    drain(services)
    assert load_message(services, queue_id).state == MessageState.FAILED


def test_a_large_message_is_filed_sealed_into_its_blob(services: Services,
                                                       mailbox: str) -> None:
    """Through the whole pipeline: the worker opens a large message through the blob handle
    and files it sealed as it writes it; the mailbox's copy reads back as the message."""
    body = os.urandom(SIZE).hex().encode()
    lines = b"\r\n".join(body[i : i + 76] for i in range(0, len(body), 76))
    data = (b"From: a@partner.example\r\nTo: " + mailbox.encode() +
            b"\r\nSubject: Akte\r\n\r\n" + lines + b"\r\n")
    queue_id = enqueue(services, [mailbox], data)
    drain(services)
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    with session_scope(services.sessions) as session:
        found = mailbox_id_for(session, mailbox)
        assert found is not None
        copies = messages_in(session, found[0])
        assert len(copies) == 1
        filed = read_message(services.master_key, copies[0])
    assert filed.endswith(data)


def test_the_header_block_of_a_large_message_is_read_without_its_body() -> None:
    # The worker's parse stage reads the header block alone of a single-part message; the
    # body, thrown away, had been copied whole first (2x a 50 MB message in RSS).
    message = b"Subject: gross\r\nFrom: a@partner.example\r\n\r\n" + os.urandom(SIZE)
    with traced() as peak:
        headers = parse_header_block(message)
        block = header_block_alone(message)
        used = peak()
    assert headers["Subject"] == "gross" and block.endswith(b"partner.example")
    assert used < len(message) / 10, f"{used / len(message):.2f}x"


def test_a_large_message_stored_again_after_a_failed_transaction_opens(
        services: Services) -> None:
    """The intake committer stores a failed batch again one by one: the same prepared
    message, sealed afresh on the second pass, is stored whole."""
    data = b"Subject: gross\r\n\r\n" + os.urandom(SIZE)
    prepared = prepare(services.master_key, Envelope(Direction.INBOUND, "a@partner.example",
                                                      [MAILBOX], data))
    assert isinstance(prepared.sealed, SealedStream)
    arrival = Arrival(prepared, "test", services.clock())

    class Failed(Exception):
        pass

    with pytest.raises(Failed), session_scope(services.sessions) as session:
        store_batch(session, [arrival])
        raise Failed  # rolled back after the content was written
    with session_scope(services.sessions) as session:
        [stored] = store_batch(session, [arrival])
    assert stored.queue_id == prepared.queue_id
    blob = _stored_blob(services, prepared.queue_id)
    assert open_sealed(services.master_key, blob, content_context(prepared.queue_id)) == data
