"""S/MIME (CMS, RFC 5652) decryption for mail addressed to our mailboxes.

Accepted: EnvelopedData with AES-128/256-CBC and AuthEnvelopedData (RFC 5083/5084) with
AES-128/256-GCM, the content-encryption key transported to an RSA key with PKCS#1 v1.5 or
RSAES-OAEP (KeyTransRecipientInfo). Everything else is refused with a domain error.

Padding-oracle policy: once the structure has parsed, every failure on the decryption path
(wrong key, bad PKCS#1 padding, bad OAEP, wrong CEK length, bad CBC padding, GCM tag) raises
``DecryptionFailed("decryption failed")``. A failed RSA unwrap never ends the attempt early:
the content is decrypted with a random key instead (RFC 3218 section 2.3.2), so the outcome
and the amount of work do not tell an attacker which step rejected the message.

Known limit of CBC (EnvelopedData has no integrity): a flipped bit that does not break the
padding yields altered plaintext, and a wrong key yields valid padding with probability about
1/256. Only AuthEnvelopedData (GCM) detects tampering reliably.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message

# asn1crypto ships no type information; its values are Any to mypy.
from asn1crypto import cms, core  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crypto.cms_common import GcmParameters, entity_body, entity_headers, identifies
from crypto.errors import CryptoError

PrivateKey = PrivateKeyTypes
Recipient = tuple[x509.Certificate, PrivateKey]


class SmimeError(CryptoError):
    """An S/MIME message could not be decrypted."""


class MalformedMessage(SmimeError):
    """The input is not a parseable CMS / S/MIME encrypted structure."""


class UnsupportedAlgorithm(SmimeError):
    """The message uses an algorithm or recipient type we refuse or have no code for."""


class NoMatchingRecipient(SmimeError):
    """None of the message's recipient infos names one of our certificates."""


class DecryptionFailed(SmimeError):
    """Uniform failure after parsing; deliberately carries no detail (padding-oracle safety)."""


_DECRYPTION_FAILED = "decryption failed"


@dataclass(frozen=True)
class DecryptResult:
    plaintext: bytes
    content_algorithm: str  # e.g. "aes256-gcm", "aes128-cbc"
    key_transport: str  # "rsaes-pkcs1-v1_5" or "rsaes-oaep"
    recipient_fingerprint: str  # SHA-256 of the matched certificate's DER, lower-case hex

    def __repr__(self) -> str:  # plaintext is mail content: keep it out of logs
        return (
            f"DecryptResult({self.content_algorithm}, {self.key_transport}, "
            f"recipient={self.recipient_fingerprint}, {len(self.plaintext)} bytes)"
        )


# asn1crypto name -> (our name, key length in bytes, is AEAD)
_CONTENT_ALGORITHMS: dict[str, tuple[str, int, bool]] = {
    "aes128_cbc": ("aes128-cbc", 16, False),
    "aes256_cbc": ("aes256-cbc", 32, False),
    "aes128_gcm": ("aes128-gcm", 16, True),
    "aes256_gcm": ("aes256-gcm", 32, True),
}
# Named explicitly so the refusal says what was wrong instead of "unsupported".
_REFUSED_CONTENT_ALGORITHMS: dict[str, str] = {
    "tripledes_3key": "3DES is not accepted",
    "des": "DES is not accepted",
    "rc2": "RC2 is not accepted",
    "rc5": "RC5 is not accepted",
}
_RECIPIENT_TYPE_NAMES = {
    "kari": "key agreement (e.g. ECDH)",
    "kekri": "pre-shared key-encryption key",
    "pwri": "password",
    "ori": "other recipient info",
}
_OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class _Content:
    algorithm: str
    key_len: int
    aead: bool
    iv: bytes
    ciphertext: bytes
    tag: bytes
    aad: bytes


# A recipient info of the message that names one of our keys, with that key.
_Candidate = tuple[cms.KeyTransRecipientInfo, x509.Certificate, rsa.RSAPrivateKey]


def decrypt_cms(der: bytes, recipients: Sequence[Recipient]) -> DecryptResult:
    """Decrypt a DER (or BER) ContentInfo holding EnvelopedData or AuthEnvelopedData.

    ``recipients`` are all (certificate, private key) pairs we hold for the mailbox; several
    are normal during key rollover. Raises a ``SmimeError`` subclass on any failure.
    """
    content, candidates, unsupported = _structure(_parse(der), recipients)
    if not candidates:
        if unsupported:
            raise UnsupportedAlgorithm(
                "no code for this recipient type: " + ", ".join(sorted(unsupported))
            )
        raise NoMatchingRecipient("message is not addressed to any of our keys")
    # Every matching (recipient info, key) pair is tried in full; the first whose content
    # decrypts wins. Normally there is exactly one candidate.
    for ktri, cert, key in candidates:
        transport, cek = _unwrap_cek(ktri, key, content.key_len)
        plaintext = _decrypt_content(content, cek)
        if plaintext is not None:
            return DecryptResult(
                plaintext=plaintext,
                content_algorithm=content.algorithm,
                key_transport=transport,
                recipient_fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            )
    raise DecryptionFailed(_DECRYPTION_FAILED)


