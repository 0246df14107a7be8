"""The office's own S/MIME keys (gateway.keydir.own_keys): sealed at rest, rollover, the
domain key, retirement, and the minima for new keys; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from crypto.at_rest import MasterKey
from crypto.errors import SealError
from gateway import audit
from gateway.db import make_engine, make_session_factory, session_scope
from gateway.keydir.errors import Conflict, KeyDirError, NotFound
from gateway.keydir.models import KeyKind, OwnKey
from gateway.keydir.own_keys import (
    import_own_smime,
    list_own_keys,
    own_keys_for,
    retire_own_key,
    signing_key_for,
)
from gateway.models import AuditEntry
from gateway.settings import Settings
from tests.test_keydir_certs import der, ec_key, key_pem, make_cert, pem, rsa_key, utcnow

NOW = utcnow()
BOX = "asd@jugendamt.example"


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


def _pkcs8(label: str, bits: int = 3072) -> bytes:
    return rsa_key(bits, label).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def _pem_pair(address: str, label: str, bits: int = 3072, **cert_args: object) -> bytes:
    key = rsa_key(bits, label)
    return pem(make_cert(address, key=key, **cert_args)) + key_pem(key)  # type: ignore[arg-type]


def test_import_pkcs12_seals_the_private_key(sessions: sessionmaker[Session], master: MasterKey,
                                             settings: Settings) -> None:
    key = rsa_key(3072, "own-a")
    cert = make_cert(BOX, key=key)
    p12 = pkcs12.serialize_key_and_certificates(
        b"asd", key, cert, None, serialization.BestAvailableEncryption(b"geheim"))
    with session_scope(sessions) as session:
        with pytest.raises(KeyDirError, match="wrong password"):
            import_own_smime(session, master, BOX, p12, password=b"falsch", actor="admin",
                             now=NOW)
        with pytest.raises(KeyDirError, match="no password given"):
            import_own_smime(session, master, BOX, p12, actor="admin", now=NOW)
        own = import_own_smime(session, master, BOX, p12, password=b"geheim", actor="admin",
                               now=NOW)
        own_id = own.id
        assert own.algorithm == "rsa3072" and own.can_sign and own.public == der(cert)
    with session_scope(sessions) as session:
        [material] = own_keys_for(session, master, BOX, KeyKind.SMIME)
        assert material.private == _pkcs8("own-a")
        assert (material.id, material.public, material.address) == (own_id, der(cert), BOX)
        assert "private" not in repr(material) and repr(_pkcs8("own-a")) not in repr(material)
        raw = session.execute(text("SELECT private_sealed FROM own_keys")).scalar_one()
        assert _pkcs8("own-a") not in bytes(raw)
        assert audit.verify(session).ok
        assert session.scalars(select(AuditEntry.action)).all() == ["own-key-added"]
    sqlite_file = settings.database.url.removeprefix("sqlite:///")
    if settings.database.url.startswith("sqlite"):
        # Not in the database file in clear either (nor in its write-ahead log).
        for path in (Path(sqlite_file), Path(sqlite_file + "-wal")):
            if path.exists():
                assert _pkcs8("own-a") not in path.read_bytes()


def test_sealed_key_copied_to_another_row_does_not_open(sessions: sessionmaker[Session],
                                                        master: MasterKey) -> None:
    with session_scope(sessions) as session:
        first = import_own_smime(session, master, BOX, _pem_pair(BOX, "own-a"), actor="a",
                                 now=NOW)
        second = import_own_smime(session, master, BOX, _pem_pair(BOX, "own-b"), actor="a",
                                  now=NOW)
        session.execute(update(OwnKey).where(OwnKey.id == second.id)
                        .values(private_sealed=first.private_sealed))
    with session_scope(sessions) as session, pytest.raises(SealError):
        own_keys_for(session, master, BOX, KeyKind.SMIME)
    with session_scope(sessions) as session, pytest.raises(SealError):
        # Another master key does not open it either.
        own_keys_for(session, MasterKey.generate(), BOX, KeyKind.SMIME)


def test_rollover_returns_every_key_newest_first_then_the_domain_key(
        sessions: sessionmaker[Session], master: MasterKey) -> None:
    with session_scope(sessions) as session:
        old = import_own_smime(session, master, BOX, _pem_pair(
            BOX, "own-a", not_before=NOW - timedelta(days=700),
            not_after=NOW - timedelta(days=5)), actor="a", now=NOW).id
        new = import_own_smime(session, master, BOX, _pem_pair(
            BOX, "own-b", not_before=NOW - timedelta(days=3)), actor="a", now=NOW).id
        domain = import_own_smime(session, master, "@Jugendamt.example", _pem_pair(
            "poststelle@jugendamt.example", "own-c"), actor="a", now=NOW).id
        import_own_smime(session, master, "other@jugendamt.example",
                         _pem_pair("other@jugendamt.example", "own-d"), actor="a", now=NOW)
    with session_scope(sessions) as session:
        tried = own_keys_for(session, master, "ASD@jugendamt.example", KeyKind.SMIME)
        assert [k.id for k in tried] == [new, old, domain]
        assert [k.private for k in tried] == [_pkcs8("own-b"), _pkcs8("own-a"),
                                              _pkcs8("own-c")]
        assert [k.id for k in own_keys_for(session, master, "x@jugendamt.example",
                                           KeyKind.SMIME)] == [domain]
        assert own_keys_for(session, master, BOX, KeyKind.OPENPGP) == []
        signer = signing_key_for(session, master, BOX, KeyKind.SMIME, NOW)
        assert signer is not None and signer.id == new
        retire_own_key(session, new, actor="chef", now=NOW)
        with pytest.raises(Conflict, match="retired already"):
            retire_own_key(session, new, actor="chef", now=NOW)
        with pytest.raises(NotFound):
            retire_own_key(session, 999, actor="chef", now=NOW)
    with session_scope(sessions) as session:
        assert [k.id for k in own_keys_for(session, master, BOX, KeyKind.SMIME)] == [old, domain]
        # The old key is expired: signing falls back to the domain's key.
        signer = signing_key_for(session, master, BOX, KeyKind.SMIME, NOW)
        assert signer is not None and signer.id == domain
        assert len(list_own_keys(session)) == 4
        assert len(list_own_keys(session, include_retired=False)) == 3
        assert [k.id for k in list_own_keys(session, BOX)] == [old, new]
        assert audit.verify(session).ok


def test_encryption_only_certificate_is_never_the_signer(sessions: sessionmaker[Session],
                                                         master: MasterKey) -> None:
    with session_scope(sessions) as session:
        own = import_own_smime(session, master, BOX, _pem_pair(BOX, "own-a", sign=False),
                               actor="a", now=NOW)
        assert not own.can_sign
        assert signing_key_for(session, master, BOX, KeyKind.SMIME, NOW) is None
        assert len(own_keys_for(session, master, BOX, KeyKind.SMIME)) == 1


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _pem_pair(BOX, "weak", bits=2048), "at least 3072 bits"),
    (lambda: pem(make_cert(BOX, key=ec_key("secp224r1"))) + key_pem(ec_key("secp224r1")),
     "secp224r1"),
    (lambda: _pem_pair("someone@else.example", "own-a"), "names someone@else.example, not"),
    (lambda: pem(make_cert(BOX, key=rsa_key(3072, "own-a"))) + key_pem(rsa_key(3072, "own-b")),
     "belongs to none of the certificates"),
    (lambda: pem(make_cert(BOX, key=rsa_key(3072, "own-a"))), "no PEM private key"),
    (lambda: b"garbage", "cannot read the PKCS#12 file"),
])
def test_refusals(sessions: sessionmaker[Session], master: MasterKey, make: object,
                  message: str) -> None:
    assert callable(make)
    with session_scope(sessions) as session, pytest.raises(KeyDirError, match=message):
        import_own_smime(session, master, BOX, make(), actor="a", now=NOW)


def test_ec_p256_and_encrypted_pem_key(sessions: sessionmaker[Session],
                                       master: MasterKey) -> None:
    key = ec_key()
    data = pem(make_cert(BOX, key=key)) + key_pem(key, b"pw")
    with session_scope(sessions) as session:
        with pytest.raises(KeyDirError, match="give its password"):
            import_own_smime(session, master, BOX, data, actor="a", now=NOW)
        own = import_own_smime(session, master, BOX, data, password=b"pw", actor="a", now=NOW)
        assert own.algorithm == "ec-secp256r1"
        with pytest.raises(KeyDirError, match="not encrypted: give no password"):
            import_own_smime(session, master, BOX, _pem_pair(BOX, "own-a"), password=b"pw",
                             actor="a", now=NOW)
        with pytest.raises(Conflict, match=r"stored for asd@jugendamt\.example already"):
            import_own_smime(session, master, BOX, data, password=b"pw", actor="a", now=NOW)
