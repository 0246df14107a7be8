"""The portal's pickup cookies (none of the staff app's).

The pickup session says "this browser gave the right code for this item, a few minutes ago":
``item_id.expires.mac``, the HMAC (a key derived from the master key for this purpose only)
also covering the link token's hash, so the cookie opens only the item whose link it was
made for. The form cookie is a double-submit CSRF value: random, and the form sends it back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from crypto.at_rest import MasterKey
from gateway.portal.pickup.codes import token_hash

SESSION_COOKIE = "xgate_pickup"
FORM_COOKIE = "xgate_pickup_form"
FORM_FIELD = "form_token"
SESSION_LIFETIME = timedelta(minutes=15)


def _key(master: MasterKey) -> bytes:
    return hmac.new(master.key, b"xgate portal pickup session v1", hashlib.sha256).digest()


def _mac(master: MasterKey, item_id: int, expires: int, token: str) -> str:
    payload = f"{item_id}.{expires}.".encode() + token_hash(token)
    return hmac.new(_key(master), payload, hashlib.sha256).hexdigest()


def session_value(master: MasterKey, item_id: int, token: str, now: datetime) -> str:
    expires = int((now + SESSION_LIFETIME).timestamp())
    return f"{item_id}.{expires}.{_mac(master, item_id, expires, token)}"


def session_item(master: MasterKey, value: str | None, token: str,
                 now: datetime) -> int | None:
    """The item id the cookie vouches for under this link, or None (missing, forged, made
    for another link, or out of date)."""
    parts = (value or "").split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    item_id, expires = int(parts[0]), int(parts[1])
    if not hmac.compare_digest(parts[2], _mac(master, item_id, expires, token)):
        return None
    return item_id if now.timestamp() < expires else None


def new_form_value() -> str:
    return secrets.token_urlsafe(24)


def form_ok(cookie: str | None, field: str | None) -> bool:
    return bool(cookie) and bool(field) and hmac.compare_digest(
        (cookie or "").encode(), (field or "").encode())