def decrypt_smime_message(raw_mime: bytes, recipients: Sequence[Recipient], *,
                          headers: Message | None = None) -> DecryptResult:
    """Decrypt an RFC 8551 application/pkcs7-mime entity (headers plus encoded body).
    ``headers`` are its header fields if the caller read them already (``entity_headers``)."""
    entity = headers if headers is not None else entity_headers(raw_mime)
    # x-pkcs7-mime is the pre-RFC 5751 spelling that OpenSSL's `smime` command still emits.
    if entity.get_content_type() not in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        raise MalformedMessage(
            f"not an S/MIME encrypted entity: content type {entity.get_content_type()}"
        )
    smime_type = str(entity.get_param("smime-type", "") or "").lower()
    # smime-type is optional in practice; when present it must announce encryption, so a
    # signed-data or compressed-data entity gets a clear error instead of a CMS type error.
    if smime_type and smime_type not in ("enveloped-data", "authenveloped-data"):
        raise MalformedMessage(f"S/MIME entity is {smime_type}, not encrypted")
    try:
        body = entity_body(raw_mime, entity)
    except ValueError as exc:
        raise MalformedMessage(f"S/MIME entity body: {exc}") from None
    if not body:
        raise MalformedMessage("S/MIME entity has no body")
    return decrypt_cms(body, recipients)


def _parse(der: bytes) -> cms.EnvelopedData | cms.AuthEnvelopedData:
    try:
        # strict: the outer length must cover the input exactly, so a truncated or padded
        # envelope fails here. The inside is parsed lazily, field by field as it is read
        # (``_structure``), not as a whole: ``.native`` of the whole tree costs more than
        # all the fields that are used.
        info = cms.ContentInfo.load(der, strict=True)
        content_type = info["content_type"].native
        envelope = info["content"]
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise MalformedMessage(f"not a valid CMS structure: {exc}") from None
    if content_type not in ("enveloped_data", "authenticated_enveloped_data"):
        raise MalformedMessage(f"CMS content is {content_type}, not encrypted")
    if not isinstance(envelope, (cms.EnvelopedData, cms.AuthEnvelopedData)):
        raise MalformedMessage("CMS content does not match its content type")
    return envelope


def _structure(
    envelope: cms.EnvelopedData | cms.AuthEnvelopedData, recipients: Sequence[Recipient]
) -> tuple[_Content, list[_Candidate], set[str]]:
    """Every field the decryption uses, read before any key is: garbage or truncation inside
    is reported as malformed here, never later as a failed decryption."""
    try:
        content = _content(envelope)
        candidates, unsupported = _candidates(envelope["recipient_infos"], recipients)
        for ktri, _, _ in candidates:
            _ = ktri["encrypted_key"].native
            _ = ktri["key_encryption_algorithm"]["parameters"].native
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise MalformedMessage(f"not a valid CMS structure: {exc}") from None
    return content, candidates, unsupported


def _content(envelope: cms.EnvelopedData | cms.AuthEnvelopedData) -> _Content:
    authenticated = isinstance(envelope, cms.AuthEnvelopedData)
    info = envelope["auth_encrypted_content_info" if authenticated else "encrypted_content_info"]
    algorithm = info["content_encryption_algorithm"]
    name = algorithm["algorithm"].native
    if name in _REFUSED_CONTENT_ALGORITHMS:
        raise UnsupportedAlgorithm(_REFUSED_CONTENT_ALGORITHMS[name])
    if name not in _CONTENT_ALGORITHMS:
        raise UnsupportedAlgorithm(f"content encryption {name} is not accepted")
    label, key_len, aead = _CONTENT_ALGORITHMS[name]
    if aead != authenticated:
        # GCM in plain EnvelopedData would have no place for the tag; CBC in
        # AuthEnvelopedData would claim an integrity it does not have.
        raise UnsupportedAlgorithm(f"{label} is not accepted in {type(envelope).__name__}")
    ciphertext = info["encrypted_content"].native
    if ciphertext is None:
        raise MalformedMessage("detached encrypted content is not supported")
    tag = b""
    aad = b""
    if authenticated:
        try:
            params = GcmParameters.load(algorithm["parameters"].dump(), strict=True)
            iv = params["aes_nonce"].native
            icv_len = params["aes_icvlen"].native
        except (ValueError, TypeError) as exc:
            raise MalformedMessage(f"bad GCM parameters: {exc}") from None
        tag = envelope["mac"].native
        if not 12 <= icv_len <= 16 or len(tag) != icv_len or not iv:
            raise MalformedMessage("GCM tag length does not match its parameters")
        auth_attrs = envelope["auth_attrs"]
        if auth_attrs.native is not None:
            # RFC 5083 section 2.2: the AAD is the DER of the attributes as a universal
            # SET OF, not the [1] IMPLICIT form that appears in the message.
            aad = auth_attrs.untag().dump(force=True)
    else:
        iv = algorithm["parameters"].native
        if not isinstance(iv, bytes) or len(iv) != 16:
            raise MalformedMessage("CBC IV must be 16 bytes")
    return _Content(label, key_len, aead, iv, ciphertext, tag, aad)


