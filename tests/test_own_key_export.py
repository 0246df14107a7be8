"""``xgate keys own export``: the office's public keys for partners and citizens.

S/MIME certificates come with the intermediate certificates they were imported with (not
the root, not unrelated certificates), so openssl on the partner's side builds the chain
from the root alone; our own signatures carry the same intermediates. OpenPGP keys come
armored and public only: gpg imports them without any secret key, and none of the
private key's bytes appear in what is written.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from pysequoia.packet import Tag

from crypto import pgp_keys
from crypto.at_rest import MasterKey
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.keydir.models import KeyKind
from gateway.keydir.own_keys import import_own_smime, own_keys_for
from gateway.models import Direction, MessageState
from gateway.services import Services, build_services
from gateway.settings import Settings, load_settings
from tests.support import crypto_setup
from tests.support.cli import Cli
from tests.support.gpg_partner import GpgPartner
from tests.support.openssl_partner import OpensslPartner, mail
from tests.support.pipeline import drain, enqueue, load_message
from tests.support.pki import CA_KEY_USAGE
from tests.support.smime_pki import DAY, Party, make_ca, make_person, now, write_party

MAILBOX = "hilfeplan@jugendamt.example"
STAFF = "sachbearbeitung@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
TIMEOUT = 60


def make_intermediate(directory: Path, name: str, root: Party) -> Party:
    assert isinstance(root.key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(65537, 3072)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .issuer_name(root.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - 10 * DAY).not_valid_after(now() + 300 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(root.key, hashes.SHA256()))
    return write_party(directory, name, cert, key)


@dataclass(frozen=True)
class Pki:
    directory: Path
    root: Party
    intermediate: Party
    unrelated: Party  # another CA, in the same file by mistake
    ours: Party  # the mailbox's certificate, issued by the intermediate
    staff: Party  # a staff member's, issued by the intermediate
    partner: Party  # the partner's, issued by the root


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("own-export")
    root = make_ca(d, "root")
    intermediate = make_intermediate(d, "Jugendamt Sub-CA", root)
    return Pki(d, root, intermediate, make_ca(d, "unrelated"),
               make_person(d, "ours", MAILBOX, intermediate),
               make_person(d, "staff", STAFF, intermediate),
               make_person(d, "partner", PARTNER, root))


def _pem(*parties: Party) -> bytes:
    return b"".join(p.cert_pem.read_bytes() for p in parties)


def _private_numbers(key: object) -> list[bytes]:
    """The secret numbers of an RSA key as big-endian bytes (d, p, q)."""
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.private_numbers()
    return [n.to_bytes((n.bit_length() + 7) // 8, "big")
            for n in (numbers.d, numbers.p, numbers.q)]


def _binary_views(exported: bytes) -> list[bytes]:
    """The file itself and every base64 block in it decoded: where key bytes could hide."""
    views = [exported]
    for block in re.findall(rb"-----BEGIN [^-]+-----\r?\n(.*?)-----END", exported, re.DOTALL):
        lines = [line for line in block.splitlines()
                 if line and b":" not in line and not line.startswith(b"=")]
        views.append(base64.b64decode(b"".join(lines)))
    return views


def _master(cli: Cli) -> tuple[Settings, MasterKey]:
    settings = load_settings(cli.config)
    return settings, MasterKey.load(settings.resolve(settings.storage.master_key_file))


# --- S/MIME -------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["pkcs12", "pem"])
def test_certificate_is_exported_with_its_intermediates(cli: Cli, pki: Pki,
                                                        form: str) -> None:
    if form == "pkcs12":
        bundle = pkcs12.serialize_key_and_certificates(
            b"ours", pki.ours.key, pki.ours.cert,  # type: ignore[arg-type]
            [pki.root.cert, pki.unrelated.cert, pki.intermediate.cert],
            serialization.NoEncryption())
        cli("keys", "own", "import", "--address", MAILBOX,
            "--pkcs12", cli.file("ours.p12", bundle))
    else:
        # The order in the file does not matter, nor does a certificate that issued nothing.
        chain = cli.file("chain.pem", _pem(pki.unrelated, pki.root, pki.ours, pki.intermediate))
        _, printed, _ = cli("keys", "own", "import", "--address", MAILBOX, "--cert", chain,
                            "--key", str(pki.ours.key_pem))
        assert "kept 1 intermediate certificate (sent with" in printed
    out = cli.tmp / "jugendamt.pem"
    _, printed, _ = cli("keys", "own", "export", "--kind", "smime", "--out", str(out))
    assert printed.startswith(f"wrote 1 public key to {out}\n")
    assert f"smime {MAILBOX}" in printed and pki.ours.fingerprint in printed

    exported = out.read_bytes()
    certs = x509.load_pem_x509_certificates(exported)
    assert certs == [pki.ours.cert, pki.intermediate.cert]  # no root, nothing unrelated
    assert b"PRIVATE" not in exported
    for secret in _private_numbers(pki.ours.key):
        assert all(secret not in view for view in _binary_views(exported))
    # The partner's openssl trusts only the root and builds the chain from the file.
    leaf = cli.tmp / "leaf.pem"
    leaf.write_bytes(pki.ours.cert_pem.read_bytes())
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(pki.root.cert_pem),
                               "-untrusted", str(out), "-purpose", "smimeencrypt", str(leaf)],
                              capture_output=True, timeout=TIMEOUT, check=False)
    assert verified.returncode == 0, verified.stderr
    # Without --out the same bytes go to standard output.
    _, printed, _ = cli("keys", "own", "export", "--address", MAILBOX)
    assert printed.encode() == exported


def test_retired_expired_and_other_keys_are_not_exported(cli: Cli, pki: Pki) -> None:
    assert cli.fails("keys", "own", "export") == "no own key in use to export"
    cli("keys", "own", "import", "--address", MAILBOX, "--cert", str(pki.ours.cert_pem),
        "--key", str(pki.ours.key_pem))
    cli("keys", "own", "import", "--address", STAFF, "--cert", str(pki.staff.cert_pem),
        "--key", str(pki.staff.key_pem))
    _, printed, _ = cli("keys", "own", "export", "--address", STAFF.upper())
    assert x509.load_pem_x509_certificates(printed.encode()) == [pki.staff.cert]
    assert cli.fails("keys", "own", "export", "--address", STAFF, "--kind", "openpgp") == (
        f"no openpgp own key in use for {STAFF} to export")
    _, listed, _ = cli("keys", "own", "list", "--json")
    [staff_key] = [k["id"] for k in json.loads(listed) if k["address"] == STAFF]
    cli("keys", "own", "retire", str(staff_key))
    _, printed, _ = cli("keys", "own", "export")
    assert x509.load_pem_x509_certificates(printed.encode()) == [pki.ours.cert]


# --- OpenPGP ------------------------------------------------------------------------------


def _secret_tails(secret_key: bytes) -> list[bytes]:
    """The secret number of each secret (sub)key packet: after its public part come the
    S2K usage octet (0: unprotected), the MPI's two-octet bit count, the number, and a
    two-octet checksum (RFC 4880 section 5.5.3)."""
    packets = pgp_keys.key_packets(secret_key)
    publics = {bytes(p.body) for p in pgp_keys.key_packets(pgp_keys.public_part(secret_key))
               if p.tag in (Tag.PublicKey, Tag.PublicSubkey)}
    tails = []
    for packet in packets:
        if packet.tag in (Tag.SecretKey, Tag.SecretSubkey):
            body = bytes(packet.body)
            public = next(p for p in publics if body.startswith(p))
            tail = body[len(public):]
            assert tail[0] == 0
            tails.append(tail[3:-2])
    assert len(tails) >= 2  # the primary key and its subkeys
    return tails


@pytest.fixture
def gpg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgPartner]:
    with GpgPartner.create(tmp_path_factory.mktemp("citizen")) as partner:
        yield partner


def test_openpgp_key_is_exported_public_only(cli: Cli, gpg: GpgPartner) -> None:
    cli("keys", "own", "generate", "--address", MAILBOX)
    out = cli.tmp / "jugendamt.asc"
    cli("keys", "own", "export", "--kind", "openpgp", "--out", str(out))
    exported = out.read_bytes()
    assert exported.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert b"PRIVATE" not in exported
    assert not pgp_keys.has_secret_material(exported)

    settings, master = _master(cli)
    engine = make_engine(settings)
    try:
        with read_scope(make_session_factory(engine)) as session:
            [own] = own_keys_for(session, master, MAILBOX, KeyKind.OPENPGP)
    finally:
        engine.dispose()
    binary = b"".join(bytes(p.body) for p in pgp_keys.key_packets(exported))
    for secret in _secret_tails(own.private):
        assert len(secret) >= 31
        assert secret not in binary and secret not in exported

    # What a citizen does with the file: gpg imports a public key, no secret key.
    gpg.import_keys(exported)
    listing = gpg.run("--with-colons", "--list-keys", MAILBOX).stdout.decode()
    assert f"fpr:::::::::{own.fingerprint}:" in listing
    assert gpg.run("--with-colons", "--list-secret-keys", check=False).stdout == b""


# --- our signatures carry the chain --------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, database_url: str, pki: Pki) -> Settings:
    return crypto_setup.outbound_settings(tmp_path / "var", database_url, pki.root.cert_pem)


def test_outbound_signature_carries_the_intermediate(settings: Settings, pki: Pki) -> None:
    transport = RecordingTransport()
    services: Services = build_services(settings, transport=transport)
    try:
        with session_scope(services.sessions) as s:
            import_own_smime(s, services.master_key, STAFF,
                             pki.staff.key_pem.read_bytes() + _pem(pki.staff, pki.intermediate),
                             actor="test", now=services.clock())
        crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                             outbound_policy="require-smime")
        crypto_setup.partner_key(services, pki.partner.der)
        entity = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHilfeplan Kind A.\r\n"
        qid = enqueue(services, [PARTNER], mail(entity, sender=STAFF, to=PARTNER),
                      mail_from=STAFF, direction=Direction.OUTBOUND)
        drain(services)
        assert load_message(services, qid).state == MessageState.DELIVERED
        [(_, _, _, data)] = transport.sent
    finally:
        services.sessions.kw["bind"].dispose()
    openssl = OpensslPartner(pki.directory)
    signed = openssl.decrypt(data, pki.partner)
    # The partner trusts only the root: the intermediate must come with the signature.
    assert b"Hilfeplan Kind A." in openssl.verify(signed, pki.root)
