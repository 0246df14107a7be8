"""``PgpBackend`` over a GnuPG home owned by the gateway (python-gnupg, one gpg per call).

Keys arrive with every call, as for the in-process backend; they are imported into the home
first (idempotently; a digest cache skips re-imports). The home accumulates keys over time, so
the results are checked against the keys *of this call*: a message decrypted by a secret key
that was not handed in fails like any other, and a signature by a certificate that was not
handed in counts as "unknown signer". Secret keys imported here are stored by gpg-agent in
the home, unprotected: the home must be as well guarded as the database's key material.

gpg's output is discarded unless the status lines prove full success (``crypto.openpgp``).
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from crypto.openpgp import (
    MAX_OUTPUT_EXCEEDED,
    OpenPgpKeyring,
    SigFacts,
    parse_status,
    signature_facts,
)
from crypto.pgp_backend import (
    DECRYPTION_FAILED,
    DEFAULT_MAX_OUTPUT,
    NO_INTEGRITY,
    REASON_NO_SIGNATURE,
    PgpBackend,
    PgpError,
    PgpKeyError,
    PgpMalformed,
    PgpNoIntegrity,
    PgpResult,
    PgpSignatureResult,
    PgpTooLarge,
    cleartext_body,
    inspect_message,
    normalise_text,
    reason_unknown_signer,
)
from crypto.pgp_keys import key_packets

# --compress-algo none: a peer verifying in-process (pysequoia) cannot check a signature
#   inside a compressed encrypted message, and compressing before encrypting buys nothing
#   for mail that is mostly already-compressed attachments.
# Cipher and digest preferences: AES and SHA-2 only (BSI TR-02102-1), strongest first; gpg
#   still honours what the recipient's key says it supports.
_ENCRYPT_OPTIONS = [
    "--compress-algo", "none",
    "--personal-cipher-preferences", "AES256 AES192 AES",
    "--personal-digest-preferences", "SHA512 SHA384 SHA256",
]
_SIGN_OPTIONS = ["--digest-algo", "SHA512"]


@dataclass(frozen=True)
class _Key:
    fingerprint: str
    has_secret: bool
    key_ids: frozenset[str]  # primary and subkey ids, upper-case


class GnupgBackend(PgpBackend):
    """``PgpBackend`` running gpg over ``home``."""

    name = "gnupg"

    def __init__(self, home: Path, *, gpg_binary: str = "gpg",
                 max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        self.keyring = OpenPgpKeyring(home, gpg_binary=gpg_binary, max_output=max_output)
        self.max_output = max_output
        self._imported: dict[bytes, tuple[_Key, ...]] = {}
        self._lock = threading.Lock()

    def decrypt(self, data: bytes, secret_keys: Sequence[bytes],
                verify_certs: Sequence[bytes]) -> PgpResult:
        shape = inspect_message(data)
        if shape.kind != "encrypted":
            raise PgpError(DECRYPTION_FAILED)
        if not shape.integrity_protected:
            raise PgpNoIntegrity(NO_INTEGRITY)
        secrets = self._import(secret_keys, secret=True)
        if not secrets:
            raise PgpError(DECRYPTION_FAILED)
        certs = self._import(verify_certs)
        result = self.keyring.decrypt(data)
        if result.recipient_fingerprint not in {k.fingerprint for k in secrets}:
            raise PgpError(DECRYPTION_FAILED)
        facts = _restrict(_facts_of(result), certs)
        return replace(
            result, signed=facts.signed, signature_valid=facts.valid,
            signer_fingerprint=facts.primary_fpr, signing_key_fingerprint=facts.signing_fpr,
            signer_key_id=facts.key_id, signature_reason=facts.reason)

    def verify(self, data: bytes, signature: bytes | None,
               certs: Sequence[bytes]) -> PgpSignatureResult:
        keys = self._import(certs)
        if signature is not None:
            if inspect_message(signature).kind != "signature":
                raise PgpMalformed("not an OpenPGP signature")
            facts = self._verify_detached(data, signature)
            if not facts.signed:
                raise PgpMalformed("not an OpenPGP signature")
            return _signature_result(data, _restrict(facts, keys))
        shape = inspect_message(data)
        if shape.kind == "encrypted":
            raise PgpMalformed("an encrypted message, not a signed one")
        if shape.kind not in ("signed", "cleartext"):
            raise PgpMalformed("not a signed OpenPGP message")
        content, facts = self._verify_inline(data)
        if shape.kind == "cleartext":
            content = normalise_text(content) if facts.valid else cleartext_body(data)
        return _signature_result(content, _restrict(facts, keys))

    def encrypt(self, data: bytes, recipients: Sequence[bytes], signer: bytes | None, *,
                armor: bool = True) -> bytes:
        if not recipients:
            raise PgpKeyError("no recipients")
        fingerprints = [k.fingerprint for k in self._import(recipients)]
        signer_fpr = self._signer(signer) if signer is not None else None
        result = self.keyring.gpg.encrypt(
            data, fingerprints, sign=signer_fpr, always_trust=True, armor=armor,
            extra_args=list(_ENCRYPT_OPTIONS))
        keywords = {line.keyword for line in parse_status(result.stderr or "")}
        if not result.ok or "END_ENCRYPTION" not in keywords:
            raise PgpKeyError(f"cannot encrypt: {result.status or 'gpg failed'}")
        return bytes(result.data)

    def sign_detached(self, data: bytes, signer: bytes) -> bytes:
        result = self.keyring.gpg.sign(
            data, keyid=self._signer(signer), detach=True, binary=False,
            extra_args=list(_SIGN_OPTIONS))
        if result.status != "signature created" or not result.data:
            raise PgpKeyError(f"cannot sign: {result.status or 'gpg failed'}")
        return bytes(result.data)

    # --- gpg runs -----------------------------------------------------------------------------

    def _verify_detached(self, data: bytes, signature: bytes) -> SigFacts:
        # gpg reads the data from stdin; the signature has to be a file. It is not secret,
        # and the home is private to the gateway anyway.
        with tempfile.NamedTemporaryFile(dir=self.keyring.home, suffix=".sig") as sig_file:
            sig_file.write(signature)
            sig_file.flush()
            result = self.keyring.gpg.verify_data(sig_file.name, data)
        return signature_facts(parse_status(result.stderr or ""))

    def _verify_inline(self, data: bytes) -> tuple[bytes, SigFacts]:
        # gpg --decrypt on a signed (not encrypted) message writes the content and verifies.
        result = self.keyring.gpg.decrypt(
            data, extra_args=["--max-output", str(self.max_output)])
        stderr = result.stderr or ""
        if MAX_OUTPUT_EXCEEDED in stderr:
            raise PgpTooLarge(f"signed content exceeds {self.max_output} bytes; refused")
        status = parse_status(stderr)
        keywords = {line.keyword for line in status}
        facts = signature_facts(status)
        if "BEGIN_DECRYPTION" in keywords or (not facts.signed and result.returncode != 0):
            raise PgpMalformed("not a signed OpenPGP message")
        return bytes(result.data or b""), facts

    # --- keys ---------------------------------------------------------------------------------

    def _import(self, keys: Sequence[bytes], *, secret: bool = False) -> list[_Key]:
        found: list[_Key] = []
        for data in keys:
            digest = hashlib.sha256(data).digest()
            with self._lock:
                cached = self._imported.get(digest)
            if cached is None:
                try:
                    imported = self.keyring.import_keys_detailed(data)
                except PgpError:
                    raise PgpKeyError("a key handed in is not an OpenPGP key") from None
                ids = frozenset((p.key_id or "").upper() for p in key_packets(data) if p.key_id)
                cached = tuple(_Key(k.fingerprint, k.has_secret, ids) for k in imported)
                with self._lock:
                    self._imported[digest] = cached
            if secret and not any(k.has_secret for k in cached):
                raise PgpKeyError("a secret key has no secret key material")
            found.extend(k for k in cached if k.has_secret or not secret)
        return found

    def _signer(self, signer: bytes) -> str:
        return self._import([signer], secret=True)[0].fingerprint


def _facts_of(result: PgpResult) -> SigFacts:
    return SigFacts(result.signed, result.signature_valid, result.signer_fingerprint,
                    result.signing_key_fingerprint, result.signer_key_id,
                    result.signature_status, result.signature_reason)


def _restrict(facts: SigFacts, certs: list[_Key]) -> SigFacts:
    """Count only signatures by the certificates of this call; the home holds more."""
    if not facts.signed:
        return facts
    known_fpr = facts.primary_fpr in {k.fingerprint for k in certs}
    known_id = (facts.key_id or "").upper() in {i for k in certs for i in k.key_ids}
    if (facts.valid and known_fpr) or (not facts.valid and known_id):
        return facts
    return SigFacts(True, False, None, None, facts.key_id, facts.status,
                    reason_unknown_signer(facts.key_id))


def _signature_result(content: bytes, facts: SigFacts) -> PgpSignatureResult:
    return PgpSignatureResult(
        signed=facts.signed, valid=facts.valid, content=content,
        signer_fingerprint=facts.primary_fpr, signing_key_fingerprint=facts.signing_fpr,
        signer_key_id=facts.key_id,
        reason=facts.reason if facts.signed else REASON_NO_SIGNATURE,
        engine=GnupgBackend.name,
    )
