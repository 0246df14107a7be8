"""Opening encrypted attachments for the scanner: the interface the gateway implements.

The scanner recognises encryption (``scanning.encrypted``) but holds no keys: that is the
gateway's business (its key directory, the master key, the pipeline's own S/MIME and
OpenPGP code). So the scanner asks an ``Opener``, passed in per message, and the answer is
one of three:

- ``Opened``: decrypted in memory; the content is scanned like any other part, within the
  same limits;
- ``Accepted``: not opened, and that is right (an outbound message that the sender's own
  client encrypted end to end for the partner); no finding, only a note;
- ``CannotOpen`` (raised): encrypted for a key we do not hold, with a password, or broken;
  the message is UNSCANNABLE with the reason.

``NoOpener`` opens nothing: what the scanner gets when nobody can decrypt (benchmarks, the
scanner on its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from scanning.encrypted import Encrypted


@dataclass(frozen=True)
class Opened:
    content: bytes = field(repr=False)  # plaintext: never logged
    # A MIME entity (S/MIME content) is walked part by part; otherwise one file.
    is_entity: bool
    note: str  # what was done, for the message's facts: "OpenPGP, key …; signature valid …"


@dataclass(frozen=True)
class Accepted:
    note: str


class CannotOpen(Exception):
    """The content stays encrypted: the reason says why, for the admin."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Opener(Protocol):
    def open(self, data: bytes, found: Encrypted, *, whole_message: bool) -> Opened | Accepted:
        """Decrypt ``data`` (recognised as ``found``); raise ``CannotOpen`` if we cannot.

        ``whole_message`` is true when ``data`` is the message's own top-level encryption
        rather than something attached to it.
        """
        ...


class NoOpener:
    def open(self, data: bytes, found: Encrypted, *, whole_message: bool) -> Opened | Accepted:
        raise CannotOpen(f"encrypted attachment: {found.description}, no key to open it")
