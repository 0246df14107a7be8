"""A small client for clamd: INSTREAM scans, PING, VERSION, RELOAD.

Content goes to clamd only through the socket (INSTREAM), never as a file we write, so the
gateway itself puts no plaintext on disk for scanning (clamd does, see scanning.managed).

Why our own client and not the ``clamd`` package from PyPI (1.0.2, the latest release)?
Read against its code, for what this gateway needs:

- No bounded call. It connects *before* setting the socket timeout, so a connect to a host
  that drops packets waits for the operating system's TCP timeout; the default timeout is
  None (block forever); and a timeout applies per socket operation, so a peer trickling a
  byte now and then keeps a scan alive indefinitely. We need a deadline for the whole call.
- Fragile INSTREAM framing. Chunks go out with ``socket.send`` and the returned count is
  ignored: a partial send would corrupt the length-prefixed framing. Chunks are a fixed
  1 KiB (one system call per KiB of a 50 MB message).
- Streams over clamd's StreamMaxLength: clamd answers "INSTREAM size limit exceeded" and
  closes the connection while the client is still sending. The package only looks for that
  answer after sending everything, so a caller gets a bare ``BrokenPipeError`` (tried against
  clamd 1.4.6: 3 MiB against a 1 MiB limit), not its own ``BufferTooLongError``. We stop
  sending as soon as clamd has answered and report the limit as such (UNSCANNABLE, not an
  outage).
- No bound on concurrent scans, no reconnect-and-retry, no distinction between heuristic
  answers (encrypted, limits exceeded) and real signatures, and no type hints.

Every failure to get a verdict becomes ScannerUnavailable: the caller defers (fail closed).
"""

from __future__ import annotations

import logging
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from scanning.errors import ScanInterrupted, ScannerUnavailable

log = logging.getLogger(__name__)

# A longer answer is not clamd's: one verdict line is a few dozen bytes.
MAX_REPLY_BYTES = 4096
# Between the failed attempt and the one retry: long enough for a clamd that is restarting
# to bind its socket again, short against any sensible timeout.
RETRY_PAUSE_SECONDS = 0.25
_QUOTE_CHARS = 120

# Printable ASCII without spaces: every ClamAV signature name, also with the
# "(hash:size)" suffix that ExtendedDetectionInfo adds.
_SIGNATURE_NAME = re.compile(r"[!-~]{1,255}")
# ClamAV's answers for content it did not (fully) scan because of a limit, as error text:
# "INSTREAM size limit exceeded.", cl_strerror's "Size limit exceeded", "Files number limit
# exceeded", "Recursion limit exceeded", "Time limit reached", and the "Exceeds..." wording.
_LIMIT_ERROR = re.compile(r"limit (exceeded|reached)|\bexceed", re.IGNORECASE)
# Heuristic "detections" that mean "could not look inside", not "found malware":
# AlertEncrypted* gives Heuristics.Encrypted.Zip/.RAR/.PDF/.Doc..., AlertExceedsMax gives
# Heuristics.Limits.Exceeded.MaxFileSize/MaxScanSize/MaxRecursion/MaxFiles/MaxScanTime...
_UNSCANNABLE_PREFIXES = ("Heuristics.Encrypted.", "Heuristics.Limits.Exceeded")
_LIMIT_PREFIX = "Heuristics.Limits.Exceeded"

# One piece of a stream for instream_chunks.
Chunk = bytes | bytearray | memoryview


@dataclass(frozen=True)
class ClamdAnswer:
    """clamd's verdict on one stream. Exactly one of: clean, ``found``, ``error``."""

    reply: str
    found: str | None = None
    error: str | None = None

    @property
    def clean(self) -> bool:
        return self.found is None and self.error is None

    @property
    def limit_exceeded(self) -> bool:
        """clamd stopped at one of its limits (stream length, file or scan size, recursion,
        scan time): the content was not fully scanned."""
        if self.found is not None:
            return self.found.startswith(_LIMIT_PREFIX)
        return self.error is not None and _LIMIT_ERROR.search(self.error) is not None

    @property
    def unscannable_reason(self) -> str | None:
        """Why the content could not be scanned (encrypted, over a limit), else None."""
        if self.found is not None and self.found.startswith(_UNSCANNABLE_PREFIXES):
            return self.found
        if self.error is not None and self.limit_exceeded:
            return self.error
        return None

    @property
    def infected(self) -> str | None:
        """The name of a real detection (signature or malware heuristic), else None."""
        if self.found is not None and self.unscannable_reason is None:
            return self.found
        return None


