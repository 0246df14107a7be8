"""scanning.managed: the clamd that ``xgate serve`` runs itself, started for real."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanning.clamd_client import ClamdClient
from scanning.errors import ManagedClamdError, ScannerUnavailable
from scanning.managed import ManagedClamd, repository_test_signatures, run_clamd
from tests.support.clamd import (
    EICAR,
    EICAR_NAME,
    ROOT,
    TEST_SIGNATURES,
    RunningClamd,
    clamd_settings,
    short_temp_dir,
)
from tests.support.waiting import wait_until


@pytest.fixture
def base() -> Iterator[Path]:
    path = short_temp_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _config(text: str) -> dict[str, str]:
    options = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options[key] = value
    return options


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# -- configuration, without starting clamd ---------------------------------------------------


def test_generated_config(base: Path) -> None:
    settings = clamd_settings(base / "var", max_message_bytes=30_000_000,
                              clamd_max_scan_size_mb=300, clamd_max_file_size_mb=80,
                              clamd_max_recursion=12, clamd_max_scan_time_seconds=90,
                              max_concurrent_scans=3)
    settings.workers.processes = 2
    managed = ManagedClamd(settings)
    managed.write_config()
    options = _config(managed.config_path.read_text())
    workdir = base / "var" / "clamd"
    assert options == {
        "LocalSocket": str(workdir / "clamd.sock"),
        "LocalSocketMode": "660",
        "FixStaleSocket": "yes",
        "Foreground": "yes",
        "LogSyslog": "no",
        "LogClean": "no",
        "PidFile": str(workdir / "clamd.pid"),
        "DatabaseDirectory": str(TEST_SIGNATURES),
        "TemporaryDirectory": str(managed.temporary_dir),
        "LeaveTemporaryFiles": "no",
        "StreamMaxLength": "30000000",
        "MaxScanSize": "300M",
        "MaxFileSize": "80M",
        "MaxRecursion": "12",
        "MaxScanTime": "90000",
        "MaxThreads": "6",
        "AlertEncrypted": "yes",
        "AlertEncryptedArchive": "yes",
        "AlertEncryptedDoc": "yes",
        "AlertExceedsMax": "yes",
    }
    # No User (runs as whoever runs xgate), no log file.
    assert "User" not in options and "LogFile" not in options
    assert managed.temporary_dir.stat().st_mode & 0o777 == 0o700
    # Memory, not disk: clamd writes each scanned stream there.
    assert managed.temporary_dir.parent == Path("/dev/shm")
    assert managed.uses_test_signatures


def test_real_signatures_are_preferred(base: Path) -> None:
    real = base / "sigs"
    real.mkdir()
    shutil.copy(TEST_SIGNATURES / "xgate-test.ndb", real / "main.ndb")
    empty = base / "empty"
    empty.mkdir()
    settings = clamd_settings(base / "var", signature_dirs=[str(empty), str(real)])
    managed = ManagedClamd(settings)
    assert managed.signatures.directory == real
    assert not managed.uses_test_signatures
    assert managed.health()["signatures"] == "real"


def test_test_signatures_from_the_repository_when_none_configured(base: Path) -> None:
    empty = base / "empty"
    empty.mkdir()
    settings = clamd_settings(base / "var", signature_dirs=[str(empty)],
                              test_signatures_dir=None)
    managed = ManagedClamd(settings)
    assert managed.uses_test_signatures
    assert managed.signatures.directory == ROOT.parent / "shared" / "testdata" / "clamav"
    assert repository_test_signatures() == managed.signatures.directory
    assert managed.health()["signatures"] == "test only"


def test_no_database_anywhere_refuses(base: Path) -> None:
    empty = base / "empty"
    empty.mkdir()
    (empty / "freshclam.dat").write_bytes(b"not a database")
    settings = clamd_settings(base / "var", signature_dirs=[str(empty)],
                              test_signatures_dir=str(empty))
    with pytest.raises(ManagedClamdError, match="no ClamAV signature database") as caught:
        ManagedClamd(settings)
    assert str(empty) in str(caught.value)
    assert run_clamd(settings, threading.Event()) == 1


def test_socket_path_too_long_refuses(base: Path) -> None:
    settings = clamd_settings(base / "var", managed_socket="s" * 120 + "/clamd.sock")
    with pytest.raises(ManagedClamdError, match="longer than 107 bytes"):
        ManagedClamd(settings)


def test_leftovers_of_a_killed_clamd_are_removed(base: Path) -> None:
    managed = ManagedClamd(clamd_settings(base / "var"))
    managed.write_config()
    tmp = managed.temporary_dir
    (tmp / "clamav-0123456789abcdef0123456789abcdef.tmp").write_bytes(b"plaintext")
    (tmp / "20261123_080446-scantemp.f3646ca323").mkdir()
    (tmp / "20261123_080446-scantemp.f3646ca323" / "clamav-aa.tmp").write_bytes(b"member")
    (tmp / "not-clamds.txt").write_bytes(b"keep")
    assert managed.remove_leftovers() == 2
    assert [p.name for p in tmp.iterdir()] == ["not-clamds.txt"]


# -- running ------------------------------------------------------------------------------------


def test_start_scan_health_stop(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="scanning.managed"):
        clamd = RunningClamd.start(clamd_max_file_size_mb=1)
    try:
        assert "WITHOUT REAL VIRUS SIGNATURES" in caplog.text
        managed = clamd.managed
        health = managed.health()
        assert health["running"] is True and health["answering"] is True
        assert health["signatures"] == "test only"
        assert str(health["version"]).startswith("ClamAV 1.")
        assert oct(clamd.socket_path.stat().st_mode & 0o777) == oct(0o660)

        client = ClamdClient.from_settings(clamd.settings)
        assert client.instream(EICAR).infected == EICAR_NAME
        # Over MaxFileSize (1 MiB here): AlertExceedsMax makes it a limit, not "OK".
        answer = client.instream(os.urandom(1_500_000))
        assert answer.found == "Heuristics.Limits.Exceeded.MaxFileSize"
        assert answer.limit_exceeded
        assert answer.unscannable_reason == "Heuristics.Limits.Exceeded.MaxFileSize"
        assert answer.infected is None

        pid = managed.pid
        assert pid is not None
        managed.stop()
        assert not _pid_alive(pid)
        assert managed.health()["running"] is False
        assert not clamd.socket_path.exists()
        assert not managed.temporary_dir.exists()  # nothing left in memory either
    finally:
        clamd.close()


def test_clamd_stages_each_stream_in_its_temporary_directory() -> None:
    """Pins down what the README says about plaintext on disk: while clamd receives a stream
    it writes it to TemporaryDirectory, and deletes it after the scan."""
    clamd = RunningClamd.start()
    try:
        tmp = clamd.managed.temporary_dir
        secret = b"Kindeswohlgefaehrdung " * 100
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(clamd.socket_path))
            sock.sendall(b"zINSTREAM\0" + struct.pack("!L", len(secret)) + secret)

            def staged() -> list[Path]:
                return [p for p in tmp.iterdir() if p.name.startswith("clamav-")]

            wait_until(lambda: bool(staged()) and staged()[0].stat().st_size == len(secret),
                       timeout=5, what="clamd to write the stream to its temporary directory")
            assert staged()[0].read_bytes() == secret
            assert staged()[0].stat().st_mode & 0o777 == 0o600
            sock.sendall(struct.pack("!L", 0))
            assert sock.recv(100) == b"stream: OK\0"
        wait_until(lambda: not list(tmp.iterdir()), timeout=5,
                   what="clamd to delete the staged stream")
    finally:
        clamd.close()


def test_another_clamd_on_the_socket_is_refused() -> None:
    clamd = RunningClamd.start()
    try:
        second = ManagedClamd(clamd.settings)
        with pytest.raises(ManagedClamdError, match="already listens"):
            second.start()
        assert clamd.managed.running
    finally:
        clamd.close()


def test_clamd_failing_to_start_is_reported(base: Path) -> None:
    # A damaged database: clamd refuses to load it and exits during start-up.
    broken = base / "broken"
    broken.mkdir()
    (broken / "broken.ndb").write_text("this is not a signature\n")
    managed = ManagedClamd(clamd_settings(base / "var", signature_dirs=[str(broken)]))
    try:
        with pytest.raises(ManagedClamdError, match="exited with status") as caught:
            managed.start()
        assert "broken.ndb" in str(caught.value)
        assert not managed.running
    finally:
        managed.stop()


def test_run_clamd_until_stopped(base: Path) -> None:
    settings = clamd_settings(base / "var")
    stop = threading.Event()
    status: list[int] = []
    runner = threading.Thread(target=lambda: status.append(run_clamd(settings, stop)))
    runner.start()
    client = ClamdClient.from_settings(settings)
    try:
        wait_until(lambda: _answers(client), timeout=15, what="run_clamd's clamd to answer")
        assert client.instream(EICAR).infected == EICAR_NAME
    finally:
        stop.set()
        runner.join(timeout=15)
    assert status == [0]
    assert not _answers(client)


def _answers(client: ClamdClient) -> bool:
    try:
        client.ping(timeout=1)
    except ScannerUnavailable:
        return False
    return True


_RUNNER = textwrap.dedent("""
    import logging, sys
    from tests.support.clamd import clamd_settings
    from scanning.managed import run_clamd
    from pathlib import Path
    logging.basicConfig(level=logging.INFO)
    sys.exit(run_clamd(clamd_settings(Path(sys.argv[1]))))
