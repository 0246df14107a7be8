"""Importing an own key from one file whose kind is read from its content: an armored OpenPGP
secret key, or an S/MIME certificate with its private key (PKCS#12, or PEM with both).

For the web console's upload, where there are no flags to say what the file is (the CLI has
--pkcs12, --cert/--key and --openpgp); the imports themselves are own_keys' and own_openpgp's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway.keydir import own_keys, own_openpgp
from gateway.keydir.models import OwnKey

_OPENPGP_SECRET = b"-----BEGIN PGP PRIVATE KEY BLOCK-----"


def import_own_key(session: Session, master_key: MasterKey, address: str, data: bytes, *,
                   password: bytes | None, actor: str, now: datetime) -> OwnKey:
    if data.lstrip().startswith(_OPENPGP_SECRET):
        return own_openpgp.import_own_openpgp(session, master_key, address, data, actor=actor,
                                              now=now)
    return own_keys.import_own_smime(session, master_key, address, data, password=password,
                                     actor=actor, now=now)
