"""The office's own public keys, for the people who must encrypt to it.

Partners and citizens need the office's keys: OpenPGP keys are published in the office's
own Web Key Directory (admin_ui.public.wkd serves them; gpg, Thunderbird and our own lookup find
them by address), and ``xgate keys own export`` hands out certificates (with the chain
they were imported with) and OpenPGP keys as files. Only public material leaves here, and
only keys in use: not retired and valid now.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crypto.errors import CryptoError
from crypto.wkd import wkd_hash
from gateway.keydir.addresses import domain_of, normalise
from gateway.keydir.errors import KeyDirError, NotFound
from gateway.keydir.models import KeyKind, OwnKey


def publishable_own_keys(session: Session, now: datetime, *, address: str | None = None,
                         kind: KeyKind | None = None) -> list[OwnKey]:
    """Own keys in use at ``now`` (not retired, within their validity), by address, newest
    first for each address."""
    query = (select(OwnKey)
             .where(OwnKey.retired.is_(False), OwnKey.not_before <= now,
                    or_(OwnKey.not_after.is_(None), OwnKey.not_after > now))
             .order_by(OwnKey.address, OwnKey.kind, OwnKey.not_before.desc(),
                       OwnKey.id.desc()))
    if address is not None:
        query = query.where(OwnKey.address == normalise(address))
    if kind is not None:
        query = query.where(OwnKey.kind == kind)
    return list(session.scalars(query))


# --- export -------------------------------------------------------------------------------


def exported(key: OwnKey) -> bytes:
    """What a partner imports: the certificate and the chain it was imported with (PEM),
    or the armored OpenPGP public key. Never private material."""
    if key.kind is KeyKind.SMIME:
        cert = x509.load_der_x509_certificate(key.public)
        return cert.public_bytes(serialization.Encoding.PEM) + (key.chain or b"")
    from crypto import pgp_keys

    try:
        if pgp_keys.has_secret_material(key.public):
            # The column holds the public part by construction; if it ever did not, the
            # secret key must not go out with the export.
            raise KeyDirError(f"own key {key.id} holds secret material where its public "
                              "part belongs; not exported")
        return pgp_keys.public_part(key.public)
    except CryptoError as exc:
        raise KeyDirError(f"own key {key.id}: {exc}") from None


def export_own_keys(session: Session, now: datetime, *, address: str | None = None,
                    kind: KeyKind | None = None) -> tuple[list[OwnKey], bytes]:
    """The keys in use for ``address`` (or all) of ``kind`` (or both), and one file with
    all of them: certificates first, then OpenPGP keys."""
    keys = publishable_own_keys(session, now, address=address, kind=kind)
    if not keys:
        which = f"{kind.value} " if kind else ""
        for_whom = f" for {normalise(address)}" if address else ""
        raise KeyDirError(f"no {which}own key in use{for_whom} to export")
    keys.sort(key=lambda k: (k.kind is not KeyKind.SMIME, k.address, -k.id))
    return keys, b"".join(exported(k) for k in keys)


def export_own_key(session: Session, key_id: int, now: datetime) -> tuple[OwnKey, bytes]:
    """One own key's public part as export_own_keys hands it out (the console's download):
    NotFound for an unknown id, refused for a key not in use (retired or not valid now)."""
    key = session.get(OwnKey, key_id)
    if key is None:
        raise NotFound(f"no own key {key_id}")
    if key not in publishable_own_keys(session, now, address=key.address, kind=key.kind):
        raise KeyDirError(f"own key {key_id} is not in use (retired or not valid now); only "
                          "keys in use are exported", "own-not-in-use", id=key_id)
    return key, exported(key)


# --- Web Key Directory --------------------------------------------------------------------


def wkd_domains(session: Session, local_domains: Sequence[str]) -> set[str]:
    """The domains whose directory the office serves: its own, and any an own OpenPGP key
    names."""
    addresses = session.scalars(select(OwnKey.address).where(
        OwnKey.kind == KeyKind.OPENPGP, OwnKey.retired.is_(False))).all()
    return {d.lower() for d in local_domains} | {domain_of(a) for a in addresses
                                                 if not a.startswith("@")}


def wkd_key(session: Session, domain: str, digest: str, now: datetime) -> bytes | None:
    """The binary key the directory serves at ``hu/<digest>`` for ``domain``: the newest
    OpenPGP key in use of the address whose local part hashes to ``digest``, with only that
    address's user id. None where there is none.

    The hash decides, not the ``l`` parameter: it is what every client sends, and a local
    part differing only in ASCII case hashes the same.
    """
    from crypto import pgp_keys

    domain = domain.lower().removesuffix(".")
    for key in publishable_own_keys(session, now, kind=KeyKind.OPENPGP):
        local, _, key_domain = key.address.rpartition("@")
        if not local or key_domain != domain or wkd_hash(local) != digest:
            continue
        try:
            return pgp_keys.wkd_public_key(key.public, key.address)
        except CryptoError as exc:
            raise KeyDirError(f"own key {key.id}: {exc}") from None
    return None
