"""Scan a (decrypted) message: the gateway's own limits and type policy, then ClamAV.

Order matters. The MIME structure is bounded first (parts, nesting), because everything
after walks it. Each leaf part, decoded, is then checked against the type policy and, if it
is an archive, against the gateway's archive limits, before it is streamed to clamd: ClamAV
answers "OK" for archives it truncates or cannot open, so "nothing found" is only believed
within limits we checked ourselves. Finally the message as a whole goes to clamd too, which
parses mail itself and so gets a second look at anything our walk might have missed.

The first finding decides. ``ScannerUnavailable`` is not a verdict: it propagates, and the
pipeline keeps the message in the queue (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from email.message import Message

from gateway.settings import ScanningSettings
from scanning.clamd_client import ClamdAnswer, ClamdClient
from scanning.content_types import blocked_in_archive, blocked_type
from scanning.limits import ArchiveLimits, ArchiveRejected, check_archive
from scanning.parts import MimeLimits, Part, TooComplex, check_raw_structure, leaf_parts
from scanning.verdict import ScanResult, Verdict


def _answer_verdict(answer: ClamdAnswer, part: str | None) -> ScanResult | None:
    if answer.infected:
        return ScanResult(Verdict.INFECTED, answer.infected, part)
    if answer.unscannable_reason:
        return ScanResult(Verdict.UNSCANNABLE, answer.unscannable_reason, part)
    return None


class MessageScanner:
    def __init__(self, client: ClamdClient, settings: ScanningSettings) -> None:
        self.client = client
        self.settings = settings
        self.archive_limits = ArchiveLimits.from_settings(settings)
        self.mime_limits = MimeLimits.from_settings(settings)
        # clamd scans streams in parallel; the parts of one message go to it side by side,
        # up to the client's own bound on concurrent scans.
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_scans,
                                        thread_name_prefix="scan")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def scan(self, message: Message, raw: bytes) -> ScanResult:
        """The verdict on ``message`` (parsed) whose bytes are ``raw``."""
        too_complex = check_raw_structure(raw, self.mime_limits)
        if too_complex is not None:
            return ScanResult(Verdict.UNSCANNABLE, too_complex)
        try:
            parts = list(leaf_parts(message, self.mime_limits))
        except TooComplex as exc:
            return ScanResult(Verdict.UNSCANNABLE, str(exc))
        for part in parts:
            found = self._policy(part)
            if found is not None:
                return found
        jobs: list[tuple[str | None, Callable[[], ClamdAnswer]]] = [
            (part.path, self._stream(part.data)) for part in parts]
        jobs.append((None, self._stream(raw)))
        return self._run(jobs)

    def _policy(self, part: Part) -> ScanResult | None:
        blocked = blocked_type(part.data, part.filename, self.settings.blocked_types)
        if blocked is not None:
            return ScanResult(Verdict.BLOCKED, blocked, part.path)
        name = part.filename or part.path
        over = check_archive(part.data, name, self.archive_limits)
        if over is not None:
            return ScanResult(Verdict.UNSCANNABLE, over, part.path)
        # Executables and scripts mostly arrive zipped: look inside (within the limits just
        # checked, so this pass is bounded too).
        try:
            inside = blocked_in_archive(part.data, name, self.settings.blocked_types,
                                        self.archive_limits)
        except ArchiveRejected as exc:
            return ScanResult(Verdict.UNSCANNABLE, exc.reason, part.path)
        if inside is not None:
            return ScanResult(Verdict.BLOCKED, inside, part.path)
        return None

    def _stream(self, data: bytes) -> Callable[[], ClamdAnswer]:
        return lambda: self.client.instream(data)

    def _run(self, jobs: list[tuple[str | None, Callable[[], ClamdAnswer]]]) -> ScanResult:
        futures: list[tuple[str | None, Future[ClamdAnswer]]] = [
            (where, self._pool.submit(job)) for where, job in jobs]
        result: ScanResult | None = None
        error: BaseException | None = None
        for where, future in futures:
            try:
                answer = future.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rest
                error = error or exc
                continue
            if result is None:
                result = _answer_verdict(answer, where)
        # A finding stands even if another part's scan failed; otherwise a failure means no
        # verdict at all, and the caller fails closed.
        if result is not None:
            return result
        if error is not None:
            raise error
        return ScanResult(Verdict.CLEAN)
