"""Scan a (decrypted) message: the gateway's own limits, type policy and encryption check,
then ClamAV on every part.

The MIME structure is bounded first (parts, nesting), because everything after walks it.
Each leaf part, decoded, is then looked at by the gateway itself:

- the type policy (executables, scripts, macros), also for the members of archives;
- the archive limits: ClamAV answers "OK" for archives it truncates or cannot open, so
  "nothing found" is only believed within limits we checked ourselves;
- encryption, by content (``scanning.encrypted``): what the gateway can decrypt with its own
  keys (an OpenPGP or S/MIME attachment, at any depth, also inside an archive) is opened in
  memory by the ``Opener`` and its content walked like any other part, within the same
  limits; what it cannot open is UNSCANNABLE, because ClamAV sees only ciphertext.

Every part, whatever the gateway found in it, goes to clamd as soon as it is decoded, so that
clamd works while the gateway decodes and examines the next part. A second stream shows clamd
what the parts do not: the message without the leaf bodies it already saw decoded
(``scanning.residue``: headers, preambles, epilogues, whatever the walk left undecoded); a
message too complex to walk goes to clamd whole. Nothing short-circuits: the verdict is the
most severe finding over all parts (INFECTED over UNSCANNABLE over BLOCKED), and every
finding is listed, so an admin sees "infected, and a blocked executable", never only the
type.

``ScannerUnavailable`` is not a verdict: it propagates, and the pipeline keeps the message
in the queue (fail closed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser

from scanning.archives import ArchiveLimits, ArchiveRejected, iter_members
from scanning.clamd_client import ClamdAnswer, ClamdClient
from scanning.config import ScannerConfig
from scanning.content_types import blocked_type
from scanning.deferred import MEMBER_SURVEY, DeferredPart
from scanning.encrypted import Encrypted, encryption_of
from scanning.errors import ScanInterrupted
from scanning.opening import Accepted, CannotOpen, NoOpener, Opener
from scanning.parts import (
    Leaf,
    MimeLimits,
    Part,
    TooComplex,
    check_raw_structure,
    leaf_parts,
    scan_leaves,
)
from scanning.residue import residue_chunks
from scanning.verdict import Finding, ScanResult, Verdict

_SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
# File-name endings an encrypted file carries; the decrypted file is named without them.
_ENCRYPTED_SUFFIXES = (".pgp", ".gpg", ".asc", ".p7m")
# Enough to tell an admin what is wrong with one archive; the verdict is the same.
_MAX_FINDINGS_PER_PART = 10


def _answer_finding(answer: ClamdAnswer, part: str | None) -> Finding | None:
    if answer.infected:
        return Finding(Verdict.INFECTED, answer.infected, part)
    if answer.unscannable_reason:
        return Finding(Verdict.UNSCANNABLE, answer.unscannable_reason, part)
    return None


# A stream handed to clamd: where it comes from (None for the message itself) and the answer.
_Job = tuple[str | None, Future[ClamdAnswer]]


@dataclass
class _Walk:
    """One message's scan in progress: what to give clamd, what was found and opened."""

    opener: Opener
    whole_sections: frozenset[str]  # the sections that are the message's own encryption
    parts_left: int
    decrypted_left: int
    findings: list[Finding] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)


