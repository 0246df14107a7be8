"""OpenPGP keys in the directory: partners' public keys made with real gpg, the office's own
keys generated or imported; on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from crypto import pgp_keys
from crypto.at_rest import MasterKey
from gateway import audit
from gateway.db import make_engine, make_session_factory, session_scope
from gateway.keydir.errors import KeyDirError
from gateway.keydir.keys import (
    ImportedKey,
    ImportOutcome,
    KeyKind,
    KeySource,
    KeyStatus,
    harvest,
    import_partner_keys,
    usable_partner_keys,
    verification_keys,
)
from gateway.keydir.material import parse_partner_material
from gateway.keydir.own_keys import list_own_keys, own_keys_for, signing_key_for
from gateway.keydir.own_openpgp import generate_own_openpgp, import_own_openpgp
from gateway.settings import Settings
from tests.test_keydir_certs import utcnow

# No module-wide "now": the keys are made by gpg after import, so every check takes the time
# when it runs.
BOX = "asd@jugendamt.example"


@dataclass(frozen=True)
class Gpg:
    home: Path

    def run(self, *args: str, binary: bool = False) -> bytes:
        return subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", *args], check=True, capture_output=True).stdout

    def make(self, uid: str, algorithm: str, encryption: str | None) -> str:
        self.run("--quick-gen-key", uid, algorithm, "sign,cert", "1y")
        fpr = next(line.split(":")[9] for line in self.run(
            "--with-colons", "--list-keys", uid).decode().splitlines()
            if line.startswith("fpr:"))
        if encryption:
            self.run("--quick-add-key", fpr, encryption, "encr", "1y")
        return fpr

    def public(self, fpr: str, armor: bool = True) -> bytes:
        return self.run(*(["--armor"] if armor else []), "--export", fpr)

    def secret(self, fpr: str) -> bytes:
        return self.run("--armor", "--export-secret-keys", fpr)


@dataclass(frozen=True)
class Keys:
    gpg: Gpg
    good: str  # ed25519 + cv25519
    rsa2048: str
    rsa1024: str
    sign_only: str
    no_email: str
    own: str  # ed25519 + cv25519 for asd@jugendamt.example
    own_rsa2048: str


@pytest.fixture(scope="module")
def pgp(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg = Gpg(home)
    return Keys(
        gpg=gpg,
        good=gpg.make("Partner <Fach@Stelle.example>", "ed25519", "cv25519"),
        rsa2048=gpg.make("Alt <alt@stelle.example>", "rsa2048", "rsa2048"),
        rsa1024=gpg.make("Schwach <weak@stelle.example>", "rsa1024", "rsa1024"),
        sign_only=gpg.make("Nur Signatur <sig@stelle.example>", "ed25519", None),
        no_email=gpg.make("Kein Postfach", "ed25519", "cv25519"),
        own=gpg.make(f"ASD <{BOX}>", "ed25519", "cv25519"),
        own_rsa2048=gpg.make(f"ASD alt <{BOX}>", "rsa2048", "rsa2048"),
    )


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings)
    yield make_session_factory(engine)
    engine.dispose()


def _import(session: Session, data: bytes, approve: bool = True,
            source: KeySource = KeySource.IMPORT) -> list[ImportedKey]:
    return import_partner_keys(session, data, actor="admin", source=source,
                               source_detail="key.asc", approve=approve, now=utcnow())


# --- partner keys ---------------------------------------------------------------------------


def test_armored_partner_key_is_imported_and_usable(sessions: sessionmaker[Session],
                                                    pgp: Keys) -> None:
    with session_scope(sessions) as session:
        [imported] = _import(session, pgp.gpg.public(pgp.good))
        key = imported.key
        assert (key.kind, key.fingerprint) == (KeyKind.OPENPGP, pgp.good)
        assert key.address_list == ["fach@stelle.example"]
        assert key.algorithm == "ed25519" and key.can_encrypt and key.warning is None
        assert key.subject == "Partner <Fach@Stelle.example>"
        assert key.not_after is not None and key.data.startswith(
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    with session_scope(sessions) as session:
        [usable] = usable_partner_keys(session, "fach@stelle.example", KeyKind.OPENPGP, utcnow())
        assert usable.fingerprint == pgp.good
        assert pgp_keys.describe_keys(usable.data)[0].fingerprint == pgp.good
        assert usable_partner_keys(session, "fach@stelle.example", KeyKind.SMIME, utcnow()) == []


def test_binary_key_from_wkd_is_stored_armored(sessions: sessionmaker[Session],
                                               pgp: Keys) -> None:
    binary = pgp.gpg.public(pgp.good, armor=False)
    with session_scope(sessions) as session:
        [imported] = import_partner_keys(
            session, binary, actor="worker", source=KeySource.WKD,
            source_detail="https://openpgpkey.stelle.example/.well-known/openpgpkey/x",
            approve=False, now=utcnow(), require_address="fach@stelle.example")
        assert imported.key.status is KeyStatus.PENDING
        assert imported.key.data.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
        # The same key again, armored this time: no duplicate.
        [again] = _import(session, pgp.gpg.public(pgp.good), approve=False)
        assert (again.key.id, again.outcome) == (imported.key.id, ImportOutcome.UNCHANGED)


def test_newer_copy_of_a_known_key_extends_it(sessions: sessionmaker[Session],
                                              tmp_path: Path, pgp: Keys) -> None:
    # A copy of the keyring, so the other tests keep the original expiry.
    home = tmp_path / "gnupg"
    subprocess.run(["cp", "-a", str(pgp.gpg.home), str(home)], check=True)
    gpg = Gpg(home)
    with session_scope(sessions) as session:
        [first] = _import(session, gpg.public(pgp.good))
        before = first.key.not_after
        gpg.run("--quick-set-expire", pgp.good, "3y")
        gpg.run("--quick-set-expire", pgp.good, "3y", "*")
        [again] = _import(session, gpg.public(pgp.good), approve=False)
        assert (again.key.id, again.outcome) == (first.key.id, ImportOutcome.UPDATED)
        assert again.key.status is KeyStatus.APPROVED
        assert before is not None and again.key.not_after is not None
        assert again.key.not_after > before
        [same] = _import(session, gpg.public(pgp.good), approve=False)
        assert same.outcome is ImportOutcome.UNCHANGED


def test_rsa_2048_key_is_flagged_and_proves_signatures_only(sessions: sessionmaker[Session],
                                                            pgp: Keys) -> None:
    with session_scope(sessions) as session:
        [imported] = _import(session, pgp.gpg.public(pgp.rsa2048))
        key = imported.key
        assert key.algorithm == "rsa2048" and not key.can_encrypt
        assert key.warning is not None and "3072" in key.warning
        assert usable_partner_keys(session, "alt@stelle.example", KeyKind.OPENPGP, utcnow()) == []
        assert [k.fingerprint for k in verification_keys(
            session, "alt@stelle.example", KeyKind.OPENPGP)] == [pgp.rsa2048]


@pytest.mark.parametrize(("which", "message"), [
    ("rsa1024", "1024 bits is below the minimum of 2048"),
    ("no_email", "no user id with an e-mail address"),
])
def test_unusable_partner_keys_are_refused(pgp: Keys, which: str, message: str) -> None:
    with pytest.raises(KeyDirError, match=message):
        parse_partner_material(pgp.gpg.public(getattr(pgp, which)))


def test_secret_keys_and_keyrings_are_refused(pgp: Keys) -> None:
    with pytest.raises(KeyDirError, match="contains a private key"):
        parse_partner_material(pgp.gpg.secret(pgp.good))
    binary_secret = pgp.gpg.run("--export-secret-keys", pgp.good)
    with pytest.raises(KeyDirError, match="contains a private key"):
        parse_partner_material(binary_secret)
    with pytest.raises(KeyDirError, match="holds 2 OpenPGP keys; import one key per file"):
        parse_partner_material(pgp.gpg.public(pgp.good) + pgp.gpg.public(pgp.sign_only))
    with pytest.raises(KeyDirError, match="not a readable OpenPGP key"):
        parse_partner_material(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n"
                               b"-----END PGP PUBLIC KEY BLOCK-----\n")


def test_signing_only_key_cannot_encrypt(pgp: Keys) -> None:
    [parsed] = parse_partner_material(pgp.gpg.public(pgp.sign_only))
    assert not parsed.can_encrypt


def test_harvested_openpgp_key_is_pending(sessions: sessionmaker[Session], pgp: Keys) -> None:
    with session_scope(sessions) as session:
        key = harvest(session, kind=KeyKind.OPENPGP, data=pgp.gpg.public(pgp.good, armor=False),
                      addresses=["fach@stelle.example"], queue_id="Q9", actor="w", now=utcnow())
        assert key is not None and key.status is KeyStatus.PENDING
        assert usable_partner_keys(session, "fach@stelle.example", KeyKind.OPENPGP, utcnow()) == []


# --- own keys -------------------------------------------------------------------------------


def test_generated_own_key_is_sealed_and_used(sessions: sessionmaker[Session]) -> None:
    master = MasterKey.generate()
    with session_scope(sessions) as session:
        own = generate_own_openpgp(session, master, BOX, algorithm="cv25519", actor="admin",
                                   now=utcnow())
        own_id, fingerprint = own.id, own.fingerprint
        assert own.public.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
        assert own.not_after is not None and own.can_sign
    with session_scope(sessions) as session:
        [material] = own_keys_for(session, master, BOX, KeyKind.OPENPGP)
        assert material.id == own_id
        assert material.private.startswith(b"-----BEGIN PGP PRIVATE KEY BLOCK-----")
        assert pgp_keys.has_secret_material(material.private)
        assert pgp_keys.cert_fingerprint(material.private) == fingerprint
        raw = bytes(session.execute(text("SELECT private_sealed FROM own_keys")).scalar_one())
        assert b"PGP PRIVATE KEY" not in raw and material.private not in raw
        signer = signing_key_for(session, master, BOX, KeyKind.OPENPGP, utcnow())
        assert signer is not None and signer.id == own_id
        assert audit.verify(session).ok


def test_generation_refuses_domains_and_unknown_algorithms(
        sessions: sessionmaker[Session]) -> None:
    master = MasterKey.generate()
    with session_scope(sessions) as session:
        with pytest.raises(KeyDirError, match="needs an address"):
            generate_own_openpgp(session, master, "@jugendamt.example", actor="a", now=utcnow())
        with pytest.raises(KeyDirError, match="unknown algorithm 'rsa2048'"):
            generate_own_openpgp(session, master, BOX, algorithm="rsa2048", actor="a", now=utcnow())


def test_imported_own_keys_roll_over(sessions: sessionmaker[Session], pgp: Keys) -> None:
    master = MasterKey.generate()
    with session_scope(sessions) as session:
        first = generate_own_openpgp(session, master, BOX, actor="a", now=utcnow()).id
        second = import_own_openpgp(session, master, BOX, pgp.gpg.secret(pgp.own), actor="a",
                                    now=utcnow()).id
        with pytest.raises(KeyDirError, match="3072"):
            import_own_openpgp(session, master, BOX, pgp.gpg.secret(pgp.own_rsa2048),
                               actor="a", now=utcnow())
        with pytest.raises(KeyDirError, match="has no secret part"):
            import_own_openpgp(session, master, BOX, pgp.gpg.public(pgp.own), actor="a",
                               now=utcnow())
        with pytest.raises(KeyDirError, match=r"not asd@jugendamt\.example"):
            import_own_openpgp(session, master, BOX, pgp.gpg.secret(pgp.good), actor="a",
                               now=utcnow())
    with session_scope(sessions) as session:
        tried = own_keys_for(session, master, BOX, KeyKind.OPENPGP)
        assert {k.id for k in tried} == {first, second}
        assert [k.id for k in list_own_keys(session, BOX)] == [first, second]
