"""Look a partner's OpenPGP key up in its Web Key Directory and put it in the directory.

The key is stored with its provenance (source "wkd", the URL it came from) and must name the
address that was looked up: a domain's directory could otherwise publish anyone's key under
any name. It is pending unless the admin approves it in the same step.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from crypto.wkd import WkdResult, fetch_wkd
from gateway.keydir.errors import KeyDirError
from gateway.keydir.keys import ImportedKey, import_partner_keys
from gateway.keydir.models import KeySource
from gateway.settings import Settings


def fetch_for(settings: Settings, address: str) -> WkdResult:
    crypto = settings.crypto
    if not crypto.wkd_enabled:
        raise KeyDirError("WKD lookups are disabled (crypto.wkd_enabled = false)")
    ca_file = settings.resolve(crypto.wkd_ca_file) if crypto.wkd_ca_file else None
    return fetch_wkd(address, timeout=crypto.wkd_timeout_seconds, ca_file=ca_file,
                     resolve=crypto.wkd_resolve)


def import_found(session: Session, found: WkdResult, address: str, *, actor: str,
                 partner: str | None, approve: bool, now: datetime) -> list[ImportedKey]:
    return import_partner_keys(session, found.data, actor=actor, source=KeySource.WKD,
                               source_detail=found.url, partner=partner, approve=approve,
                               now=now, require_address=address)