class MessageScanner:
    def __init__(self, client: ClamdClient, config: ScannerConfig | None = None) -> None:
        self.client = client
        self.config = config or ScannerConfig()
        self.archive_limits: ArchiveLimits = self.config.archive
        self.mime_limits: MimeLimits = self.config.mime
        # clamd scans streams in parallel; the parts of one message go to it side by side,
        # up to the client's own bound on concurrent scans.
        self._pool = ThreadPoolExecutor(max_workers=self.config.max_concurrent_scans,
                                        thread_name_prefix="scan")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def scan(self, message: Message, raw: bytes, opener: Opener | None = None, *,
             structure_checked: bool = False) -> ScanResult:
        """The verdict on ``message`` (parsed) whose bytes are ``raw``.

        ``opener`` decrypts what the gateway holds keys for; without one, every encrypted
        part is UNSCANNABLE. ``structure_checked``: the caller found ``raw`` within the
        limits by ``check_raw_structure(raw, self.mime_limits)`` already (the pipeline's
        parse stages do, before the parser sees it), so it is not read once more here.
        """
        too_complex = None if structure_checked else check_raw_structure(raw, self.mime_limits)
        if too_complex is not None:
            # No walk, but clamd still sees the whole: malware outranks "too complex".
            return self._verdict([self._whole(raw)],
                                 [Finding(Verdict.UNSCANNABLE, too_complex)], [])
        jobs: list[_Job] = []
        leaves: list[Leaf] = []
        try:
            for leaf in scan_leaves(message, self.mime_limits, raw):
                # clamd starts on this part while the next one is decoded.
                leaves.append(leaf)
                jobs.append(self._submit(leaf.part))
        except TooComplex as exc:
            # What was sent so far is no verdict (leaf_parts' rule); the whole message is.
            for _, future in jobs:
                future.cancel()
            return self._verdict([self._whole(raw)],
                                 [Finding(Verdict.UNSCANNABLE, exc.reason)], [])
        spans = [leaf.span for leaf in leaves if leaf.span is not None]
        jobs.append((None, self._pool.submit(
            self.client.instream_chunks, lambda: residue_chunks(raw, spans))))
        parts = [leaf.part for leaf in leaves]
        walk = _Walk(opener or NoOpener(), _whole_sections(message),
                     parts_left=self.mime_limits.max_parts - len(parts),
                     decrypted_left=self.archive_limits.max_uncompressed_bytes)
        queue = deque((part, 0) for part in parts)
        while queue:
            part, level = queue.popleft()
            if level > 0:
                jobs.append(self._submit(part))  # decrypted content, new to clamd
            for label, data, name, found in self._examine(part, walk):
                whole = level == 0 and part.section in walk.whole_sections and label == part.path
                queue.extend((inner, level + 1) for inner in
                             self._open(label, data, name, found, level, whole, part, walk))
        return self._verdict(jobs, walk.findings, walk.opened)

    # --- the gateway's own look at one part --------------------------------------------------

    def _examine(self, part: Part | DeferredPart,
                 walk: _Walk) -> Iterator[tuple[str, bytes, str | None, Encrypted]]:
        """Type policy, archive limits and encryption for ``part`` and its archive members.

        Findings go to ``walk``; what is encrypted is yielded (label, data, file name, kind)
        for the caller to open.
        """
        if isinstance(part, DeferredPart):
            # Surveyed: none of the checks below can find anything in it (scanning.deferred).
            return
        found: list[Finding] = []
        blocked = blocked_type(part.data, part.filename, self.config.blocked_types)
        if blocked is not None:
            found.append(Finding(Verdict.BLOCKED, blocked, part.path))
        encrypted = encryption_of(part.data)
        if encrypted is not None:
            yield part.path, part.data, part.filename, encrypted
        # Executables, scripts and encrypted files mostly arrive zipped: look inside, in
        # the same one walk that checks the archive limits (decompressing once). What the
        # members showed counts only if the whole archive is within the limits; an archive
        # over a limit is that one finding, and nothing in it is opened.
        name = part.filename or part.path
        members_found: list[Finding] = []
        encrypted_members: list[tuple[str, bytes, str | None, Encrypted]] = []
        try:
            for path, content in iter_members(part.data, name, self.archive_limits,
                                              surveyor=MEMBER_SURVEY):
                if len(found) + len(members_found) >= _MAX_FINDINGS_PER_PART:
                    continue  # enough to tell; the walk goes on for the limits
                member_name = path.rsplit("/", 1)[-1]
                reason = blocked_type(content, member_name, self.config.blocked_types)
                if reason is not None:
                    members_found.append(
                        Finding(Verdict.BLOCKED, f"{reason} in {path}", part.path))
                inside = encryption_of(content)
                if inside is not None:
                    encrypted_members.append(
                        (f"{part.path} > {path}", content, member_name, inside))
        except ArchiveRejected as exc:
            found.append(Finding(Verdict.UNSCANNABLE, exc.reason, part.path))
        else:
            yield from encrypted_members
            found.extend(members_found)
        walk.findings.extend(found)

    def _open(self, label: str, data: bytes, name: str | None, found: Encrypted, level: int,
              whole: bool, part: Part | DeferredPart, walk: _Walk) -> list[Part]:
        """The parts inside ``data`` once opened; [] with a finding if it cannot be opened."""
        def unscannable(reason: str) -> list[Part]:
            walk.findings.append(Finding(Verdict.UNSCANNABLE, reason, label))
            return []

        if not found.openable:
            return unscannable(f"encrypted attachment: {found.description}")
        if level + 1 > self.archive_limits.max_depth:
            return unscannable(f"encrypted content nested deeper than "
                               f"{self.archive_limits.max_depth} levels")
        try:
            answer = walk.opener.open(found.der or data, found, whole_message=whole)
        except CannotOpen as exc:
            return unscannable(exc.reason)
        if isinstance(answer, Accepted):
            walk.opened.append(f"{label}: {answer.note}")
            return []
        content = answer.content
        walk.decrypted_left -= len(content)
        if walk.decrypted_left < 0:
            return unscannable(f"decrypted content larger than "
                               f"{self.archive_limits.max_uncompressed_bytes} bytes")
        ratio = self.archive_limits.max_compression_ratio
        if len(content) > self.archive_limits.ratio_floor_bytes \
                and len(content) > ratio * max(len(data), 1):
            return unscannable(f"decrypted content expands more than {ratio} times")
        walk.opened.append(f"{label}: {answer.note}")
        if not answer.is_entity:
            walk.parts_left -= 1
            if walk.parts_left < 0:
                return unscannable(f"more than {self.mime_limits.max_parts} MIME parts")
            inner = _decrypted_name(name)
            return [Part(f"{label} > decrypted {inner}", "application/octet-stream", inner,
                         content, f"{part.section}>")]
        remaining = MimeLimits(max_parts=max(walk.parts_left, 1),
                               max_depth=self.mime_limits.max_depth)
        reason = check_raw_structure(content, remaining)
        if reason is not None:
            return unscannable(f"{reason} (inside the decrypted content)")
        entity = BytesParser().parsebytes(content)
        try:
            inner_parts = list(leaf_parts(entity, remaining))
        except TooComplex as exc:
            return unscannable(f"{exc.reason} (inside the decrypted content)")
        walk.parts_left -= len(inner_parts)
        return [Part(f"{label} > {inner.path}", inner.content_type, inner.filename,
                     inner.data, f"{part.section}>{inner.section}") for inner in inner_parts]

    # --- clamd -------------------------------------------------------------------------------

    def _submit(self, part: Part | DeferredPart) -> _Job:
        if isinstance(part, DeferredPart):
            return part.path, self._pool.submit(self.client.instream_chunks, part.body.pieces)
        return part.path, self._pool.submit(self.client.instream, part.data)

    def _whole(self, raw: bytes) -> _Job:
        return None, self._pool.submit(self.client.instream, raw)

    def _verdict(self, jobs: list[_Job], findings: list[Finding],
                 opened: list[str]) -> ScanResult:
        found = list(findings)
        error: BaseException | None = None
        for where, future in jobs:
            try:
                answer = future.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rest
                # A scan clamd dropped or hung on outranks clamd being unreachable for the
                # others: the message is counted for it (gateway.pipeline.stages.scan).
                if error is None or (isinstance(exc, ScanInterrupted)
                                     and not isinstance(error, ScanInterrupted)):
                    error = exc
                continue
            finding = _answer_finding(answer, where)
            if finding is not None:
                found.append(finding)
        # Malware found stands even if another part's scan failed: it cannot become less
        # severe. Anything else needs every answer, or there is no verdict and the caller
        # fails closed.
        if error is not None and not any(f.verdict == Verdict.INFECTED for f in found):
            raise error
        return ScanResult.of(found, opened)


def _whole_sections(message: Message) -> frozenset[str]:
    """The leaf sections that carry the message's own encryption, not an attachment's."""
    content_type = message.get_content_type()
    if content_type == "multipart/encrypted":
        return frozenset({"1", "2"})  # PGP/MIME: version part and the ciphertext
    if not message.is_multipart() or content_type in _SMIME_TYPES:
        return frozenset({"1"})  # application/pkcs7-mime, or inline PGP in the only body
    return frozenset()


def _decrypted_name(name: str | None) -> str:
    if not name:
        return "content"
    lower = name.lower()
    for suffix in _ENCRYPTED_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name