def quote(reply: str | bytes) -> str:
    """A reply for an error message: repr-quoted and cut, since it may be anything."""
    text = reply if isinstance(reply, str) else reply.decode("utf-8", "replace")
    return repr(text[:_QUOTE_CHARS] + ("..." if len(text) > _QUOTE_CHARS else ""))


def parse_scan_reply(reply: str) -> ClamdAnswer:
    """Parse one INSTREAM answer; anything not in clamd's grammar is ScannerUnavailable."""
    # clamd prefixes verdicts with the stream's name; the stream-length error comes without.
    body = reply.removeprefix("stream: ") if reply.startswith("stream: ") else None
    if body == "OK":
        return ClamdAnswer(reply)
    if body is not None and body.endswith(" FOUND"):
        name = body.removesuffix(" FOUND")
        if _SIGNATURE_NAME.fullmatch(name):
            return ClamdAnswer(reply, found=name)
    elif reply.endswith(" ERROR"):
        message = (body if body is not None else reply).removesuffix(" ERROR").strip()
        if message and message.isprintable():
            return ClamdAnswer(reply, error=message)
    raise ScannerUnavailable(f"unexpected answer from clamd: {quote(reply)}")


class ClientSettingsScanning(Protocol):
    """The part of the scanning settings the client reads (gateway.settings.ScanningSettings).

    A protocol, so that this package imports nothing from the gateway.
    """

    @property
    def clamd_socket(self) -> Path | None: ...
    @property
    def clamd_host(self) -> str | None: ...
    @property
    def clamd_port(self) -> int: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def max_concurrent_scans(self) -> int: ...
    @property
    def managed_socket(self) -> Path: ...


class ClientSettings(Protocol):
    @property
    def data_dir(self) -> Path: ...
    @property
    def scanning(self) -> ClientSettingsScanning: ...
    def resolve(self, path: Path) -> Path: ...


def managed_socket_path(settings: ClientSettings) -> Path:
    """Where the managed clamd listens (and where the client looks when no clamd is set)."""
    return settings.resolve(settings.data_dir) / settings.scanning.managed_socket


class _ConnectionLost(Exception):
    """Connecting failed or clamd went away before answering: worth one retry."""

    def __init__(self, message: str, *, after_connect: bool = False) -> None:
        super().__init__(message)
        # clamd had accepted the connection: it went away while it had our command.
        self.after_connect = after_connect


class _Stalled(TimeoutError):
    """The deadline passed after clamd had accepted the connection (not while connecting)."""


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._at - time.monotonic())

    def remaining(self) -> float:
        """Time left for the next socket operation; TimeoutError once it is used up."""
        left = self._at - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left


