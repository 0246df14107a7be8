"""The partner form's fields, as typed in and as the key directory's functions take them.

Only the shape is checked here (a choice from the lists, the patterns split into lines); every
rule about a partner (names, patterns, plaintext only for the non-sensitive) is
gateway.keydir.partners', which the CLI and the JSON API call too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from gateway.keydir.errors import KeyDirError
from gateway.keydir.models import InvalidSignature, Partner
from gateway.settings import OutboundPolicy

FLAGS = ("smime_gcm", "openpgp_inline", "inbound_require_encryption",
         "inbound_require_signature", "non_sensitive")
POLICIES = tuple(p.value for p in OutboundPolicy)
INVALID_SIGNATURE = tuple(a.value for a in InvalidSignature)
MAX_NOTE = 2000


@dataclass
class PartnerForm:
    name: str = ""
    patterns: str = ""
    outbound_policy: str = OutboundPolicy.EITHER.value
    inbound_invalid_signature: str = InvalidSignature.QUARANTINE.value
    note: str = ""
    flags: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(FLAGS, False))

    @classmethod
    def read(cls, form: FormData) -> PartnerForm:
        def get(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""
        return cls(name=get("name"), patterns=get("patterns"),
                   outbound_policy=get("outbound_policy"),
                   inbound_invalid_signature=get("inbound_invalid_signature"),
                   note=get("note"), flags={f: get(f) == "on" for f in FLAGS})

    @classmethod
    def of(cls, partner: Partner) -> PartnerForm:
        return cls(name=partner.name,
                   patterns="\n".join(p.pattern for p in partner.patterns),
                   outbound_policy=partner.outbound_policy.value,
                   inbound_invalid_signature=partner.inbound_invalid_signature.value,
                   note=partner.note, flags={f: bool(getattr(partner, f)) for f in FLAGS})

    def pattern_list(self) -> list[str]:
        # One a line, or separated by commas or blanks as people paste them.
        return [p for p in re.split(r"[\s,;]+", self.patterns) if p]

    def policy(self) -> dict[str, Any]:
        """The policy as keyword arguments of add_partner and update_partner."""
        if self.outbound_policy not in POLICIES:
            raise KeyDirError(f"unknown outbound policy {self.outbound_policy!r}",
                              "unknown-choice")
        if self.inbound_invalid_signature not in INVALID_SIGNATURE:
            raise KeyDirError("unknown choice for an invalid signature "
                              f"{self.inbound_invalid_signature!r}", "unknown-choice")
        if len(self.note) > MAX_NOTE:
            raise KeyDirError(f"the note is too long (at most {MAX_NOTE} characters)",
                              "note-too-long", limit=MAX_NOTE)
        return {"outbound_policy": OutboundPolicy(self.outbound_policy),
                "inbound_invalid_signature": InvalidSignature(self.inbound_invalid_signature),
                "note": self.note, **self.flags}
