"""The managed clamd: the scanner ``xgate serve`` runs itself when no external clamd is set.

It writes a clamd.conf under ``data_dir/clamd/`` from the [scanning] settings and runs
Debian's clamd as a child on a unix socket there (``clamd -c CONF --foreground``).

What clamd puts on disk (ClamAV 1.4, seen with strace): every INSTREAM scan first writes
the whole stream, in plaintext, to ``TemporaryDirectory/clamav-<random>.tmp`` (mode 0600)
while receiving it, and deletes it after the scan; archives and mail inside it are unpacked
into ``TemporaryDirectory/<date>-scantemp.<random>/`` (mode 0700), also deleted after the
scan. Only a clamd killed in mid-scan leaves these behind, so we wipe them at every start and
stop. To keep plaintext off persistent disks, the temporary directory should be on a tmpfs;
we warn when it is not.

Signatures: the first of ``scanning.signature_dirs`` that holds a database; else the test
signatures (EICAR and ClamAV's test files only), with a loud warning, because then real
malware passes as clean; with no database at all, nothing starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from scanning.clamd_client import ClamdClient, ClientSettingsScanning, managed_socket_path
from scanning.errors import ManagedClamdError, ScannerUnavailable

log = logging.getLogger(__name__)

# File name suffixes of ClamAV databases that carry detections (not the ones that only
# ignore, allow-list or configure: .ign, .ign2, .fp, .sfp, .ftm, .cfg, .info).
DATABASE_SUFFIXES = frozenset({
    ".cvd", ".cld", ".cud", ".hdb", ".hsb", ".hdu", ".hsu", ".mdb", ".msb", ".mdu", ".msu",
    ".ndb", ".ndu", ".ldb", ".ldu", ".idb", ".cdb", ".cbc", ".pdb", ".gdb", ".wdb", ".yar",
    ".yara", ".db",
})
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107
# Real databases take clamd 10-30 s (and about 1 GiB of memory) to load; test ones 0.1 s.
DEFAULT_START_TIMEOUT = 120.0
_OUTPUT_LINES_KEPT = 40
_TMPFS_TYPES = frozenset({"tmpfs", "ramfs"})
# What clamd names its temporary files and directories (see the module docstring).
_CLAMD_TEMP_NAMES = re.compile(r"clamav-[0-9a-f]+\.tmp|\d{8}_\d{6}-scantemp\.[0-9a-f]+")


class ManagedSettingsScanning(ClientSettingsScanning, Protocol):
    @property
    def signature_dirs(self) -> Sequence[Path]: ...
    @property
    def test_signatures_dir(self) -> Path | None: ...
    @property
    def clamd_max_scan_size_mb(self) -> int: ...
    @property
    def clamd_max_file_size_mb(self) -> int: ...
    @property
    def clamd_max_recursion(self) -> int: ...
    @property
    def clamd_max_scan_time_seconds(self) -> int: ...


class _SmtpLimits(Protocol):
    @property
    def max_message_bytes(self) -> int: ...


class _Workers(Protocol):
    @property
    def processes(self) -> int: ...


class ManagedSettings(Protocol):
    """What the managed clamd reads of gateway.settings.Settings (a protocol, so that this
    package imports nothing from the gateway)."""

    @property
    def data_dir(self) -> Path: ...
    @property
    def scanning(self) -> ManagedSettingsScanning: ...
    @property
    def smtp(self) -> _SmtpLimits: ...
    @property
    def workers(self) -> _Workers: ...
    def resolve(self, path: Path) -> Path: ...


@dataclass(frozen=True)
class SignatureSource:
    directory: Path
    test_only: bool


def has_database(directory: Path) -> bool:
    try:
        return any(entry.suffix in DATABASE_SUFFIXES and entry.is_file()
                   and entry.stat().st_size > 0 for entry in directory.iterdir())
    except OSError:
        return False


def repository_test_signatures() -> Path | None:
    """``../shared/testdata/clamav`` beside a checkout (the directory holding ``gateway/``)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "gateway").is_dir():
        return None
    return root.parent / "shared" / "testdata" / "clamav"


def select_signatures(settings: ManagedSettings) -> SignatureSource:
    """Where the managed clamd loads signatures from; ManagedClamdError if nowhere.

    Cheap: ``xgate serve`` can call it before starting anything, to refuse at once.
    """
    scanning = settings.scanning
    for directory in scanning.signature_dirs:
        path = settings.resolve(directory)
        if has_database(path):
            return SignatureSource(path, test_only=False)
    if scanning.test_signatures_dir is not None:
        fallback: Path | None = settings.resolve(scanning.test_signatures_dir)
    else:
        fallback = repository_test_signatures()
    if fallback is not None and has_database(fallback):
        return SignatureSource(fallback, test_only=True)
    searched = [str(settings.resolve(d)) for d in scanning.signature_dirs]
    if fallback is not None:
        searched.append(f"{fallback} (test signatures)")
    raise ManagedClamdError(
        "no ClamAV signature database found in " + (", ".join(searched) or "(nowhere)")
        + ": without signatures nothing can be scanned. Run freshclam, or set "
        "scanning.signature_dirs, or point clamd_socket/clamd_host at a running clamd")


