"""Put keys, certificates and partners into a test gateway's key directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.db import session_scope
from gateway.keydir.keys import import_partner_keys
from gateway.keydir.models import KeySource
from gateway.keydir.own_keys import import_own_smime
from gateway.keydir.partners import add_partner
from gateway.services import Services
from gateway.settings import Settings
from tests.conftest import make_settings
from tests.support.smime_pki import Party


def outbound_settings(data_dir: Path, database_url: str, trust_anchor: Path) -> Settings:
    """Settings for mail to partners, ``trust_anchor`` the only CA: the office's domain is
    routed to its groupware, every other domain to a relay (hosts that do not exist: the
    tests record what is sent), and unknown partners get mail either way."""
    return make_settings(data_dir, database_url, crypto={
        "trust_anchors_file": str(trust_anchor), "unknown_partner_outbound": "either"},
        delivery={"routes": [
            {"domain": "jugendamt.example", "host": "groupware.invalid", "internal": True},
            {"domain": "*", "host": "relay.invalid", "port": 25}]})


def own_smime(services: Services, address: str, party: Party) -> None:
    with session_scope(services.sessions) as s:
        import_own_smime(s, services.master_key, address,
                         party.key_pem.read_bytes() + party.cert_pem.read_bytes(),
                         actor="test", now=services.clock())


def partner_key(services: Services, data: bytes, *, approve: bool = True,
                partner: str | None = None) -> None:
    with session_scope(services.sessions) as s:
        import_partner_keys(s, data, actor="test", source=KeySource.IMPORT,
                            source_detail="test", partner=partner, approve=approve,
                            now=services.clock())


def partner(services: Services, name: str, *patterns: str, **policy: Any) -> None:
    with session_scope(services.sessions) as s:
        add_partner(s, name, actor="test", now=services.clock(), patterns=patterns, **policy)