def _candidates(
    infos: cms.RecipientInfos, recipients: Sequence[Recipient]
) -> tuple[list[_Candidate], set[str]]:
    matches: list[_Candidate] = []
    unsupported: set[str] = set()
    for info in infos:
        if info.name != "ktri":
            unsupported.add(_RECIPIENT_TYPE_NAMES.get(info.name, info.name))
            continue
        ktri = info.chosen
        transport = ktri["key_encryption_algorithm"]["algorithm"].native
        if transport not in ("rsaes_pkcs1v15", "rsaes_oaep"):
            unsupported.add(f"key transport {transport}")
            continue
        for cert, key in recipients:
            if isinstance(key, rsa.RSAPrivateKey) and identifies(ktri["rid"], cert):
                matches.append((ktri, cert, key))
    return matches, unsupported


def _unwrap_cek(
    ktri: cms.KeyTransRecipientInfo, key: rsa.RSAPrivateKey, key_len: int
) -> tuple[str, bytes]:
    """Return (transport name, CEK). Never fails: on any RSA error the CEK is random."""
    algorithm = ktri["key_encryption_algorithm"]
    encrypted_key = ktri["encrypted_key"].native
    transport: str
    pad: PKCS1v15 | OAEP
    if algorithm["algorithm"].native == "rsaes_oaep":
        transport = "rsaes-oaep"
        pad = _oaep_padding(algorithm["parameters"])
    else:
        transport = "rsaes-pkcs1-v1_5"
        # cryptography 50 is linked against OpenSSL 4.0, whose PKCS#1 v1.5 decryption does
        # implicit rejection (since OpenSSL 3.2): a bad padding returns a pseudo-random
        # message derived from the key and ciphertext instead of raising. We verified this
        # by decrypting random ciphertexts (they returned 194/217-byte "plaintexts"); a
        # ValueError is still possible (e.g. ciphertext >= modulus), so the fallback below
        # stays for both cases and for other OpenSSL builds.
        pad = PKCS1v15()
    # Drawn before the attempt so success and failure do the same work. OAEP failures raise
    # ValueError (OpenSSL checks OAEP in constant time internally); they take the same path.
    random_cek = os.urandom(key_len)
    try:
        cek = key.decrypt(encrypted_key, pad)
    except ValueError:
        cek = random_cek
    # Wrong length means a bad unwrap too (RFC 3218 2.3.2): same random-key path, no early exit.
    if len(cek) != key_len:
        cek = random_cek
    return transport, cek


def _oaep_padding(params: core.Asn1Value) -> OAEP:
    # Absent parameters or absent fields mean the RFC 8017 defaults: SHA-1 and MGF1-SHA-1.
    # Choosing the hash is not secret-dependent, so an unknown hash may fail loudly.
    native = params.native if params is not None else None
    hash_name = "sha1"
    mgf_hash_name = "sha1"
    label = b""
    if native:
        hash_name = native["hash_algorithm"]["algorithm"]
        mgf = native["mask_gen_algorithm"]
        if mgf["algorithm"] != "mgf1":
            raise UnsupportedAlgorithm(f"OAEP mask generation {mgf['algorithm']} is not accepted")
        if not mgf["parameters"]:
            raise UnsupportedAlgorithm("OAEP MGF1 without a hash is not accepted")
        mgf_hash_name = mgf["parameters"]["algorithm"]
        label = native["p_source_algorithm"]["parameters"] or b""
    for name in (hash_name, mgf_hash_name):
        if name not in _OAEP_HASHES:
            raise UnsupportedAlgorithm(f"OAEP hash {name} is not accepted")
    return OAEP(
        mgf=MGF1(_OAEP_HASHES[mgf_hash_name]()),
        algorithm=_OAEP_HASHES[hash_name](),
        label=label or None,
    )


def _decrypt_content(content: _Content, cek: bytes) -> bytes | None:
    """Plaintext, or None on any failure; callers turn None into the one uniform error."""
    try:
        if content.aead:
            gcm = Cipher(
                algorithms.AES(cek),
                modes.GCM(content.iv, content.tag, min_tag_length=len(content.tag)),
            ).decryptor()
            gcm.authenticate_additional_data(content.aad)
            # Output is held until finalize() has checked the tag: no partial plaintext.
            data = gcm.update(content.ciphertext) + gcm.finalize()
            return data
        if not content.ciphertext or len(content.ciphertext) % 16:
            return None
        decryptor = Cipher(algorithms.AES(cek), modes.CBC(content.iv)).decryptor()
        padded = decryptor.update(content.ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except (InvalidTag, ValueError):
        return None