def find_clamd() -> str:
    # Debian puts clamd in /usr/sbin, which is not on an ordinary user's PATH.
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which("clamd", path=search)
    if found is None:
        raise ManagedClamdError("clamd not found (Debian package clamav-daemon); install it "
                                "or configure scanning.clamd_socket/clamd_host")
    return found


def filesystem_type(path: Path) -> str | None:
    """The type of the file system ``path`` is on ("tmpfs", "ext4"...), None if unknown."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return None
    target = path.resolve()
    best: tuple[int, str | None] = (-1, None)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts writes blanks and backslashes in mount points as octal escapes.
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]))
        if (point == target or point in target.parents) and len(point.parts) >= best[0]:
            best = (len(point.parts), fields[2])
    return best[1]


def default_temporary_dir(settings: ManagedSettings, workdir: Path) -> Path:
    """The configured directory, else one of this installation's own under /dev/shm."""
    configured = getattr(settings.scanning, "managed_temporary_dir", None)
    if configured is not None:
        return settings.resolve(Path(configured))
    tag = hashlib.sha256(os.fsencode(workdir.resolve())).hexdigest()[:12]
    # A fixed name on purpose (the same installation finds its leftovers); write_config
    # checks that it is a directory of ours before clamd uses it.
    return Path("/dev/shm") / f"xgate-clamd-{os.getuid()}-{tag}"  # noqa: S108


def _size_option(value_mb: int) -> str:
    return f"{value_mb}M"


