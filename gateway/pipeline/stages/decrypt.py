"""Inbound: decrypt S/MIME and OpenPGP mail with the office's own keys.

Every failure after the envelope was parsed ends in the same quarantine reason, "decryption
failed", whatever went wrong inside (wrong key, flipped bit, bad padding, bad tag): distinct
answers would make the gateway a padding oracle. What can be told before any key is used
(not addressed to us, an algorithm we refuse, garbage instead of CMS) is named, because an
admin needs it and an attacker learns nothing from it.
"""

from __future__ import annotations

import time
from email.message import Message

from cryptography import x509

from crypto.canonical import canonicalize, canonicalize_entity
from crypto.cms_common import body_content_type, entity_headers
from crypto.openpgp import PgpError
from crypto.pgp_mime import PgpKind, PgpMalformed, PgpNoIntegrity, classify, open_pgp
from crypto.smime import (
    DecryptionFailed,
    MalformedMessage,
    NoMatchingRecipient,
    Recipient,
    SmimeError,
    UnsupportedAlgorithm,
    decrypt_smime_message,
)
from gateway.db import read_scope
from gateway.keydir.keys import KeyKind, verification_keys
from gateway.keydir.own_keys import OwnKeyMaterial, own_keys_for
from gateway.mime.entity import join_entity, split_entity
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Quarantine
from gateway.pipeline.stages.sender import sender_address
from gateway.services import Services

UNIFORM_FAILURE = "decryption failed"
SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_PGP_ENCRYPTED = (PgpKind.MIME_ENCRYPTED, PgpKind.INLINE_ENCRYPTED)


def smime_kind(headers: Message, raw: bytes) -> str | None:
    """"encrypted", "signed" or None for a top-level application/pkcs7-mime entity."""
    if headers.get_content_type() not in SMIME_TYPES:
        return None
    smime_type = str(headers.get_param("smime-type", "") or "").lower()
    if smime_type in ("enveloped-data", "authenveloped-data"):
        return "encrypted"
    if smime_type == "signed-data":
        return "signed"
    # Old clients leave smime-type out: the CMS content type tells, read from the first
    # bytes of the body (it is decoded in full once, by the stage that opens it). Anything
    # else that claims to be S/MIME goes the decrypt path and is reported as malformed there.
    content_type = body_content_type(raw, headers)
    return "signed" if content_type == "signed_data" else "encrypted"


def smime_signed(headers: Message, raw: bytes) -> bool:
    """Whether the entity is S/MIME signed (multipart/signed with a pkcs7-signature, or
    opaque signed-data): what the verify stage checks and unwraps."""
    return ((headers.get_content_type() == "multipart/signed" and str(
        headers.get_param("protocol", "") or "").lower() in (
        "application/pkcs7-signature", "application/x-pkcs7-signature"))
        or smime_kind(headers, raw) == "signed")


def load_own_keys(services: Services, addresses: list[str], kind: KeyKind, *,
                  fresh: bool = False) -> list[OwnKeyMaterial]:
    """The office's own keys of ``kind`` for ``addresses`` (the domain-wide key included),
    from the short-lived cache unless ``fresh``."""
    keys: dict[int, OwnKeyMaterial] = {}
    now = time.monotonic()
    for address in addresses:
        def load(address: str = address) -> list[OwnKeyMaterial]:
            with read_scope(services.sessions) as session:
                return own_keys_for(session, services.master_key, address, kind)
        for key in services.own_keys.get(address, kind.value, now, load, fresh=fresh):
            keys[key.id] = key
    return list(keys.values())


