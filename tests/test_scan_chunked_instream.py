"""ClamdClient.instream_chunks against the real clamd: a stream handed over in pieces is
scanned as one, whatever the pieces' sizes and the client's frame size."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanning.clamd_client import Chunk, ClamdClient
from tests.support.clamd import (
    EICAR,
    EICAR_NAME,
    ClamdProxy,
    RunningClamd,
    shared_clamd,
    short_temp_dir,
)


@pytest.fixture
def clamd() -> RunningClamd:
    return shared_clamd()


def pieces(data: bytes, sizes: list[int]) -> list[Chunk]:
    """``data`` cut at the given sizes (repeated), with empty pieces in between."""
    out: list[Chunk] = [b""]
    at = 0
    index = 0
    while at < len(data):
        size = sizes[index % len(sizes)]
        out.append(memoryview(data)[at:at + size])
        out.append(b"")
        at += size
        index += 1
    return out


@pytest.mark.parametrize("sizes", [[1], [3, 50], [34], [67, 1], [len(EICAR)]])
@pytest.mark.parametrize("frame", [5, 64 * 1024])
def test_eicar_split_across_chunks_and_frames_is_found(clamd: RunningClamd, sizes: list[int],
                                                       frame: int) -> None:
    client = ClamdClient(socket_path=clamd.socket_path, timeout=10, chunk_size=frame)
    answer = client.instream_chunks(lambda: pieces(EICAR, sizes))
    assert answer.infected == EICAR_NAME


def test_eicar_inside_a_larger_stream_of_pieces_is_found(clamd: RunningClamd) -> None:
    data = b"Hilfeplan " * 20_000 + EICAR  # the standard test file must end the stream
    client = ClamdClient(socket_path=clamd.socket_path, timeout=10)
    assert client.instream_chunks(lambda: pieces(data, [70_001, 12])).infected == EICAR_NAME


def test_clean_pieces_are_clean_and_nothing_is_no_stream_at_all(clamd: RunningClamd) -> None:
    client = ClamdClient(socket_path=clamd.socket_path, timeout=10)
    assert client.instream_chunks(lambda: pieces(b"Hallo Jugendamt\r\n" * 100, [7])).clean
    # Only empty pieces: an empty stream, which clamd answers OK (not a hang).
    assert client.instream_chunks(lambda: [b"", b""]).clean


@pytest.fixture
def proxy(clamd: RunningClamd) -> Iterator[ClamdProxy]:
    directory: Path = short_temp_dir("xgate-sock-")
    relay = ClamdProxy(clamd.socket_path, directory)
    yield relay
    relay.close()
    shutil.rmtree(directory, ignore_errors=True)


def test_a_retry_after_a_dropped_connection_sends_the_pieces_again(proxy: ClamdProxy) -> None:
    client = ClamdClient(socket_path=proxy.path, timeout=5)

    def chunks() -> Iterator[Chunk]:
        # A fresh generator per attempt: the second connection gets the whole stream, so
        # the test file (found only whole) is found.
        yield from pieces(EICAR, [10])

    proxy.drop_next = 1
    assert client.instream_chunks(chunks).infected == EICAR_NAME
    assert proxy.connections == 2
