"""In-process OpenPGP with pysequoia (Sequoia-PGP): no gpg process per message.

What pysequoia 0.1.35 can and cannot tell us, found by experiment, shapes this module:

* ``pysequoia.decrypt`` returns all plaintext or raises: Sequoia checks the MDC before the
  call returns, so there is no partial output to discard. Messages with a Symmetrically
  Encrypted Data packet (no MDC) are rejected by Sequoia's policy; ``inspect_message`` refuses
  them first so the error is the same ``PgpNoIntegrity`` as with gpg.
* It reports neither the symmetric cipher nor the key that decrypted, and with a certificate
  store a message that is encrypted *and* compressed *and* signed (gpg's default output)
  fails with "Unexpected message structure". So gpg's usual output (PKESK v3 for RSA or
  Cv25519, SEIPD v1, AES) is not given to ``pysequoia.decrypt`` at all: ``crypto.pgp_session``
  opens it with ``cryptography`` primitives (checking the MDC, bounding decompression), and
  only the signed message inside goes to ``pysequoia.verify``, which handles compression.
  That path knows the cipher and the recipient key.
* Everything else (SEIPD v2, other ciphers or algorithms, keys it cannot read) goes to
  ``pysequoia.decrypt`` as before: with the store first and, when that cannot give a verdict,
  again without it for the plaintext. A signature inside such a message that is also
  compressed cannot be verified in-process; it goes to the ``fallback`` backend (GnuPG) if one
  is configured, otherwise it is reported as signed but not verifiable. The cipher is then
  reported only where the packet states it in the clear (SEIPD v2 / AEAD).
* ``pysequoia.encrypt`` falls back to *expired* encryption keys when a certificate has no live
  one; ``encrypt`` checks expiry and revocation itself first.
* Keys made by pysequoia (``crypto.pgp_keys.generate_key``) announce RFC 9580 SEIPD v2
  support, and pysequoia then encrypts to them with v6 PKESK + SEIPD v2, which GnuPG 2.2
  cannot read. This matters only where a GnuPG 2.2 backend holds such a key.
* Only *valid* signatures are reported. Why one failed is reconstructed from the issuer ids
  Sequoia asked the store for and the certificates we hold (unknown key, expired, revoked, else
  "bad signature").
* On pysequoia's path, output size cannot be bounded while decrypting (no streaming limit,
  and the GIL is held, so no reader thread can cut a pipe short): ``max_output`` is enforced
  on the result, which keeps oversized content out of the pipeline but does not cap the
  memory used by a decompression bomb. The in-process SEIPD v1 path does bound it while
  decompressing; for the rest, run workers under a memory limit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pysequoia
from pysequoia.packet import PacketPile, SignatureType, Tag

from crypto.pgp_backend import (
    DECRYPTION_FAILED,
    DEFAULT_MAX_OUTPUT,
    NO_INTEGRITY,
    REASON_BAD_SIGNATURE,
    REASON_KEY_EXPIRED,
    REASON_KEY_REVOKED,
    REASON_NO_SIGNATURE,
    REASON_SEVERAL_SIGNATURES,
    WILDCARD_KEY_ID,
    PgpBackend,
    PgpError,
    PgpKeyError,
    PgpMalformed,
    PgpNoIntegrity,
    PgpResult,
    PgpSignatureResult,
    PgpTooLarge,
    cipher_name,
    cleartext_body,
    inspect_message,
    normalise_text,
    read_message,
    reason_unknown_signer,
)
from crypto.pgp_keys import has_secret_material, key_packets
from crypto.pgp_packets import (
    TAG_LITERAL,
    TAG_ONE_PASS,
    TAG_SIGNATURE,
    PacketFormatError,
    literal_content,
    read_packets,
)
from crypto.pgp_secret_keys import DecryptionKey, decryption_keys
from crypto.pgp_session import SessionError, open_message

# pysequoia raises RuntimeError with Sequoia's message; these two come from its signature
# verification helper. Neither is taken as proof of integrity: after either, the message is
# decrypted again without the store, and only that run's success yields plaintext.
_NO_VALID_SIGNATURE = "no valid signatures found"
_UNEXPECTED_STRUCTURE = "Unexpected message structure"
_KEY_CACHE_SIZE = 32
_SIGNED_MESSAGE_TAGS = frozenset({TAG_LITERAL, TAG_ONE_PASS, TAG_SIGNATURE})
REASON_NOT_VERIFIABLE = (
    "signature inside a compressed encrypted message cannot be verified in-process")


@dataclass
class _CertFacts:
    """What Sequoia does not report about a certificate, read from its self-signatures."""

    primary: str  # upper-case primary fingerprint
    cert: pysequoia.Cert
    expires: dict[str, datetime | None] = field(default_factory=dict)  # per key fingerprint
    revoked_keys: set[str] = field(default_factory=set)
    encryption_keys: set[str] = field(default_factory=set)

    def problem(self, fpr: str, now: datetime) -> str | None:
        """Why key ``fpr`` of this certificate is not usable now (None if it is)."""
        if self.revoked_keys & {self.primary, fpr}:
            return REASON_KEY_REVOKED
        for key in (self.primary, fpr):
            expires = self.expires.get(key)
            if expires is not None and expires <= now:
                return REASON_KEY_EXPIRED
        return None


class _CertIndex:
    """The certificates handed in for one call, findable by fingerprint or key id."""

    def __init__(self, certs: Sequence[bytes]) -> None:
        self._by_id: dict[str, _CertFacts] = {}
        for data in certs:
            for facts in _parse_certs(data, "a verification certificate"):
                for fpr in [facts.primary, *facts.expires]:
                    self._by_id[fpr] = facts
                    self._by_id[fpr[-16:]] = facts
        self.asked: list[str] = []  # issuer ids Sequoia asked for, upper-case

    def find(self, key_id: str) -> _CertFacts | None:
        return self._by_id.get(key_id.upper())

    def store(self, ids: list[str]) -> list[pysequoia.Cert]:
        """The callback pysequoia calls with the issuers of the message's signatures."""
        found: list[pysequoia.Cert] = []
        for key_id in ids:
            self.asked.append(key_id.upper())
            facts = self.find(key_id)
            if facts is not None and facts.cert not in found:
                found.append(facts.cert)
        return found