class DecryptStage:
    name = "decrypt"

    def run(self, ctx: MessageContext, services: Services) -> None:
        # The crypto layer's own reading of the header block (compat32, as the decryption
        # reads it): a Content-Type costs about 1 µs there, 50-90 µs under policy.default.
        headers = entity_headers(ctx.body)
        if smime_kind(headers, ctx.body) == "encrypted":
            entity = self._smime(ctx, services, headers)
            # Signed inside (sign-then-encrypt): the verify stage, which always follows, reads
            # the signature's body as it is and puts the signed content in canonical form
            # itself; only the header block must be CRLF to go under the outer headers.
            # Bringing the whole wrapper into that form first would read it once more.
            if smime_signed(entity_headers(entity), entity):
                replace_content(ctx, _canonical_head(entity), canonical=False)
                return
        elif classify(ctx.body) in _PGP_ENCRYPTED:
            entity = self._openpgp(ctx, services)
        else:
            return
        replace_content(ctx, entity)

    def _keys(self, ctx: MessageContext, services: Services, kind: KeyKind, *,
              fresh: bool = False) -> list[OwnKeyMaterial]:
        keys = load_own_keys(services, ctx.pending, kind, fresh=fresh)
        if not keys and not fresh:
            return self._keys(ctx, services, kind, fresh=True)
        if not keys:
            raise Quarantine(f"encrypted with {kind.value}, but the gateway holds no "
                             f"{kind.value} key for " + ", ".join(ctx.pending))
        return keys

    def _recipients(self, ctx: MessageContext, services: Services, *,
                    fresh: bool = False) -> list[Recipient]:
        return [(x509.load_der_x509_certificate(key.public), services.private_keys.load(key))
                for key in self._keys(ctx, services, KeyKind.SMIME, fresh=fresh)]

    def _smime(self, ctx: MessageContext, services: Services, headers: Message) -> bytes:
        try:
            try:
                result = decrypt_smime_message(ctx.body, self._recipients(ctx, services),
                                               headers=headers)
            except NoMatchingRecipient:
                # Perhaps a key imported since the keys were last looked up: look again.
                result = decrypt_smime_message(
                    ctx.body, self._recipients(ctx, services, fresh=True), headers=headers)
        except NoMatchingRecipient:
            raise Quarantine("S/MIME message is not encrypted for any key the gateway "
                             "holds") from None
        except UnsupportedAlgorithm as exc:
            raise Quarantine(f"S/MIME encryption refused: {exc}") from None
        except MalformedMessage as exc:
            raise Quarantine(f"malformed S/MIME message: {exc}") from None
        except (DecryptionFailed, SmimeError):
            raise Quarantine(UNIFORM_FAILURE) from None
        facts = ctx.inbound_crypto
        facts.encryption = "smime"
        facts.algorithm = f"{result.content_algorithm}, {result.key_transport}"
        facts.decrypted_with = result.recipient_fingerprint
        return result.plaintext

    def _openpgp(self, ctx: MessageContext, services: Services) -> bytes:

        secret = [k.private for k in self._keys(ctx, services, KeyKind.OPENPGP)]
        sender = sender_address(ctx)
        with read_scope(services.sessions) as session:
            certs = [k.data for k in verification_keys(session, sender, KeyKind.OPENPGP)]
        try:
            opened = open_pgp(ctx.body, services.pgp, secret, certs)
        except PgpNoIntegrity:
            raise Quarantine("OpenPGP message without integrity protection (no MDC) refused"
                             ) from None
        except PgpMalformed as exc:
            raise Quarantine(f"malformed OpenPGP message: {exc}") from None
        except PgpError:
            raise Quarantine(UNIFORM_FAILURE) from None
        facts = ctx.inbound_crypto
        facts.encryption = "openpgp"
        facts.algorithm = opened.cipher
        facts.decrypted_with = opened.recipient_fingerprint
        if opened.signed:
            record_pgp_signature(ctx, opened.signature_valid, opened.signer_fingerprint,
                                 opened.signer_emails, opened.reason, sender)
        return opened.content


def _canonical_head(entity: bytes) -> bytes:
    """``entity`` with CRLF line endings in its header block and the blank line after it,
    its body as it is."""
    crlf = entity.find(b"\r\n\r\n")
    lf = entity.find(b"\n\n", 0, crlf if crlf >= 0 else len(entity))
    if lf >= 0:
        end = lf + 2
    elif crlf >= 0:
        end = crlf + 4
    else:
        return canonicalize(entity)  # header fields only
    return canonicalize(entity[:end]) + entity[end:]


def replace_content(ctx: MessageContext, entity: bytes, *, canonical: bool = True) -> None:
    """Put the opened ``entity`` under the message's outer headers.

    Line endings become CRLF where the entity is text (unless not ``canonical``: a layer the
    next stage takes off in turn); a binary body keeps its bytes (a signature over it is
    still to be checked). The new content is parsed in full (and quarantined if malformed)
    by the stage after verify, once, instead of after each layer that is taken off; that
    stage also re-encodes binary bodies for transport.
    """
    outer, _ = split_entity(ctx.body)
    ctx.content = join_entity(outer, canonicalize_entity(entity) if canonical else entity)
    ctx.parsed = None


def record_pgp_signature(ctx: MessageContext, valid: bool, fingerprint: str | None,
                         emails: tuple[str, ...] | list[str], reason: str | None,
                         sender: str) -> None:
    """Note an OpenPGP signature; valid only if the key also names the sender."""
    facts = ctx.inbound_crypto
    facts.signature_kind = "openpgp"
    facts.signer_fingerprint = fingerprint
    facts.signer = ", ".join(emails) or None
    if valid and sender.lower() not in {e.lower() for e in emails}:
        valid, reason = False, f"signing key does not name the sender {sender}"
    facts.signature = "valid" if valid else "invalid"
    facts.signature_reason = None if valid else (reason or "signature does not verify")