class ManagedClamd:
    """clamd as a child process, configured from the settings.

    ``start()`` returns once clamd answers PING; ``stop()`` ends it. By default clamd also
    gets SIGTERM if the thread that started it ends (Linux's parent-death signal), so a
    killed gateway leaves no clamd behind holding the socket: start it from a thread that
    lives as long as it should (the main thread in ``run_clamd``), or pass
    ``die_with_parent=False``.
    """

    def __init__(self, settings: ManagedSettings, *, temporary_dir: Path | None = None,
                 clamd_binary: str | None = None,
                 start_timeout: float = DEFAULT_START_TIMEOUT,
                 die_with_parent: bool = True) -> None:
        self.settings = settings
        self.signatures = select_signatures(settings)
        self.binary = clamd_binary or find_clamd()
        self.workdir = settings.resolve(settings.data_dir) / "clamd"
        self.config_path = self.workdir / "clamd.conf"
        self.pid_file = self.workdir / "clamd.pid"
        self.socket_path = managed_socket_path(settings)
        # clamd writes every stream it scans there: memory only (see the module docstring).
        self.temporary_dir = temporary_dir or default_temporary_dir(settings, self.workdir)
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH_BYTES:
            raise ManagedClamdError(
                f"clamd's socket path {self.socket_path} is longer than "
                f"{MAX_SOCKET_PATH_BYTES} bytes, which unix sockets do not allow; set a "
                "shorter scanning.managed_socket (it may be absolute)")
        for path in (self.socket_path, self.temporary_dir, self.signatures.directory,
                     self.pid_file):
            if "\n" in str(path) or "\r" in str(path):
                raise ManagedClamdError(f"line break in path {path!r}")
        self._client = ClamdClient(socket_path=self.socket_path, timeout=5, max_concurrent=1)
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._output: deque[str] = deque(maxlen=_OUTPUT_LINES_KEPT)

    @property
    def uses_test_signatures(self) -> bool:
        return self.signatures.test_only

    @property
    def client(self) -> ClamdClient:
        """A client for health checks; scans should use ClamdClient.from_settings."""
        return self._client

    # -- configuration -----------------------------------------------------------------------

    def stream_max_length(self) -> int:
        # The largest thing the gateway streams is a whole message; parts and archive
        # members are smaller. Beyond this clamd answers "INSTREAM size limit exceeded",
        # which the client reports as a limit: UNSCANNABLE, not an outage.
        return self.settings.smtp.max_message_bytes

    def max_threads(self) -> int:
        # Each worker process scans at most max_concurrent_scans streams at once; more clamd
        # threads would idle, fewer would queue scans into the workers' timeouts.
        return max(1, self.settings.workers.processes * self.settings.scanning.max_concurrent_scans)

    def config_text(self) -> str:
        scanning = self.settings.scanning
        lines = [
            "# Written by xgate each time it starts the managed clamd; edits are overwritten.",
            "# The values come from [scanning] (and smtp.max_message_bytes) in xgate's",
            "# configuration. No User: clamd runs as the user that runs xgate.",
            f"LocalSocket {self.socket_path}",
            "LocalSocketMode 660",
            "FixStaleSocket yes",
            "Foreground yes",
            # No LogFile, no syslog: in the foreground clamd writes its log to stdout, which
            # we pass on to xgate's log.
            "LogSyslog no",
            "LogClean no",
            f"PidFile {self.pid_file}",
            f"DatabaseDirectory {self.signatures.directory}",
            # clamd writes each stream here while scanning it (module docstring).
            f"TemporaryDirectory {self.temporary_dir}",
            "LeaveTemporaryFiles no",
            f"StreamMaxLength {self.stream_max_length()}",
            f"MaxScanSize {_size_option(scanning.clamd_max_scan_size_mb)}",
            f"MaxFileSize {_size_option(scanning.clamd_max_file_size_mb)}",
            f"MaxRecursion {scanning.clamd_max_recursion}",
            f"MaxScanTime {scanning.clamd_max_scan_time_seconds * 1000}",
            f"MaxThreads {self.max_threads()}",
            # What ClamAV cannot look into must not pass as clean: encrypted content and
            # content over a limit are reported as Heuristics.Encrypted.* and
            # Heuristics.Limits.Exceeded.*, which the gateway treats as UNSCANNABLE.
            "AlertEncrypted yes",
            "AlertEncryptedArchive yes",
            "AlertEncryptedDoc yes",
            "AlertExceedsMax yes",
        ]
        return "\n".join(lines) + "\n"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o750)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The default is a predictable name in a shared directory: accept it only if it is a
        # real directory of ours, not a link someone planted to read what clamd writes.
        info = self.temporary_dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise ManagedClamdError(f"{self.temporary_dir} is not a directory owned by us")
        # Only the clamd user may read what it writes there (plaintext under scan).
        self.temporary_dir.chmod(0o700)
        self.config_path.write_text(self.config_text())
        self.config_path.chmod(0o640)
        return self.config_path

    def remove_leftovers(self) -> int:
        """Delete what a clamd killed in mid-scan left in the temporary directory (only
        clamd's own file names: the directory may be shared). Returns how many."""
        removed = 0
        try:
            entries = list(self.temporary_dir.iterdir())
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not _CLAMD_TEMP_NAMES.fullmatch(entry.name):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        return removed

    # -- the process -------------------------------------------------------------------------

    def start(self) -> None:
        """Start clamd and wait until it answers; ManagedClamdError if it does not."""
        if self.running:
            return
        if self.signatures.test_only:
            log.warning(
                "MANAGED CLAMD RUNS WITHOUT REAL VIRUS SIGNATURES: only the test signatures "
                "in %s are loaded (EICAR and ClamAV's test files); real malware is NOT "
                "detected. Install ClamAV's databases (freshclam) into one of "
                "scanning.signature_dirs.", self.signatures.directory)
        if self.socket_path.exists() and self._answers_ping():
            # Another clamd holds our socket; its answers would pass for ours.
            raise ManagedClamdError(f"a clamd already listens on {self.socket_path}; stop it "
                                    "or configure scanning.clamd_socket to use it")
        self.write_config()
        left = self.remove_leftovers()
        if left:
            log.warning("removed %d file(s) a previous clamd left in %s", left,
                        self.temporary_dir)
        fstype = filesystem_type(self.temporary_dir)
        if fstype not in _TMPFS_TYPES:
            # Plaintext must never reach the disk: refuse rather than scan through it.
            raise ManagedClamdError(
                f"clamd writes every scanned stream in plaintext to its temporary directory "
                f"{self.temporary_dir}, which is on {fstype or 'an unknown file system'}, "
                "not a tmpfs; set scanning.managed_temporary_dir to a directory on a tmpfs")
        self._output.clear()
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path), "--foreground"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=_parent_death_signal() if self.die_with_parent else None)
        assert self._process.stdout is not None
        self._reader = threading.Thread(target=self._pass_on_output,
                                        args=(self._process.stdout,),
                                        name="clamd-output", daemon=True)
        self._reader.start()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.info("managed clamd running (pid %d) on %s with %s signatures from %s",
                 self._process.pid, self.socket_path,
                 "TEST-ONLY" if self.signatures.test_only else "real",
                 self.signatures.directory)

    def _answers_ping(self) -> bool:
        try:
            self._client.ping(timeout=2)
        except ScannerUnavailable:
            return False
        return True

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self.returncode()
            if code is not None:
                if self._reader is not None:
                    # Its last lines say why; let the reader pass them on first.
                    self._reader.join(timeout=2)
                raise ManagedClamdError(f"clamd exited with status {code} while starting:\n"
                                        + self.output_tail())
            if self.socket_path.exists() and self._answers_ping():
                return
            if time.monotonic() > deadline:
                raise ManagedClamdError(f"clamd did not answer within {self.start_timeout:g} s "
                                        "of starting:\n" + self.output_tail())
            time.sleep(0.05)

    def _pass_on_output(self, stream: IO[bytes]) -> None:
        # Stream names are always "stream", so these lines carry no content or file names.
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._output.append(line)
            lowered = line.lower()
            if lowered.startswith(("error", "libclamav error")):
                level = logging.ERROR
            elif lowered.startswith(("warning", "libclamav warning")):
                level = logging.WARNING
            elif "database" in lowered or "signatures" in lowered:
                level = logging.INFO
            else:
                level = logging.DEBUG
            log.log(level, "clamd: %s", line, extra={"part": "clamd"})
        stream.close()

    def output_tail(self) -> str:
        """clamd's last lines of output (for errors)."""
        return "\n".join(self._output)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def returncode(self) -> int | None:
        """clamd's exit status once it has exited, else None."""
        return self._process.poll() if self._process is not None else None

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds``; removes what clamd left behind."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=grace_seconds)
                except subprocess.TimeoutExpired:
                    log.warning("clamd (pid %d) did not stop within %g s; killing it",
                                process.pid, grace_seconds)
                    process.kill()
                    process.wait()
            log.info("managed clamd stopped (exit status %d)", process.returncode)
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        self.remove_leftovers()
        self.pid_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            # Memory is finite: an empty directory of ours in /dev/shm goes with clamd.
            self.temporary_dir.rmdir()

    def health(self) -> dict[str, object]:
        """For /healthz and the admin page."""
        version: str | None = None
        if self.running:
            try:
                version = self._client.version(timeout=2)
            except ScannerUnavailable:
                version = None
        fstype = filesystem_type(self.temporary_dir)
        return {
            "running": self.running,
            "answering": version is not None,
            "pid": self.pid if self.running else None,
            "socket": str(self.socket_path),
            "signatures": "test only" if self.signatures.test_only else "real",
            "signature_dir": str(self.signatures.directory),
            "version": version,
            "temporary_dir": str(self.temporary_dir),
            "temporary_dir_on_tmpfs": None if fstype is None else fstype in _TMPFS_TYPES,
        }

    def __enter__(self) -> ManagedClamd:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _parent_death_signal() -> _SetParentDeathSignal | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    return _SetParentDeathSignal(prctl, os.getpid())


