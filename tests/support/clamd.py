"""A real clamd for the tests: Debian's clamd with the test signatures, on a unix socket in a
temporary directory, run by the product's own ManagedClamd.

``shared_clamd()`` starts one for the whole test session on first use (about 0.1 s with the
test signatures) and stops it when the session ends. Tests that need clamd down use
``shared_clamd().stopped()``, which starts it again afterwards. Tests that need other
limits start a private one with ``RunningClamd.start(...)``.

Also here: ``ClamdProxy``, a unix-socket relay in front of a real clamd that can drop
connections and hold answers back (a flaky or slow network, not a fake clamd), and
``encrypted_zip``, since neither Python's zipfile nor the packages the set-up installs can
write an encrypted zip.
"""

from __future__ import annotations

import atexit
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.settings import Settings, load_settings
from scanning.clamd_client import ClamdClient
from scanning.managed import ManagedClamd
from tests.support.sockets import pipe

ROOT = Path(__file__).resolve().parents[2]
TEST_SIGNATURES = ROOT.parent / "shared" / "testdata" / "clamav"
# Debian's clamav-testfiles: harmless files the test signatures detect (clam.exe's hash).
CLAMAV_TESTFILES = Path("/usr/share/clamav-testfiles")
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Xgate.Test.EICAR.UNOFFICIAL"
TESTFILE_NAME = "Xgate.Test.ClamAV-TestFile.UNOFFICIAL"
# smtp.max_message_bytes, and so clamd's StreamMaxLength, for the test clamd: large enough
# for any test message, small enough that going over it costs nothing.
TEST_STREAM_MAX_BYTES = 8 * 1024 * 1024


def clamd_settings(data_dir: Path, *, max_message_bytes: int = TEST_STREAM_MAX_BYTES,
                   **scanning: Any) -> Settings:
    """Settings for a managed clamd under ``data_dir`` with the test signatures."""
    options: dict[str, Any] = {"signature_dirs": [],
                               "test_signatures_dir": str(TEST_SIGNATURES)}
    options.update(scanning)
    return load_settings(None, data_dir=str(data_dir), scanning=options,
                         smtp={"max_message_bytes": max_message_bytes})


def short_temp_dir(prefix: str = "xgate-clamd-") -> Path:
    # Not pytest's tmp_path: unix socket paths are limited to 107 bytes.
    return Path(tempfile.mkdtemp(prefix=prefix))


class RunningClamd:
    """A started ManagedClamd and the directory it lives in."""

    def __init__(self, managed: ManagedClamd, base: Path) -> None:
        self.managed = managed
        self.base = base

    @classmethod
    def start(cls, *, max_message_bytes: int = TEST_STREAM_MAX_BYTES,
              **scanning: Any) -> RunningClamd:
        base = short_temp_dir()
        try:
            settings = clamd_settings(base / "var", max_message_bytes=max_message_bytes,
                                      **scanning)
            managed = ManagedClamd(settings, start_timeout=30)
            managed.start()
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        return cls(managed, base)

    @property
    def settings(self) -> Settings:
        settings = self.managed.settings
        assert isinstance(settings, Settings)
        return settings

    @property
    def socket_path(self) -> Path:
        return self.managed.socket_path

    def client(self, **kwargs: Any) -> ClamdClient:
        kwargs.setdefault("timeout", 10)
        return ClamdClient(socket_path=self.socket_path, **kwargs)

    def stop(self) -> None:
        self.managed.stop()

    def start_again(self) -> None:
        self.managed.start()

    def restart(self) -> None:
        self.stop()
        self.start_again()

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """clamd is down inside the block, and running again after it, whatever happened."""
        self.stop()
        try:
            yield
        finally:
            self.start_again()

    def close(self) -> None:
        self.managed.stop()
        shutil.rmtree(self.base, ignore_errors=True)


_shared: RunningClamd | None = None
_shared_lock = threading.Lock()


def shared_clamd() -> RunningClamd:
    """The session's clamd, started on first use and stopped when the interpreter exits."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RunningClamd.start()
            atexit.register(_shared.close)
        elif not _shared.managed.running:
            # A test stopped it without stopped(), or it died: the next test gets it back.
            _shared.start_again()
        return _shared


# -- a relay between client and clamd ---------------------------------------------------------


class ClamdProxy:
    """Listens on a unix socket and relays each connection to a real clamd.

    ``drop_next``: that many next connections are closed at once, unanswered.
    ``hold``: while clear, clamd's answers are kept back (requests still pass).
    ``connections`` counts the connections accepted.
    """

    def __init__(self, target: Path, directory: Path) -> None:
        self.target = target
        self.path = directory / f"proxy-{secrets.token_hex(4)}.sock"
        self.drop_next = 0
        self.hold = threading.Event()
        self.hold.set()
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(64)
        threading.Thread(target=self._accept, name="clamd-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                drop = self.drop_next > 0
                if drop:
                    self.drop_next -= 1
            if drop:
                conn.close()
                continue
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.target))
            forward = threading.Thread(target=pipe, args=(client, upstream), daemon=True)
            forward.start()
            # clamd's answers wait for ``hold``; requests pass at once.
            pipe(upstream, client, self.hold)
        except OSError:
            pass
        finally:
            upstream.close()
            client.close()

    def close(self) -> None:
        self.hold.set()
        self._server.close()
        self.path.unlink(missing_ok=True)


# -- an encrypted zip (traditional PKWARE encryption, "ZipCrypto") ----------------------------


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


class _ZipCrypto:
    def __init__(self, password: bytes) -> None:
        self.keys = [0x12345678, 0x23456789, 0x34567890]
        for byte in password:
            self._update(byte)

    def _crc(self, crc: int, byte: int) -> int:
        return _CRC[(crc ^ byte) & 0xFF] ^ (crc >> 8)

    def _update(self, byte: int) -> None:
        k = self.keys
        k[0] = self._crc(k[0], byte)
        k[1] = ((k[1] + (k[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k[2] = self._crc(k[2], k[1] >> 24)

    def encrypt(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            temp = (self.keys[2] | 2) & 0xFFFF
            out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
            self._update(byte)
        return bytes(out)


def encrypted_zip(name: str, content: bytes, password: bytes = b"secret") -> bytes:
    """A zip archive holding ``content`` as ``name``, stored and password-encrypted."""
    crc = zlib.crc32(content)
    cipher = _ZipCrypto(password)
    # 11 random bytes, then the CRC's high byte, which unzip uses to check the password.
    header = secrets.token_bytes(11) + bytes([crc >> 24])
    body = cipher.encrypt(header) + cipher.encrypt(content)
    encoded = name.encode()
    flags, method, mtime, mdate = 0x0001, 0, 0, (2024 - 1980) << 9 | 1 << 5 | 1
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, mtime, mdate, crc,
                        len(body), len(content), len(encoded), 0) + encoded
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, mtime,
                          mdate, crc, len(body), len(content), len(encoded), 0, 0, 0, 0, 0,
                          0) + encoded
    offset = len(local) + len(body)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0)
    return local + body + central + end


def large_message_clamd(max_message_bytes: int) -> RunningClamd:
    """A clamd of its own for tests of 50 MB attachments: its stream limit takes
    ``max_message_bytes``, and its file and scan limits the decoded attachment and what it
    inflates to (the session's clamd stops at 8 MiB, which would make these unscannable)."""
    return RunningClamd.start(max_message_bytes=max_message_bytes, clamd_max_file_size_mb=100,
                              clamd_max_scan_size_mb=400)