class ClamdClient:
    """Talks to one clamd by unix socket or TCP; safe to share between threads.

    Each call opens its own connection (clamd closes it after one command anyway) and has
    one deadline, ``timeout`` seconds, covering the wait for a scan slot, connecting,
    sending and the answer. At most ``max_concurrent`` scans run at once from this client.
    """

    def __init__(self, *, socket_path: Path | None = None, host: str | None = None,
                 port: int = 3310, timeout: float = 60, max_concurrent: int = 4,
                 chunk_size: int = 64 * 1024) -> None:
        if (socket_path is None) == (host is None):
            raise ValueError("give exactly one of socket_path and host")
        if timeout <= 0 or max_concurrent < 1 or chunk_size < 1:
            raise ValueError("timeout, max_concurrent and chunk_size must be positive")
        self.socket_path = socket_path
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.chunk_size = chunk_size
        self._slots = threading.BoundedSemaphore(max_concurrent)

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> ClamdClient:
        """The configured external clamd (its socket, else TCP), or else the managed one's
        socket."""
        scanning = settings.scanning
        if scanning.clamd_host is not None and scanning.clamd_socket is None:
            return cls(host=scanning.clamd_host, port=scanning.clamd_port,
                       timeout=scanning.timeout_seconds,
                       max_concurrent=scanning.max_concurrent_scans)
        socket_path = (settings.resolve(scanning.clamd_socket)
                       if scanning.clamd_socket is not None else managed_socket_path(settings))
        return cls(socket_path=socket_path, timeout=scanning.timeout_seconds,
                   max_concurrent=scanning.max_concurrent_scans)

    @property
    def address(self) -> str:
        """For log lines and error messages."""
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return f"{self.host}:{self.port}"

    # -- commands ----------------------------------------------------------------------------

    def instream(self, data: bytes | bytearray | memoryview) -> ClamdAnswer:
        """Scan ``data``; ScannerUnavailable if clamd gives no verdict in time."""
        view = memoryview(data).cast("B")
        return self.instream_chunks(lambda: (view,))

    def instream_chunks(self, chunks: Callable[[], Iterable[Chunk]]) -> ClamdAnswer:
        """Scan the concatenation of what ``chunks()`` yields, as one stream.

        For content that exists only in pieces (bytes decoded as they go out, or a message
        with its already scanned parts left out): nothing is joined into one buffer. A
        callable, not an iterator, because a lost connection is retried once from the
        start. Empty chunks are skipped (an empty frame would end the stream early).
        """
        deadline = _Deadline(self.timeout)
        with self._slot(deadline):
            reply = self._exchange(b"zINSTREAM\0", deadline, chunks)
        return parse_scan_reply(reply)

    def ping(self, timeout: float | None = None) -> None:
        """Return if clamd answers PONG; ScannerUnavailable otherwise."""
        reply = self._command(b"zPING\0", timeout)
        if reply != "PONG":
            raise ScannerUnavailable(f"unexpected answer to PING from clamd: {quote(reply)}")

    def version(self, timeout: float | None = None) -> str:
        """E.g. "ClamAV 1.4.6/27457/Mon Nov 23 08:04:28 2026" (engine/database/date)."""
        reply = self._command(b"zVERSION\0", timeout)
        if not reply.startswith("ClamAV ") or not reply.isprintable():
            raise ScannerUnavailable(f"unexpected answer to VERSION from clamd: {quote(reply)}")
        return reply

    def reload(self, timeout: float | None = None) -> None:
        """Make clamd load its databases again (after freshclam); it keeps scanning meanwhile."""
        reply = self._command(b"zRELOAD\0", timeout)
        if reply != "RELOADING":
            raise ScannerUnavailable(f"unexpected answer to RELOAD from clamd: {quote(reply)}")

    def _command(self, command: bytes, timeout: float | None) -> str:
        # No scan slot: these are answered at once by clamd's receiving thread, and a health
        # check must not report clamd down only because all slots are busy scanning.
        return self._exchange(command, _Deadline(timeout or self.timeout), None)

    # -- the exchange ------------------------------------------------------------------------

    @contextmanager
    def _slot(self, deadline: _Deadline) -> Iterator[None]:
        if not self._slots.acquire(timeout=deadline.left()):
            raise ScannerUnavailable(
                f"all {self.max_concurrent} scan slots for clamd at {self.address} stayed "
                f"busy for {self.timeout:g} s")
        try:
            yield
        finally:
            self._slots.release()

    def _exchange(self, command: bytes, deadline: _Deadline,
                  payload: Callable[[], Iterable[Chunk]] | None) -> str:
        """One command and its answer, with one retry if the connection failed.

        A timeout is not retried: a clamd that hangs once would hang again, and the deadline
        is the caller's whole budget.
        """
        name = command.strip(b"z\0").decode()
        # A scan that clamd took and then dropped or hung on is ScanInterrupted, which the
        # pipeline counts against the message; a clamd nobody can reach (refused, no socket,
        # connect timeout, all slots busy) is plain ScannerUnavailable, nobody's fault.
        interrupted = False
        for attempt in (1, 2):
            try:
                return self._once(command, deadline, payload)
            except TimeoutError as exc:
                stalled = payload is not None and (interrupted or isinstance(exc, _Stalled))
                raise (ScanInterrupted if stalled else ScannerUnavailable)(
                    f"clamd at {self.address} did not answer {name} within "
                    f"{deadline.seconds:g} s") from None
            except _ConnectionLost as exc:
                interrupted = interrupted or (payload is not None and exc.after_connect)
                if attempt == 2 or deadline.left() <= RETRY_PAUSE_SECONDS:
                    raise (ScanInterrupted if interrupted else ScannerUnavailable)(
                        f"clamd at {self.address} unreachable for {name}: {exc}") from None
                log.info("clamd at %s: %s; retrying once", self.address, exc)
                time.sleep(RETRY_PAUSE_SECONDS)
        raise AssertionError("unreachable")

    def _once(self, command: bytes, deadline: _Deadline,
              payload: Callable[[], Iterable[Chunk]] | None) -> str:
        sock = self._connect(deadline)
        try:
            try:
                sock.settimeout(deadline.remaining())
                sock.sendall(command)
                if payload is not None:
                    self._send_stream(sock, deadline, payload())
            except (BrokenPipeError, ConnectionResetError):
                # clamd may have answered and closed (stream too long): read the answer.
                pass
            return self._read_reply(sock, deadline)
        except TimeoutError as exc:
            raise _Stalled(str(exc)) from None
        except _ConnectionLost as exc:
            raise _ConnectionLost(str(exc), after_connect=True) from None
        except OSError as exc:
            raise _ConnectionLost(str(exc) or type(exc).__name__, after_connect=True) from None
        finally:
            sock.close()

    def _connect(self, deadline: _Deadline) -> socket.socket:
        try:
            if self.socket_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(deadline.remaining())
                    sock.connect(str(self.socket_path))
                except BaseException:
                    sock.close()
                    raise
                return sock
            assert self.host is not None
            # Name resolution is not bounded by the timeout; configure an address or a
            # name the local resolver answers at once.
            return socket.create_connection((self.host, self.port),
                                            timeout=deadline.remaining())
        except TimeoutError:
            raise
        except OSError as exc:
            raise _ConnectionLost(f"cannot connect: {exc}") from None

    def _send_stream(self, sock: socket.socket, deadline: _Deadline,
                     payload: Iterable[Chunk]) -> None:
        # clamd answers early only to refuse (stream over StreamMaxLength) and then closes;
        # looking before each chunk stops us at once and keeps the answer, which on TCP a
        # reset from further sending could destroy.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        for piece in payload:
            view = memoryview(piece).cast("B")
            for start in range(0, len(view), self.chunk_size):
                if poller.poll(0):
                    return
                chunk = view[start:start + self.chunk_size]
                sock.settimeout(deadline.remaining())
                sock.sendall(b"".join((struct.pack("!L", len(chunk)), chunk)))
        sock.settimeout(deadline.remaining())
        sock.sendall(struct.pack("!L", 0))

    def _read_reply(self, sock: socket.socket, deadline: _Deadline) -> str:
        received = bytearray()
        while True:
            sock.settimeout(deadline.remaining())
            piece = sock.recv(MAX_REPLY_BYTES)
            if not piece:
                if not received:
                    raise _ConnectionLost("clamd closed the connection without answering")
                raise ScannerUnavailable(
                    f"clamd at {self.address} closed the connection in mid-answer: "
                    f"{quote(bytes(received))}")
            received += piece
            end = received.find(b"\0")
            if end >= 0:
                return self._decode(bytes(received[:end]))
            if len(received) > MAX_REPLY_BYTES:
                raise ScannerUnavailable(
                    f"answer from clamd at {self.address} is too long: {quote(bytes(received))}")

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise ScannerUnavailable(
                f"answer from clamd at {self.address} is not text: {quote(raw)}") from None