def _parse_certs(data: bytes, what: str) -> list[_CertFacts]:
    try:
        return [_cert_facts(cert) for cert in pysequoia.Cert.split_bytes(data)]
    except RuntimeError:
        raise PgpKeyError(f"{what} is not an OpenPGP key") from None


# A tuple: pysequoia's enum values are not hashable.
_CERTIFICATIONS = (
    SignatureType.PositiveCertification, SignatureType.GenericCertification,
    SignatureType.CasualCertification, SignatureType.PersonaCertification,
    SignatureType.DirectKey,
)


def _cert_facts(cert: pysequoia.Cert) -> _CertFacts:
    """Expiry, revocation and encryption capability per key, from the newest binding
    self-signature of each (sub)key; Sequoia applies these but does not expose them."""
    facts = _CertFacts(cert.fingerprint.upper(), cert)
    if cert.is_revoked:
        facts.revoked_keys.add(facts.primary)
    current: str | None = None
    created: datetime | None = None
    newest: dict[str, datetime] = {}
    for packet in PacketPile.from_bytes(bytes(cert)):
        if packet.tag in (Tag.PublicKey, Tag.PublicSubkey):
            current, created = (packet.fingerprint or "").upper(), packet.key_created
            facts.expires.setdefault(current, None)
            continue
        if packet.tag != Tag.Signature or current is None:
            continue
        issuer = (packet.issuer_fingerprint or packet.issuer_key_id or "").upper()
        if not issuer or not facts.primary.endswith(issuer):
            continue  # only the certificate's own self-signatures count
        kind = packet.signature_type
        if kind == SignatureType.SubkeyRevocation:
            facts.revoked_keys.add(current)
            continue
        binding = (kind == SignatureType.SubkeyBinding if current != facts.primary
                   else kind in _CERTIFICATIONS)
        made = packet.signature_created or datetime.fromtimestamp(0, UTC)
        if not binding or (current in newest and newest[current] >= made):
            continue
        newest[current] = made
        period = packet.key_validity_period
        facts.expires[current] = created + period if created and period else None
        flags = packet.key_flags
        if flags is not None and (flags.transport_encryption or flags.storage_encryption):
            facts.encryption_keys.add(current)
        else:
            facts.encryption_keys.discard(current)
    # Sequoia's own reading of the primary's expiry takes precedence over ours.
    facts.expires[facts.primary] = cert.expiration
    return facts