""")


def _start_runner(data_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _RUNNER, str(data_dir)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_run_clamd_process_stops_on_sigterm(base: Path) -> None:
    data_dir = base / "var"
    runner = _start_runner(data_dir)
    try:
        client = ClamdClient.from_settings(clamd_settings(data_dir))
        wait_until(lambda: _answers(client), timeout=20, what="the clamd part to answer")
        pid = int((data_dir / "clamd" / "clamd.pid").read_text())
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=15) == 0
        assert not _pid_alive(pid)
    finally:
        runner.kill()
        runner.wait()


def test_clamd_dies_with_a_killed_runner(base: Path) -> None:
    data_dir = base / "var"
    runner = _start_runner(data_dir)
    try:
        client = ClamdClient.from_settings(clamd_settings(data_dir))
        wait_until(lambda: _answers(client), timeout=20, what="the clamd part to answer")
        pid = int((data_dir / "clamd" / "clamd.pid").read_text())
        runner.kill()
        runner.wait()
        # The parent-death signal: no orphaned clamd keeps the socket.
        wait_until(lambda: not _pid_alive(pid), timeout=10, what="the orphaned clamd to exit")
        time.sleep(0.1)
        assert not _answers(client)
    finally:
        runner.kill()
        runner.wait()


def test_refuses_a_temporary_directory_on_disk(base: Path) -> None:
    settings = clamd_settings(base / "var", managed_temporary_dir=str(base / "on-disk"))
    managed = ManagedClamd(settings)
    with pytest.raises(ManagedClamdError, match="not a tmpfs"):
        managed.start()
    assert not managed.running
