"""scanning.clamd_client against a real clamd (Debian's, with the test signatures).

The only stand-ins are for what a real clamd cannot be made to do on demand: a relay that
drops or delays connections (tests/support/clamd.py), and tiny servers that answer nonsense,
which test our parser, not clamd.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scanning.clamd_client import ClamdAnswer, ClamdClient, parse_scan_reply
from scanning.errors import ScannerUnavailable
from tests.support.clamd import (
    CLAMAV_TESTFILES,
    EICAR,
    EICAR_NAME,
    TEST_STREAM_MAX_BYTES,
    TESTFILE_NAME,
    ClamdProxy,
    RunningClamd,
    encrypted_zip,
    shared_clamd,
    short_temp_dir,
)
from tests.support.ports import free_port
from tests.support.waiting import wait_until


@pytest.fixture
def clamd() -> RunningClamd:
    return shared_clamd()


@pytest.fixture
def client(clamd: RunningClamd) -> ClamdClient:
    return clamd.client()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = short_temp_dir("xgate-sock-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def proxy(clamd: RunningClamd, sock_dir: Path) -> Iterator[ClamdProxy]:
    relay = ClamdProxy(clamd.socket_path, sock_dir)
    yield relay
    relay.close()


# -- verdicts ----------------------------------------------------------------------------------


def test_eicar_is_found(client: ClamdClient) -> None:
    answer = client.instream(EICAR)
    assert answer.found == EICAR_NAME
    assert answer.infected == EICAR_NAME
    assert answer.unscannable_reason is None
    assert not answer.clean and not answer.limit_exceeded


def test_eicar_split_over_many_chunks_is_found(clamd: RunningClamd) -> None:
    # Odd chunk sizes put chunk borders inside the signature and inside length prefixes
    # on clamd's side: the framing has to be right for this to match.
    data = b"padding " * 5000 + EICAR + b" trailer" * 5000
    answer = clamd.client(chunk_size=7).instream(memoryview(data))
    assert answer.infected == EICAR_NAME


def test_clean_data_is_ok(client: ClamdClient) -> None:
    answer = client.instream(b"Sehr geehrte Damen und Herren,\r\nanbei der Hilfeplan.\r\n")
    assert answer.clean and answer.reply == "stream: OK"
    assert answer.infected is None and answer.unscannable_reason is None
    assert client.instream(b"").clean
    assert client.instream(bytearray(b"\x00" * 200_000)).clean


@pytest.mark.parametrize("name", ["clam.exe", "clam.zip", "clam.tar.gz", "clam.7z"])
def test_clamav_test_files_are_found(client: ClamdClient, name: str) -> None:
    answer = client.instream((CLAMAV_TESTFILES / name).read_bytes())
    assert answer.infected == TESTFILE_NAME


def test_encrypted_zip_is_unscannable_not_infected(client: ClamdClient) -> None:
    answer = client.instream(encrypted_zip("gutachten.txt", b"Psychologisches Gutachten"))
    assert answer.found == "Heuristics.Encrypted.Zip"
    assert answer.unscannable_reason == "Heuristics.Encrypted.Zip"
    assert answer.infected is None and not answer.limit_exceeded


def test_stream_over_stream_max_length_is_a_limit_answer(client: ClamdClient) -> None:
    answer = client.instream(b"a" * (TEST_STREAM_MAX_BYTES + 1))
    assert answer.error == "INSTREAM size limit exceeded."
    assert answer.limit_exceeded
    assert answer.unscannable_reason == "INSTREAM size limit exceeded."
    assert answer.infected is None
    # clamd closed that connection; the next scan is unaffected.
    assert client.instream(EICAR).infected == EICAR_NAME


def test_ping_version_reload(client: ClamdClient) -> None:
    client.ping()
    assert client.version().startswith("ClamAV 1.")
    client.reload()
    # clamd keeps answering while it reloads its databases.
    client.ping()
    assert client.instream(EICAR).infected == EICAR_NAME


# -- clamd down, restarted, slow -------------------------------------------------------------


def test_stopped_clamd_is_unavailable_within_the_timeout(clamd: RunningClamd) -> None:
    client = clamd.client(timeout=2)
    with clamd.stopped():
        started = time.monotonic()
        with pytest.raises(ScannerUnavailable, match="unreachable"):
            client.instream(EICAR)
        with pytest.raises(ScannerUnavailable):
            client.ping()
        assert time.monotonic() - started < 2.5
    assert client.instream(EICAR).infected == EICAR_NAME


def test_same_client_works_after_a_restart(clamd: RunningClamd) -> None:
    client = clamd.client()
    assert client.instream(EICAR).infected == EICAR_NAME
    clamd.restart()
    assert client.instream(EICAR).infected == EICAR_NAME


def test_one_dropped_connection_is_retried(proxy: ClamdProxy) -> None:
    client = ClamdClient(socket_path=proxy.path, timeout=5)
    proxy.drop_next = 1
    assert client.instream(EICAR).infected == EICAR_NAME
    assert proxy.connections == 2


def test_two_dropped_connections_are_unavailable(proxy: ClamdProxy) -> None:
    client = ClamdClient(socket_path=proxy.path, timeout=5)
    proxy.drop_next = 2
    with pytest.raises(ScannerUnavailable, match="unreachable"):
        client.instream(EICAR)
    assert proxy.connections == 2


def test_answer_later_than_the_timeout_is_unavailable(proxy: ClamdProxy) -> None:
    client = ClamdClient(socket_path=proxy.path, timeout=0.5)
    proxy.hold.clear()
    started = time.monotonic()
    with pytest.raises(ScannerUnavailable, match=r"did not answer INSTREAM within 0.5 s"):
        client.instream(EICAR)
    assert time.monotonic() - started < 1.0
    # A timeout is not retried: the deadline is the whole budget.
    assert proxy.connections == 1


def test_concurrent_scans_are_bounded(proxy: ClamdProxy) -> None:
    client = ClamdClient(socket_path=proxy.path, timeout=20, max_concurrent=2)
    proxy.hold.clear()
    answers: list[str | None] = []
    lock = threading.Lock()

    def scan() -> None:
        found = client.instream(b"x" * 100_000 + EICAR).infected
        with lock:
            answers.append(found)

    threads = [threading.Thread(target=scan) for _ in range(6)]
    for thread in threads:
        thread.start()
    # With the answers held back, two scans are in progress and the others wait for a slot.
    wait_until(lambda: proxy.connections == 2, timeout=5, what="two scans to connect")
    time.sleep(0.3)
    assert proxy.connections == 2
    proxy.hold.set()
    for thread in threads:
        thread.join(timeout=20)
    assert answers == [EICAR_NAME] * 6
    assert proxy.connections == 6


def test_waiting_for_a_slot_is_bounded_by_the_timeout(proxy: ClamdProxy) -> None:
    client = ClamdClient(socket_path=proxy.path, timeout=10, max_concurrent=1)
    proxy.hold.clear()
    results: list[ClamdAnswer] = []
    first = threading.Thread(target=lambda: results.append(client.instream(EICAR)))
    first.start()
    wait_until(lambda: proxy.connections == 1, timeout=5, what="the first scan to connect")
    # A second client sharing the first one's slots, with a deadline short enough for a
    # test: it gives up waiting for the slot and never connects.
    impatient = ClamdClient(socket_path=proxy.path, timeout=0.3, max_concurrent=1)
    impatient._slots = client._slots
    started = time.monotonic()
    with pytest.raises(ScannerUnavailable, match=r"slots .* stayed busy"):
        impatient.instream(EICAR)
    assert time.monotonic() - started < 1.0
    assert proxy.connections == 1
    proxy.hold.set()
    first.join(timeout=5)
    assert [a.infected for a in results] == [EICAR_NAME]


# -- answers that are not clamd's ------------------------------------------------------------


def _serve_once(path: Path, respond: Callable[[socket.socket], None]) -> threading.Thread:
    """A unix socket server for one or two connections (the client retries once)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(5)

    def run() -> None:
        with server:
            for _ in range(2):
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(5)
                    respond(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _reply_with(answer: bytes) -> Callable[[socket.socket], None]:
    def respond(conn: socket.socket) -> None:
        # Read the command (and the stream) up to the zero-length terminator.
        received = b""
        while not received.endswith(b"\0\0\0\0"):
            piece = conn.recv(65536)
            if not piece:
                break
            received += piece
        conn.sendall(answer)

    return respond


@pytest.mark.parametrize("answer, shown", [
    (b"HELLO\0", "HELLO"),
    (b"stream: FOUND\0", "stream: FOUND"),
    (b"stream: Win Trojan FOUND\0", "Win Trojan"),
    (b"stream: \x01\x02 FOUND\0", "stream:"),
    (b"stream: OK", "closed the connection in mid-answer"),
    (b"stream: \xff\xfe OK\0", "not text"),
    (b"A" * 10_000, "too long"),
    (b" ERROR\0", "ERROR"),
])
def test_garbage_answer_is_unavailable_and_quoted(sock_dir: Path, answer: bytes,
                                                  shown: str) -> None:
    path = sock_dir / "liar.sock"
    _serve_once(path, _reply_with(answer))
    client = ClamdClient(socket_path=path, timeout=3)
    with pytest.raises(ScannerUnavailable) as caught:
        client.instream(b"some content")
    message = str(caught.value)
    assert shown in message
    assert len(message) < 300


def _reply_to_command(answer: bytes) -> Callable[[socket.socket], None]:
    def respond(conn: socket.socket) -> None:
        conn.recv(100)
        conn.sendall(answer)

    return respond


@pytest.mark.parametrize("call, answer", [("ping", b"PING\0"), ("version", b"1.4.6\0"),
                                          ("reload", b"OK\0")])
def test_garbage_answers_to_control_commands(sock_dir: Path, call: str,
                                             answer: bytes) -> None:
    path = sock_dir / "liar.sock"
    _serve_once(path, _reply_to_command(answer))
    client = ClamdClient(socket_path=path, timeout=3)
    with pytest.raises(ScannerUnavailable, match=f"unexpected answer to {call.upper()}"):
        getattr(client, call)()


def test_silent_server_times_out(sock_dir: Path) -> None:
    path = sock_dir / "silent.sock"
    release = threading.Event()

    def hang(conn: socket.socket) -> None:
        release.wait(5)

    _serve_once(path, hang)
    client = ClamdClient(socket_path=path, timeout=0.4)
    started = time.monotonic()
    with pytest.raises(ScannerUnavailable, match="did not answer"):
        client.instream(b"x" * 1000)
    assert time.monotonic() - started < 1.0
    release.set()


# -- the parser and the constructor -----------------------------------------------------------


@pytest.mark.parametrize("reply, found, error, infected, unscannable, limit", [
    ("stream: OK", None, None, None, None, False),
    ("stream: Win.Test.EICAR_HDB-1 FOUND", "Win.Test.EICAR_HDB-1", None,
     "Win.Test.EICAR_HDB-1", None, False),
    ("stream: Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND",
     "Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68)", None,
     "Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68)", None, False),
    ("stream: Heuristics.Encrypted.PDF FOUND", "Heuristics.Encrypted.PDF", None, None,
     "Heuristics.Encrypted.PDF", False),
    ("stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND",
     "Heuristics.Limits.Exceeded.MaxRecursion", None, None,
     "Heuristics.Limits.Exceeded.MaxRecursion", True),
    # A malware heuristic is a detection, not "could not scan".
    ("stream: Heuristics.Phishing.Email.SpoofedDomain FOUND",
     "Heuristics.Phishing.Email.SpoofedDomain", None,
     "Heuristics.Phishing.Email.SpoofedDomain", None, False),
    ("INSTREAM size limit exceeded. ERROR", None, "INSTREAM size limit exceeded.", None,
     "INSTREAM size limit exceeded.", True),
    ("stream: Time limit reached ERROR", None, "Time limit reached", None,
     "Time limit reached", True),
    ("stream: Can't allocate memory ERROR", None, "Can't allocate memory", None, None, False),
])
def test_parse_scan_reply(reply: str, found: str | None, error: str | None,
                          infected: str | None, unscannable: str | None, limit: bool) -> None:
    answer = parse_scan_reply(reply)
    assert (answer.found, answer.error) == (found, error)
    assert answer.infected == infected
    assert answer.unscannable_reason == unscannable
    assert answer.limit_exceeded is limit
    assert answer.clean is (found is None and error is None)


@pytest.mark.parametrize("reply", ["", "PONG", "stream: ok", "stream:  FOUND",
                                   "UNKNOWN COMMAND", "COMMAND READ TIMED OUT"])
def test_parse_rejects_what_is_not_a_verdict(reply: str) -> None:
    with pytest.raises(ScannerUnavailable, match="unexpected answer"):
        parse_scan_reply(reply)


def test_exactly_one_address() -> None:
    with pytest.raises(ValueError):
        ClamdClient()
    with pytest.raises(ValueError):
        ClamdClient(socket_path=Path("/x.sock"), host="127.0.0.1")


def test_from_settings_picks_external_or_managed(clamd: RunningClamd) -> None:
    settings = clamd.settings
    managed = ClamdClient.from_settings(settings)
    assert managed.socket_path == clamd.socket_path
    assert managed.timeout == settings.scanning.timeout_seconds
    assert managed.max_concurrent == settings.scanning.max_concurrent_scans
    assert managed.instream(EICAR).infected == EICAR_NAME

    external = settings.model_copy(deep=True)
    external.scanning.clamd_host = "127.0.0.1"
    external.scanning.clamd_port = 3399
    tcp = ClamdClient.from_settings(external)
    assert (tcp.host, tcp.port, tcp.socket_path) == ("127.0.0.1", 3399, None)
    external.scanning.clamd_socket = Path("/run/clamav/clamd.ctl")
    both = ClamdClient.from_settings(external)  # the socket wins
    assert (both.socket_path, both.host) == (Path("/run/clamav/clamd.ctl"), None)


def test_tcp_connection_refused_is_unavailable() -> None:
    client = ClamdClient(host="127.0.0.1", port=free_port(), timeout=2)
    with pytest.raises(ScannerUnavailable, match="unreachable"):
        client.instream(EICAR)