class SequoiaBackend(PgpBackend):
    """``PgpBackend`` in-process; see the module docstring for what it cannot do."""

    name = "sequoia"

    def __init__(self, *, max_output: int = DEFAULT_MAX_OUTPUT,
                 fallback: PgpBackend | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.max_output = max_output
        self.fallback = fallback
        self._clock = clock or (lambda: datetime.now(UTC))
        # Parsed decryption keys by their exact bytes: building an RSA key costs ~1 ms, a
        # noticeable share of decrypting a 100 KB message. Bounded; holds nothing the caller
        # does not hand in on every call anyway.
        self._keys: dict[bytes, tuple[DecryptionKey, ...]] = {}
        self._keys_lock = threading.Lock()

    # --- decrypt ------------------------------------------------------------------------------

    def decrypt(self, data: bytes, secret_keys: Sequence[bytes],
                verify_certs: Sequence[bytes]) -> PgpResult:
        shape, binary = read_message(data)
        if shape.kind != "encrypted":
            raise PgpError(DECRYPTION_FAILED)
        if not shape.integrity_protected:
            raise PgpNoIntegrity(NO_INTEGRITY)
        wanted = set(shape.recipient_key_ids)
        index = _CertIndex(verify_certs)
        opened = self._decrypt_in_process(binary, secret_keys, index)
        if opened is not None:
            return opened
        for key_bytes in secret_keys:
            tsk, primary, key_ids = _load_secret(key_bytes)
            if wanted and WILDCARD_KEY_ID not in wanted and not wanted & key_ids:
                continue  # v3 PKESKs name their key; v6 ones and hidden recipients do not
            result = self._decrypt_with(data, tsk, primary, index)
            if result is None:
                continue
            if result.signature_reason == REASON_NOT_VERIFIABLE and self.fallback is not None:
                result = self._ask_fallback(data, key_bytes, verify_certs) or result
            return replace(result, cipher=result.cipher or shape.cipher)
        raise PgpError(DECRYPTION_FAILED)

    def _decrypt_in_process(self, binary: bytes, secret_keys: Sequence[bytes],
                            index: _CertIndex) -> PgpResult | None:
        """gpg's usual output (PKESK v3 + SEIPD v1, RSA or Cv25519, AES), opened with our own
        code (``crypto.pgp_session``) so that a signature inside compressed data can still be
        verified in-process. None for anything it does not handle: pysequoia's turn then."""
        keys: list[DecryptionKey] = []
        for key_bytes in secret_keys:
            found = self._keys.get(key_bytes)
            if found is None:
                found = tuple(decryption_keys(key_bytes))
                if not found:
                    _load_secret(key_bytes)  # PgpKeyError for what is not a secret key at all
                with self._keys_lock:
                    while len(self._keys) >= _KEY_CACHE_SIZE:
                        del self._keys[next(iter(self._keys))]  # the oldest entry
                    self._keys[key_bytes] = found
            keys.extend(found)
        if not keys:
            return None
        try:
            opened = open_message(binary, keys, self.max_output)
        except SessionError:
            raise PgpError(DECRYPTION_FAILED) from None
        if opened is None:
            return None
        result = self._read_opened(opened.packets, opened.key.primary_fingerprint, index)
        return replace(result, cipher=cipher_name(opened.cipher_algorithm))

    def _read_opened(self, stream: bytes, primary: str, index: _CertIndex) -> PgpResult:
        """The result for the (integrity-checked, decompressed) packets of a message: literal
        data, optionally with one-pass signature and signature packets around it.

        Nothing here falls back to pysequoia's decryption: that would decompress again,
        without a bound. A structure other than a plain or signed literal is refused as
        pysequoia refused it on the old path: with the uniform error.
        """
        try:
            packets = read_packets(stream)
            literals = [p for p in packets if p.tag == TAG_LITERAL]
            if len(literals) != 1 or {p.tag for p in packets} - _SIGNED_MESSAGE_TAGS:
                raise PacketFormatError("not a literal or signed message")
            content = literal_content(literals[0].body)
        except PacketFormatError:
            raise PgpError(DECRYPTION_FAILED) from None
        if len(packets) == 1:
            return self._result(content, primary, _Sig())
        if len(content) > self.max_output:
            raise PgpTooLarge(f"decrypted content exceeds {self.max_output} bytes; refused")
        index.asked.clear()
        try:
            checked = pysequoia.verify(bytes=stream, store=index.store)
        except RuntimeError as exc:
            if _signature_verdict(exc) is None:
                raise PgpError(DECRYPTION_FAILED) from None
            sig = self._failure(index)
        else:
            sig = self._valid(index, checked)
            if sig.valid:
                content = checked.bytes or b""
            elif not sig.signed:
                sig = self._failure(index)
        return self._result(content, primary, sig)

    def _decrypt_with(self, data: bytes, tsk: pysequoia.Tsk, primary: str,
                      index: _CertIndex) -> PgpResult | None:
        """The result, or None if this key cannot decrypt ``data`` (or it is damaged)."""
        index.asked.clear()
        try:
            first = pysequoia.decrypt(data, decryptor=tsk.decryptor(), store=index.store)
        except RuntimeError as exc:
            verdict = _signature_verdict(exc)
            if verdict is None:
                return None  # not ours to decrypt, or damaged: the caller fails uniformly
        else:
            return self._result(first.bytes or b"", primary, self._valid(index, first))
        # Sequoia got as far as judging signatures; decrypt again without the store for the
        # plaintext. Only this pass's success proves integrity.
        try:
            second = pysequoia.decrypt(data, decryptor=tsk.decryptor())
        except RuntimeError:
            return None
        if not index.asked:
            sig = _Sig()
        elif verdict == _UNEXPECTED_STRUCTURE:
            sig = _Sig(signed=True, key_id=_key_id(index.asked[0]), reason=REASON_NOT_VERIFIABLE)
        else:
            sig = self._failure(index)
        return self._result(second.bytes or b"", primary, sig)

    def _ask_fallback(self, data: bytes, key: bytes,
                      verify_certs: Sequence[bytes]) -> PgpResult | None:
        """The fallback's verdict on a signature pysequoia cannot check, if it has one."""
        assert self.fallback is not None
        try:
            return self.fallback.decrypt(data, [key], verify_certs)
        except (PgpNoIntegrity, PgpTooLarge, PgpKeyError):
            raise
        except PgpError:
            # E.g. gpg 2.2 cannot read SEIPD v2: keep our own (decrypted, unverified) result.
            return None

    def _result(self, plaintext: bytes, primary: str, sig: _Sig) -> PgpResult:
        if len(plaintext) > self.max_output:
            raise PgpTooLarge(f"decrypted content exceeds {self.max_output} bytes; refused")
        return PgpResult(
            plaintext=plaintext, signed=sig.signed, signature_valid=sig.valid,
            signer_fingerprint=sig.primary, signing_key_fingerprint=sig.signing,
            signer_key_id=sig.key_id, signature_reason=sig.reason,
            recipient_fingerprint=primary, engine=self.name,
        )

    # --- verify -------------------------------------------------------------------------------

    def verify(self, data: bytes, signature: bytes | None,
               certs: Sequence[bytes]) -> PgpSignatureResult:
        index = _CertIndex(certs)
        if signature is not None:
            return self._verify_detached(data, signature, index)
        shape = inspect_message(data)
        if shape.kind == "encrypted":
            raise PgpMalformed("an encrypted message, not a signed one")
        if shape.kind not in ("signed", "cleartext"):
            raise PgpMalformed("not a signed OpenPGP message")
        cleartext = shape.kind == "cleartext"
        try:
            checked = pysequoia.verify(data, store=index.store)
        except RuntimeError as exc:
            if _signature_verdict(exc) is None:
                raise PgpMalformed("not a signed OpenPGP message") from None
            content = cleartext_body(data) if cleartext else _literal_content(data)
            sig = self._failure(index) if index.asked else _Sig()
        else:
            sig = self._valid(index, checked)
            content = checked.bytes or b""
            if cleartext:
                content = normalise_text(content)
        if len(content) > self.max_output:
            raise PgpTooLarge(f"signed content exceeds {self.max_output} bytes; refused")
        return _signature_result(content, sig, self.name)

    def _verify_detached(self, data: bytes, signature: bytes,
                         index: _CertIndex) -> PgpSignatureResult:
        if inspect_message(signature).kind != "signature":
            raise PgpMalformed("not an OpenPGP signature")
        try:
            sig_packet = pysequoia.Sig.from_bytes(signature)
        except RuntimeError:
            raise PgpMalformed("not an OpenPGP signature") from None
        try:
            checked = pysequoia.verify(data, store=index.store, signature=sig_packet)
        except RuntimeError:
            if not index.asked:
                issuer = sig_packet.issuer_fingerprint or sig_packet.issuer_key_id
                index.asked.append((issuer or "").upper())
            return _signature_result(data, self._failure(index), self.name)
        return _signature_result(data, self._valid(index, checked), self.name)

    # --- produce ------------------------------------------------------------------------------

    def encrypt(self, data: bytes, recipients: Sequence[bytes], signer: bytes | None, *,
                armor: bool = True) -> bytes:
        if not recipients:
            raise PgpKeyError("no recipients")
        certs: list[pysequoia.Cert] = []
        now = self._clock()
        for cert_bytes in recipients:
            for facts in _parse_certs(cert_bytes, "a recipient certificate"):
                # pysequoia falls back to expired encryption keys when no live one is left;
                # the gateway must not encrypt to a key its owner has retired.
                if not any(facts.problem(fpr, now) is None for fpr in facts.encryption_keys):
                    raise PgpKeyError(f"certificate {facts.primary} has no usable encryption "
                                      "key (expired, revoked or none)")
                certs.append(facts.cert)
        signing = _signer(signer) if signer is not None else None
        try:
            return pysequoia.encrypt(data, recipients=certs, signer=signing, armor=armor)
        except RuntimeError as exc:
            raise PgpKeyError(f"cannot encrypt: {_first_line(exc)}") from None

    def sign_detached(self, data: bytes, signer: bytes) -> bytes:
        try:
            return pysequoia.sign(_signer(signer), data, mode=pysequoia.SignatureMode.DETACHED,
                                  armor=True)
        except RuntimeError as exc:
            raise PgpKeyError(f"cannot sign: {_first_line(exc)}") from None

    # --- signature verdicts -------------------------------------------------------------------

    def _valid(self, index: _CertIndex, decrypted: pysequoia.Decrypted) -> _Sig:
        sigs = decrypted.valid_sigs
        if not sigs:
            return _Sig()
        signing = str(sigs[0].signing_key).upper()
        signer = index.find(str(sigs[0].certificate))
        others = {i for i in index.asked if index.find(i) is not signer}
        if len(sigs) != 1 or others or signer is None:
            # A good signature next to another one must not launder the other.
            return _Sig(signed=True, key_id=signing[-16:], reason=REASON_SEVERAL_SIGNATURES)
        # Sequoia judges keys at the signature's creation time; like gpg (EXPKEYSIG,
        # REVKEYSIG) we also refuse keys that are expired or revoked *now*: the creation time
        # is the signer's claim, and a retired key must not keep producing valid mail.
        problem = signer.problem(signing, self._clock())
        if problem:
            return _Sig(signed=True, key_id=signing[-16:], reason=problem)
        return _Sig(True, True, signer.primary, signing, signing[-16:], None)

    def _failure(self, index: _CertIndex) -> _Sig:
        issuer = index.asked[0] if index.asked else ""
        key_id = _key_id(issuer) if issuer else None
        signer = index.find(issuer) if issuer else None
        if signer is None:
            return _Sig(signed=True, key_id=key_id, reason=reason_unknown_signer(key_id))
        fpr = issuer if len(issuer) == 40 else next(
            (f for f in signer.expires if f.endswith(issuer)), signer.primary)
        return _Sig(signed=True, key_id=key_id,
                    reason=signer.problem(fpr, self._clock()) or REASON_BAD_SIGNATURE)


@dataclass(frozen=True)
class _Sig:
    signed: bool = False
    valid: bool = False
    primary: str | None = None
    signing: str | None = None
    key_id: str | None = None
    reason: str | None = None


def _signature_result(content: bytes, sig: _Sig, engine: str) -> PgpSignatureResult:
    return PgpSignatureResult(
        signed=sig.signed, valid=sig.valid, content=content,
        signer_fingerprint=sig.primary, signing_key_fingerprint=sig.signing,
        signer_key_id=sig.key_id,
        reason=None if sig.valid else (sig.reason if sig.signed else REASON_NO_SIGNATURE),
        engine=engine,
    )


def _signature_verdict(exc: RuntimeError) -> str | None:
    text = str(exc)
    for marker in (_NO_VALID_SIGNATURE, _UNEXPECTED_STRUCTURE):
        if marker in text:
            return marker
    return None


def _load_secret(data: bytes) -> tuple[pysequoia.Tsk, str, set[str]]:
    # Tsk.from_bytes also accepts a public key (and only fails later), so look for the
    # secret packets ourselves: a missing secret is a configuration error, not a bad message.
    if not has_secret_material(data):
        raise PgpKeyError("a secret key has no secret key material")
    try:
        tsk = pysequoia.Tsk.from_bytes(data)
    except RuntimeError:
        raise PgpKeyError("a secret key is not an OpenPGP key") from None
    ids = {(p.key_id or "").upper() for p in key_packets(data) if p.key_id}
    return tsk, tsk.extract_certificate().fingerprint.upper(), ids


def _signer(data: bytes) -> pysequoia.PySigner:
    tsk, _, _ = _load_secret(data)
    try:
        return tsk.signer()
    except RuntimeError:
        raise PgpKeyError("the signing key has no usable signing (sub)key") from None


def _key_id(issuer: str) -> str:
    return issuer[-16:].upper()


def _literal_content(data: bytes) -> bytes:
    """The literal data of a signed message whose signature did not verify."""
    try:
        packets = PacketPile.from_bytes(data)
    except RuntimeError:
        return b""
    return b"".join(p.literal_data or b"" for p in packets if p.tag == Tag.Literal)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
