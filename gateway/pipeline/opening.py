"""Opening encrypted attachments with the office's own keys, for the scanner.

A plain mail with ``bericht.pdf.pgp`` or ``smime.p7m`` attached carries ciphertext that no
virus scanner can look into. The scanner recognises it by content and asks this opener,
which decrypts in memory with the same keys and code as the ``decrypt`` stage (the
recipients' own keys and the office-wide key of their domain) and verifies a signature
inside the same way as the ``verify`` stage does for a whole message. What it cannot open
becomes an UNSCANNABLE finding with the reason; nothing here ever writes plaintext anywhere.

Outbound, a message that the sender's own client encrypted end to end for the partner
passes (README: "a message already encrypted by the sender's own client passes
unchanged"): the gateway tries the sender's own keys first, and if it holds none that
open it, accepts the message's own encryption with a note. An encrypted *attachment* it
cannot open is unscannable in both directions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.message import Message
from email.parser import BytesHeaderParser

from cryptography import x509

from crypto.openpgp import PgpError
from crypto.pgp_backend import WILDCARD_KEY_ID, PgpMalformed, PgpNoIntegrity, inspect_message
from crypto.pgp_keys import emails_for
from crypto.pgp_secret_keys import decryption_keys
from crypto.smime import (
    DecryptionFailed,
    MalformedMessage,
    NoMatchingRecipient,
    SmimeError,
    UnsupportedAlgorithm,
    decrypt_cms,
)
from crypto.smime_verify import verify_smime
from gateway.db import read_scope
from gateway.keydir.keys import KeyKind, verification_keys
from gateway.keydir.own_keys import OwnKeyMaterial
from gateway.models import Direction
from gateway.pipeline.stages.decrypt import load_own_keys
from gateway.pipeline.stages.verify import pinned_for
from gateway.services import Services
from gateway.trust import TrustError
from scanning.encrypted import Encrypted
from scanning.opening import Accepted, CannotOpen, Opened

_ARMORED = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----[^\r\n]*",
                      re.DOTALL)
_SIGNED_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_DETACHED_PROTOCOLS = ("application/pkcs7-signature", "application/x-pkcs7-signature")
# A decrypted OpenPGP literal that starts with a MIME header block is an entity (PGP/MIME),
# anything else a file.
_MIME_HEAD = re.compile(rb"\A(?:[!-9;-~]+:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*)+\r?\n")


class PipelineOpener:
    """Opens what is encrypted for ``key_addresses`` (inbound: the recipients)."""

    def __init__(self, services: Services, *, direction: Direction,
                 key_addresses: Sequence[str], sender: str) -> None:
        self.services = services
        self.direction = direction
        self.key_addresses = list(key_addresses)
        self.sender = sender

    def open(self, data: bytes, found: Encrypted, *, whole_message: bool) -> Opened | Accepted:
        try:
            if found.kind == "cms":
                return self._smime(data)
            if found.kind == "openpgp-signed":
                return self._openpgp_signed(data)
            return self._openpgp(data)
        except CannotOpen:
            if whole_message and self.direction == Direction.OUTBOUND:
                return Accepted(f"{found.description}, encrypted end to end by the sender's "
                                "client for the recipient; not opened")
            raise

    def _keys(self, kind: KeyKind) -> list[OwnKeyMaterial]:
        keys = load_own_keys(self.services, self.key_addresses, kind)
        return keys or load_own_keys(self.services, self.key_addresses, kind, fresh=True)

    # --- S/MIME --------------------------------------------------------------------------------

    def _smime(self, der: bytes) -> Opened:
        services = self.services
        recipients = [(x509.load_der_x509_certificate(key.public),
                       services.private_keys.load(key)) for key in self._keys(KeyKind.SMIME)]
        try:
            result = decrypt_cms(der, recipients)
        except NoMatchingRecipient:
            raise CannotOpen("encrypted attachment: S/MIME for a key we do not hold") from None
        except UnsupportedAlgorithm as exc:
            raise CannotOpen(f"encrypted attachment: S/MIME encryption refused: {exc}") from None
        except MalformedMessage as exc:
            raise CannotOpen(f"encrypted attachment: malformed S/MIME: {exc}") from None
        except (DecryptionFailed, SmimeError):
            raise CannotOpen("encrypted attachment: S/MIME decryption failed") from None
        note = (f"S/MIME {result.content_algorithm}, {result.key_transport}; "
                f"key={result.recipient_fingerprint[:16]}")
        content, signature = self._smime_signature(result.plaintext)
        return Opened(content, is_entity=True, note=f"{note}; {signature}")

    def _smime_signature(self, entity: bytes) -> tuple[bytes, str]:
        """The content to scan and what its S/MIME signature (if any) says."""
        headers = BytesHeaderParser().parsebytes(entity[:65536])
        if not _smime_signed(headers):
            return entity, "signature: none"
        try:
            anchors, crls = self.services.trust.current()
        except TrustError as exc:
            return entity, f"signature: not checked ({exc})"
        try:
            result = verify_smime(entity, anchors, crls=crls, now=self.services.clock(),
                                  pinned=pinned_for(self.services, self.sender))
        except MalformedMessage as exc:
            return entity, f"signature: invalid (malformed: {exc})"
        signer = ", ".join(result.signer_emails) or "unknown"
        if result.valid and self.sender not in {e.lower() for e in result.signer_emails}:
            return result.content, (f"signature: invalid (certificate does not name the "
                                    f"sender {self.sender}); signer={signer}")
        if result.valid:
            pinned = " (pinned)" if result.pinned else ""
            return result.content, f"signature: valid{pinned}; signer={signer}"
        return result.content, f"signature: invalid ({result.reason}); signer={signer}"

    # --- OpenPGP -------------------------------------------------------------------------------

    def _openpgp(self, data: bytes) -> Opened:
        armored = _ARMORED.search(data) if not data[:1] or not data[0] & 0x80 else None
        message = armored.group() if armored is not None else data
        keys = self._keys(KeyKind.OPENPGP)
        with read_scope(self.services.sessions) as session:
            certs = [k.data for k in verification_keys(session, self.sender, KeyKind.OPENPGP)]
        try:
            result = self.services.pgp.decrypt(message, [k.private for k in keys], certs)
        except PgpNoIntegrity:
            raise CannotOpen("encrypted attachment: OpenPGP without integrity protection "
                             "(no MDC) refused") from None
        except PgpMalformed as exc:
            raise CannotOpen(f"encrypted attachment: malformed OpenPGP: {exc}") from None
        except PgpError:
            raise CannotOpen(_pgp_failure(message, keys)) from None
        note = (f"OpenPGP {result.cipher or 'cipher unknown'}; "
                f"key={(result.recipient_fingerprint or '?')[:16]}")
        if result.signed:
            emails = emails_for(result.signer_fingerprint, certs) \
                if result.signer_fingerprint else ()
            valid = result.signature_valid and self.sender in {e.lower() for e in emails}
            if valid:
                note += f"; signature: valid; signer={', '.join(emails)}"
            else:
                why = result.signature_reason or (
                    f"signing key does not name the sender {self.sender}"
                    if result.signature_valid else "signature does not verify")
                note += f"; signature: invalid ({why})"
        else:
            note += "; signature: none"
        content = result.plaintext
        return Opened(content, is_entity=_is_entity(content), note=note)

    def _openpgp_signed(self, data: bytes) -> Opened:
        """Signed, not encrypted: the signature checked, the (compressed) content read."""
        armored = _ARMORED.search(data) if not data[:1] or not data[0] & 0x80 else None
        message = armored.group() if armored is not None else data
        with read_scope(self.services.sessions) as session:
            certs = [k.data for k in verification_keys(session, self.sender, KeyKind.OPENPGP)]
        try:
            result = self.services.pgp.verify(message, None, certs)
        except PgpError as exc:
            raise CannotOpen(f"OpenPGP signed data cannot be read: {exc}") from None
        emails = emails_for(result.signer_fingerprint, certs) if result.signer_fingerprint \
            else ()
        if result.valid and self.sender in {e.lower() for e in emails}:
            note = f"OpenPGP signed; signature: valid; signer={', '.join(emails)}"
        else:
            why = result.reason or (f"signing key does not name the sender {self.sender}"
                                    if result.valid else "signature does not verify")
            note = f"OpenPGP signed; signature: invalid ({why})"
        return Opened(result.content, is_entity=_is_entity(result.content), note=note)


def _is_entity(content: bytes) -> bool:
    head = content[:65536]
    return _MIME_HEAD.match(head) is not None and b"content-type:" in head.lower()


def _smime_signed(headers: Message) -> bool:
    content_type = headers.get_content_type()
    if content_type == "multipart/signed":
        protocol = str(headers.get_param("protocol", "") or "").lower()
        return protocol in _DETACHED_PROTOCOLS
    if content_type in _SIGNED_TYPES:
        return str(headers.get_param("smime-type", "") or "").lower() in ("signed-data", "")
    return False


def _pgp_failure(message: bytes, keys: list[OwnKeyMaterial]) -> str:
    """Why an OpenPGP attachment stays closed, as far as it can be told without a key.

    Telling "not for our keys" from "broken" uses only the key ids in the clear, as the
    whole-message path does; anything past that is the one uniform answer.
    """
    try:
        shape = inspect_message(message)
    except PgpError:
        return "encrypted attachment: malformed OpenPGP"
    if not shape.recipient_key_ids:
        if 3 in shape.tags:  # only symmetric session keys: a password
            return "encrypted attachment: OpenPGP with a password"
        return "encrypted attachment: OpenPGP decryption failed"
    ours = {key.key_id.hex().upper() for own in keys for key in decryption_keys(own.private)}
    wanted = set(shape.recipient_key_ids)
    if WILDCARD_KEY_ID not in wanted and not wanted & ours:
        return "encrypted attachment: OpenPGP for a key we do not hold"
    return "encrypted attachment: OpenPGP decryption failed"
