"""The office's own OpenPGP keys: generated here, or imported as unprotected secret keys.

Stored like the S/MIME keys (gateway.keydir.own_keys): the secret key sealed with the master
key, the public key in clear for publication (WKD) and for partners.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from crypto.errors import CryptoError
from gateway.keydir.addresses import check_own_address, domain_of
from gateway.keydir.errors import KeyDirError
from gateway.keydir.material import MAX_INPUT_BYTES, pgp_algorithm
from gateway.keydir.models import KeyKind, OwnKey
from gateway.keydir.own_keys import store_own_key

if TYPE_CHECKING:
    from crypto.pgp_keys import KeyAlgorithm, PgpKeyInfo

# What ``xgate keys own generate`` offers: Curve25519 (the modern default every current
# client reads), and RSA for partners whose software predates it.
ALGORITHMS = ("cv25519", "rsa3072", "rsa4096")
# Long enough not to be a chore, short enough that a lost key stops being trusted; the
# expiry warning reminds the admins ahead of time.
VALIDITY = timedelta(days=2 * 365)


def generate_own_openpgp(session: Session, master_key: MasterKey, address: str, *,
                         algorithm: str = "cv25519", actor: str, now: datetime,
                         validity: timedelta = VALIDITY) -> OwnKey:
    """Generate a key for ``address`` and store it; the secret key never leaves memory
    unsealed."""
    from crypto import pgp_keys

    address = check_own_address(address)
    if address.startswith("@"):
        # OpenPGP keys are found by address (WKD, user ids); a domain has none to publish.
        raise KeyDirError("an OpenPGP key needs an address, not a whole domain",
                          "openpgp-domain")
    if algorithm not in ALGORITHMS:
        raise KeyDirError(f"unknown algorithm {algorithm!r}; choose one of "
                          f"{', '.join(ALGORITHMS)}", "unknown-algorithm",
                          algorithms=", ".join(ALGORITHMS))
    try:
        secret = pgp_keys.generate_key(f"<{address}>", algorithm=_algorithm(algorithm),
                                       expires=now + validity)
    except CryptoError as exc:
        raise KeyDirError(f"key generation failed: {exc}") from None
    return _store(session, master_key, address, secret, actor=actor, now=now,
                  how="generated")


def import_own_openpgp(session: Session, master_key: MasterKey, address: str, data: bytes, *,
                       actor: str, now: datetime) -> OwnKey:
    """Store an armored OpenPGP secret key (without passphrase) for ``address``."""
    address = check_own_address(address)
    if len(data) > MAX_INPUT_BYTES:
        raise KeyDirError(f"the input has {len(data)} bytes; at most {MAX_INPUT_BYTES} expected")
    return _store(session, master_key, address, data, actor=actor, now=now, how="imported")


def _store(session: Session, master_key: MasterKey, address: str, secret: bytes, *,
           actor: str, now: datetime, how: str) -> OwnKey:
    from crypto import pgp_keys

    try:
        infos = pgp_keys.describe_keys(secret)
        public = pgp_keys.public_part(secret)
    except CryptoError as exc:
        raise KeyDirError(f"not a readable OpenPGP secret key: {exc}") from None
    if len(infos) != 1:
        raise KeyDirError(f"expected one OpenPGP secret key, found {len(infos)}")
    info = infos[0]
    _check(info, address)
    return store_own_key(
        session, master_key, address=address, kind=KeyKind.OPENPGP,
        fingerprint=info.fingerprint.upper(), public=public, private=secret,
        subject="\n".join(info.user_ids), algorithm=pgp_algorithm(info),
        not_before=info.created, not_after=info.expires, can_sign=info.can_sign, actor=actor,
        now=now, how=how)


def _check(info: PgpKeyInfo, address: str) -> None:
    fingerprint = info.fingerprint.upper()
    if not info.has_secret:
        raise KeyDirError(f"OpenPGP key {fingerprint} has no secret part; the office's own "
                          "keys must be able to decrypt")
    if info.revoked:
        raise KeyDirError(f"OpenPGP key {fingerprint} is revoked")
    from crypto import pgp_keys

    try:
        pgp_keys.check_minimum_strength(info)
    except CryptoError as exc:
        raise KeyDirError(f"OpenPGP key {fingerprint}: {exc}") from None
    problem = pgp_keys.encryption_strength_problem(info)
    if problem:
        raise KeyDirError(f"OpenPGP key {fingerprint}: {problem}")
    if not info.can_encrypt:
        raise KeyDirError(f"OpenPGP key {fingerprint} has no encryption subkey")
    emails = {e.lower() for e in info.emails}
    named = (any(domain_of(e) == address[1:] for e in emails) if address.startswith("@")
             else address in emails)
    if not named:
        raise KeyDirError(f"OpenPGP key {fingerprint} names "
                          f"{', '.join(sorted(emails)) or 'no e-mail address'}, not {address}")


def _algorithm(name: str) -> KeyAlgorithm:
    # ALGORITHMS and crypto.pgp_keys.KeyAlgorithm name the same three; checked above.
    return cast("KeyAlgorithm", name)