class _SetParentDeathSignal:
    """Runs in the child between fork and exec: SIGTERM to clamd when its parent dies.

    The C function is looked up before the fork, so the child only calls it.
    """

    PR_SET_PDEATHSIG = 1

    def __init__(self, prctl: Callable[..., object], parent: int) -> None:
        self.prctl = prctl
        self.parent = parent

    def __call__(self) -> None:
        self.prctl(self.PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != self.parent:
            # The parent died before prctl took effect.
            os.kill(os.getpid(), signal.SIGTERM)


def run_clamd(settings: ManagedSettings, stop: threading.Event | None = None) -> int:
    """``xgate serve clamd``: the managed clamd in the foreground until ``stop`` is set.

    Without ``stop``, SIGTERM and SIGINT stop it (this must then run in the main thread).
    Returns 0 after a requested stop, 1 if clamd could not start or died (the supervisor
    restarts the part; one that cannot start at all makes it give up).
    """
    if stop is None:
        stop = threading.Event()
        own_stop = stop

        def _handler(signum: int, _frame: object) -> None:
            log.info("received %s; stopping clamd", signal.Signals(signum).name)
            own_stop.set()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)
    try:
        clamd = ManagedClamd(settings)
        clamd.start()
    except ManagedClamdError as exc:
        log.error("managed clamd cannot run: %s", exc, extra={"part": "clamd"})
        return 1
    try:
        # A timed wait, so that signal handlers run promptly in the main thread.
        while not stop.wait(0.5):
            code = clamd.returncode()
            if code is not None:
                log.error("clamd exited with status %d:\n%s", code, clamd.output_tail(),
                          extra={"part": "clamd"})
                return 1
        return 0
    finally:
        clamd.stop()
