"""Why a signature that is present failed, said so that a person can act on it.

The verifiers (crypto.smime_verify, the OpenPGP backends) answer in their own words; this
sorts those words into the few problems people need to tell apart (altered content, an
expired or revoked certificate, no trusted chain, a signer who is not the sender, an
unknown key) and says each one precisely: in English for the quarantine reason, the notices
and the audit trail, in German and English for the warning a recipient reads. (The
X-Xgate-Signature-Reason header keeps the verifier's own words.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from crypto import smime_verify
from crypto.pgp_backend import (
    REASON_BAD_SIGNATURE,
    REASON_KEY_EXPIRED,
    REASON_KEY_REVOKED,
    REASON_SEVERAL_SIGNATURES,
    REASON_SIGNATURE_EXPIRED,
)
from crypto.pgp_sequoia import REASON_NOT_VERIFIABLE

_KIND_NAMES = {"smime": "S/MIME", "openpgp": "OpenPGP"}
# The verify stages' own words for a valid signature by someone other than the author.
NOT_THE_SENDER = "does not name the sender"
UNKNOWN_SIGNER_PREFIX = "unknown signer key"


class Problem(StrEnum):
    TAMPERED = "tampered"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REVOKED = "revoked"
    UNTRUSTED = "untrusted"
    NOT_THE_SENDER = "not-the-sender"
    UNKNOWN_SIGNER = "unknown-signer"
    SIGNATURE_EXPIRED = "signature-expired"
    # The gateway cannot check this signature (its own limit, not the sender's fault):
    # it proves nothing either way, like no signature at all.
    UNVERIFIABLE = "unverifiable"
    OTHER = "other"


_SMIME_PROBLEMS = {
    smime_verify.REASON_SIGNATURE: Problem.TAMPERED,
    smime_verify.REASON_DIGEST: Problem.TAMPERED,
    smime_verify.REASON_EXPIRED: Problem.EXPIRED,
    smime_verify.REASON_NOT_YET_VALID: Problem.NOT_YET_VALID,
    smime_verify.REASON_REVOKED: Problem.REVOKED,
    smime_verify.REASON_NO_CHAIN: Problem.UNTRUSTED,
}
_OPENPGP_PROBLEMS = {
    REASON_BAD_SIGNATURE: Problem.TAMPERED,
    REASON_KEY_EXPIRED: Problem.EXPIRED,
    REASON_KEY_REVOKED: Problem.REVOKED,
    REASON_SIGNATURE_EXPIRED: Problem.SIGNATURE_EXPIRED,
    REASON_NOT_VERIFIABLE: Problem.UNVERIFIABLE,
    REASON_SEVERAL_SIGNATURES: Problem.UNVERIFIABLE,
}


@dataclass(frozen=True)
class SignatureFailure:
    kind: str | None  # "smime", "openpgp"
    problem: Problem
    detail: str  # the verifier's own words
    at: datetime | None = None  # when it expired, was revoked, becomes valid

    @property
    def fails(self) -> bool:
        """Whether the signature was checked and failed (tampering, a broken certificate),
        rather than left unchecked by a limit of the gateway."""
        return self.problem is not Problem.UNVERIFIABLE

    @property
    def _what(self) -> str:
        return "signing key" if self.kind == "openpgp" else "certificate"

    @property
    def _was(self) -> str:
        return "der Signaturschlüssel" if self.kind == "openpgp" else "das Zertifikat"

    @property
    def reason(self) -> str:
        """Precise, in English: for the quarantine reason, the notices and the audit trail."""
        on = f" on {self.at:%Y-%m-%d}" if self.at else ""
        match self.problem:
            case Problem.TAMPERED:
                return f"tampered: the content was altered after signing ({self.detail})"
            case Problem.EXPIRED:
                return f"{self._what} expired{on}"
            case Problem.NOT_YET_VALID:
                return f"{self._what} not yet valid" + (
                    f" (valid from {self.at:%Y-%m-%d})" if self.at else "")
            case Problem.REVOKED:
                return f"{self._what} revoked{on}"
            case Problem.UNTRUSTED:
                return "no chain to a trusted CA"
            case Problem.UNKNOWN_SIGNER:
                key_id = self.detail.removeprefix(UNKNOWN_SIGNER_PREFIX).strip()
                return f"unknown OpenPGP signer key {key_id}"
            case _:
                return self.detail

    @property
    def summary(self) -> str:
        """The quarantine reason: which signature, and why it fails."""
        return f"{_KIND_NAMES.get(self.kind or '', 'the')} signature fails: {self.reason}"

    @property
    def german(self) -> str:
        """The same reason for a German reader."""
        on = f" am {self.at:%d.%m.%Y}" if self.at else ""
        match self.problem:
            case Problem.TAMPERED:
                return "der Inhalt wurde nach dem Signieren verändert"
            case Problem.EXPIRED:
                return f"{self._was} ist{on} abgelaufen"
            case Problem.NOT_YET_VALID:
                since = f" erst ab dem {self.at:%d.%m.%Y}" if self.at else " noch nicht"
                return f"{self._was} ist{since} gültig"
            case Problem.REVOKED:
                return f"{self._was} wurde{on} widerrufen"
            case Problem.UNTRUSTED:
                return "das Zertifikat führt zu keiner vertrauenswürdigen Zertifizierungsstelle"
            case Problem.NOT_THE_SENDER:
                return f"{self._was} nennt nicht die Absenderadresse"
            case Problem.UNKNOWN_SIGNER:
                return "der Signaturschlüssel ist dem Gateway nicht bekannt"
            case Problem.SIGNATURE_EXPIRED:
                return "die Signatur ist abgelaufen"
            case Problem.UNVERIFIABLE:
                return "das Gateway kann diese Signatur nicht prüfen"
            case _:
                return f"die Prüfung ergab: {self.detail}"


def classify(kind: str | None, detail: str, at: datetime | None = None) -> SignatureFailure:
    """Sort a verifier's reason (``detail``) for a failing signature of ``kind``."""
    if NOT_THE_SENDER in detail:
        problem = Problem.NOT_THE_SENDER
    elif kind == "openpgp" and detail.startswith(UNKNOWN_SIGNER_PREFIX):
        problem = Problem.UNKNOWN_SIGNER
    else:
        table = _OPENPGP_PROBLEMS if kind == "openpgp" else _SMIME_PROBLEMS
        problem = table.get(detail, Problem.OTHER)
    return SignatureFailure(kind, problem, detail, at)
