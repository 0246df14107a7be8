"""OpenPgpKeyring against the real gpg CLI playing the partner agency.

The partner has its own GNUPGHOME; keys are generated once per session (RSA-3072 and
Ed25519/Cv25519) and exchanged as armored exports, like two agencies would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crypto.errors import CryptoError
from crypto.openpgp import OpenPgpKeyring, PgpError, parse_status

GPG = shutil.which("gpg")
pytestmark = pytest.mark.skipif(GPG is None, reason="gpg binary not installed")

TIMEOUT = 120  # key generation on a loaded CI box; operations take well under a second
PLAINTEXT = b"Hilfeplan fuer Kind A.\nVertraulich.\n" * 20


def gpg(home: Path, *args: str, data: bytes | None = None, check: bool = True) -> bytes:
    proc = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"gpg {args} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def gen_key(home: Path, uid: str, curve: bool) -> str:
    nopass = ["--passphrase", "", "--pinentry-mode", "loopback"]
    algo = "ed25519" if curve else "rsa3072"
    usage = "sign" if curve else "sign,encr"
    gpg(home, *nopass, "--quick-generate-key", uid, algo, usage, "never")
    listing = gpg(home, "--with-colons", "--list-secret-keys", uid).decode()
    fpr = re.search(r"^fpr:+([0-9A-F]{40}):", listing, re.MULTILINE)
    assert fpr is not None
    if curve:
        gpg(home, *nopass, "--quick-add-key", fpr.group(1), "cv25519", "encr", "never")
    return fpr.group(1)


@dataclass
class World:
    partner_home: Path
    keyring: OpenPgpKeyring
    gateway_fpr: str
    rsa_fpr: str
    curve_fpr: str
    stranger_fpr: str  # secret key only at the partner, public key unknown to the gateway

    def encrypt(self, *args: str, data: bytes = PLAINTEXT) -> bytes:
        return gpg(
            self.partner_home,
            "--trust-model",
            "always",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
            data=data,
        )


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # Short paths: gpg-agent's socket lives in the home and must fit in sun_path.
    partner_home = tmp_path_factory.mktemp("pgp-partner")
    partner_home.chmod(0o700)
    gateway_home = tmp_path_factory.mktemp("pgp-gw") / "gnupg"
    keyring = OpenPgpKeyring(gateway_home)
    try:
        gateway_fpr = gen_key(gateway_home, "Gateway <gw@xgate.example>", curve=False)
        rsa_fpr = gen_key(partner_home, "Partner <p@partner.example>", curve=False)
        curve_fpr = gen_key(partner_home, "Partner ECC <c@partner.example>", curve=True)
        stranger_fpr = gen_key(partner_home, "Stranger <s@other.example>", curve=True)

        exported = gpg(partner_home, "--export", "--armor", rsa_fpr, curve_fpr)
        imported = keyring.import_keys(exported)
        assert set(imported) == {rsa_fpr, curve_fpr}
        gpg(partner_home, "--import", data=gpg(gateway_home, "--export", "--armor", gateway_fpr))
        yield World(partner_home, keyring, gateway_fpr, rsa_fpr, curve_fpr, stranger_fpr)
    finally:
        for home in (partner_home, gateway_home):
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                capture_output=True,
                timeout=TIMEOUT,
                check=False,
            )


def test_home_created_private(tmp_path: Path) -> None:
    home = tmp_path / "new" / "gnupg"
    OpenPgpKeyring(home)
    assert home.stat().st_mode & 0o777 == 0o700


def test_pgp_error_is_crypto_error() -> None:
    assert issubclass(PgpError, CryptoError)


def test_import_garbage_refused(world: World) -> None:
    with pytest.raises(PgpError, match="no keys imported"):
        world.keyring.import_keys(b"not a key")


@pytest.mark.parametrize("signer", ["rsa", "curve"])
def test_encrypt_sign_roundtrip(world: World, signer: str) -> None:
    fpr = world.rsa_fpr if signer == "rsa" else world.curve_fpr
    message = world.encrypt("--armor", "--encrypt", "--sign", "-u", fpr, "-r", world.gateway_fpr)

    result = world.keyring.decrypt(message)

    assert result.plaintext == PLAINTEXT
    assert result.signed
    assert result.signature_valid
    assert result.signature_status == "GOODSIG"
    assert result.signer_fingerprint == fpr
    assert result.mdc_method != 0 or result.aead_algo


def test_encrypt_to_curve_subkey_roundtrip(world: World, tmp_path: Path) -> None:
    # The gateway decrypting with a Cv25519 subkey of its own (second keyring).
    home = tmp_path / "gw2"
    keyring = OpenPgpKeyring(home)
    try:
        own = gen_key(home, "Gateway ECC <gw2@xgate.example>", curve=True)
        gpg(world.partner_home, "--import", data=gpg(home, "--export", "--armor", own))
        message = world.encrypt("--encrypt", "-r", own)
        result = keyring.decrypt(message)
        assert result.plaintext == PLAINTEXT
        assert not result.signed
        assert result.signer_fingerprint is None
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def test_unsigned_message(world: World) -> None:
    result = world.keyring.decrypt(world.encrypt("--encrypt", "-r", world.gateway_fpr))
    assert result.plaintext == PLAINTEXT
    assert not result.signed
    assert not result.signature_valid


def test_signed_by_unknown_key_is_signed_not_valid(world: World) -> None:
    message = world.encrypt(
        "--encrypt", "--sign", "-u", world.stranger_fpr, "-r", world.gateway_fpr
    )
    result = world.keyring.decrypt(message)
    assert result.plaintext == PLAINTEXT
    assert result.signed
    assert not result.signature_valid
    assert result.signature_status == "ERRSIG"
    assert result.signer_fingerprint is None
    assert result.signer_key_id is not None


def test_encrypted_to_other_key_fails(world: World) -> None:
    message = world.encrypt("--encrypt", "--sign", "-u", world.rsa_fpr, "-r", world.stranger_fpr)
    with pytest.raises(PgpError, match=r"^decryption failed$"):
        world.keyring.decrypt(message)


def test_flipped_bit_in_mdc_fails_although_gpg_emits_plaintext(world: World) -> None:
    message = bytearray(world.encrypt("--encrypt", "-r", world.gateway_fpr))
    message[-1] ^= 0x01  # inside the encrypted MDC packet: everything before it decrypts fine

    # The hazard this module exists for: gpg itself writes the plaintext, then fails.
    proc = subprocess.run(
        ["gpg", "--homedir", str(world.keyring.home), "--batch", "--decrypt"],
        input=bytes(message),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode != 0
    assert PLAINTEXT[:20] in proc.stdout

    with pytest.raises(PgpError, match=r"^decryption failed$"):
        world.keyring.decrypt(bytes(message))


@pytest.mark.parametrize("where", [0.5, 0.9])
def test_flipped_bit_in_ciphertext_fails(world: World, where: float) -> None:
    message = bytearray(
        world.encrypt("--encrypt", "--sign", "-u", world.rsa_fpr, "-r", world.gateway_fpr)
    )
    message[int(len(message) * where)] ^= 0x10
    with pytest.raises(PgpError, match=r"^decryption failed$") as info:
        world.keyring.decrypt(bytes(message))
    assert PLAINTEXT[:20] not in str(info.value).encode()


@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_truncated_armor_fails(world: World, keep: float) -> None:
    armored = world.encrypt("--armor", "--encrypt", "-r", world.gateway_fpr)
    with pytest.raises(PgpError, match=r"^decryption failed$"):
        world.keyring.decrypt(armored[: int(len(armored) * keep)])


def test_not_encrypted_at_all_fails(world: World) -> None:
    signed_only = world.encrypt("--sign", "-u", world.rsa_fpr)
    with pytest.raises(PgpError, match=r"^decryption failed$"):
        world.keyring.decrypt(signed_only)


def test_symmetric_with_mdc_roundtrip(world: World) -> None:
    message = gpg(
        world.partner_home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "x",
        "--symmetric",
        "--cipher-algo",
        "AES256",
        data=PLAINTEXT,
    )
    assert world.keyring.decrypt(message, passphrase="x").plaintext == PLAINTEXT
    with pytest.raises(PgpError, match=r"^decryption failed$"):
        world.keyring.decrypt(message, passphrase="wrong")


def test_decompression_bomb_is_refused(world: World, tmp_path: Path) -> None:
    """5 MB of zeros compress to a few KB; a keyring bounded at 100 KB refuses the message
    and returns none of it."""
    message = gpg(
        world.partner_home, "--pinentry-mode", "loopback", "--passphrase", "x",
        "--symmetric", "--cipher-algo", "AES256", "--compress-algo", "zlib",
        data=b"\0" * 5_000_000,
    )
    assert len(message) < 50_000
    # Symmetric: no keys needed, so a fresh keyring with a small bound will do.
    bounded = OpenPgpKeyring(tmp_path / "bounded", max_output=100_000)
    with pytest.raises(PgpError, match=r"exceeds 100000 bytes"):
        bounded.decrypt(message, passphrase="x")
    # The same message within the default bound decrypts.
    assert len(world.keyring.decrypt(message, passphrase="x").plaintext) == 5_000_000


@pytest.mark.parametrize("cipher", ["AES256", "3DES"])
def test_symmetric_without_mdc_refused(world: World, cipher: str) -> None:
    # GnuPG 2.2 ignores --disable-mdc but --rfc2440 still writes a Symmetrically Encrypted
    # Data packet (tag 9, no MDC); checked here so the test cannot silently test nothing.
    message = gpg(
        world.partner_home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "x",
        "--rfc2440",
        "--symmetric",
        "--cipher-algo",
        cipher,
        data=PLAINTEXT,
    )
    packets = gpg(
        world.partner_home,
        "--list-packets",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "x",
        data=message,
        check=False,
    ).decode()
    assert ":encrypted data packet:" in packets
    assert "mdc_method" not in packets

    with pytest.raises(PgpError, match=re.escape("no integrity protection (MDC); refused")):
        world.keyring.decrypt(message, passphrase="x")


def test_parse_status_ignores_noise() -> None:
    lines = parse_status("gpg: hello\n[GNUPG:] DECRYPTION_INFO 2 9 0\n[GNUPG:] GOODMDC\n")
    assert [(line.keyword, line.args) for line in lines] == [
        ("DECRYPTION_INFO", ("2", "9", "0")),
        ("GOODMDC", ()),
    ]


# --- A tampered signature inside an intact encryption layer -------------------------------
# gpg cannot encrypt pre-built OpenPGP packets (it always wraps input in a literal packet), so
# the test re-uses gpg's public-key packet and its session key and writes the Symmetrically
# Encrypted Integrity Protected Data packet (tag 18, RFC 4880 5.13) itself around a signed
# message whose literal data was altered. Encryption and MDC are then valid; only the
# signature is not.


def _first_packet(data: bytes) -> bytes:
    ctb = data[0]
    assert ctb & 0x80
    if ctb & 0x40:  # new format
        first = data[1]
        if first < 192:
            return data[: 2 + first]
        if first < 224:
            return data[: 3 + ((first - 192) << 8) + data[2] + 192]
        assert first == 255, "partial lengths are not used for key packets"
        return data[: 6 + int.from_bytes(data[2:6], "big")]
    size = {0: 1, 1: 2, 2: 4}[ctb & 3]
    return data[: 1 + size + int.from_bytes(data[1 : 1 + size], "big")]


def _seipd(session_key: bytes, packets: bytes) -> bytes:
    import hashlib
    import os

    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    prefix = os.urandom(16)
    prefix += prefix[-2:]
    body = prefix + packets + b"\xd3\x14"
    body += hashlib.sha1(body).digest()
    encryptor = Cipher(algorithms.AES(session_key), CFB(bytes(16))).encryptor()
    content = b"\x01" + encryptor.update(body) + encryptor.finalize()
    return b"\xd2\xff" + len(content).to_bytes(4, "big") + content


def _rewrap(world: World, signed: bytes) -> bytes:
    carrier = world.encrypt("--encrypt", "--cipher-algo", "AES256", "-r", world.gateway_fpr)
    proc = subprocess.run(
        [
            *("gpg", "--homedir", str(world.keyring.home), "--batch", "--status-fd", "2"),
            *("--show-session-key", "--decrypt"),
        ],
        input=carrier,
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    found = re.search(rb"SESSION_KEY 9:([0-9A-F]+)", proc.stderr)
    assert found is not None, proc.stderr
    return _first_packet(carrier) + _seipd(bytes.fromhex(found.group(1).decode()), signed)


def test_hand_built_seipd_with_good_signature_verifies(world: World) -> None:
    # Guards the construction below: unmodified content must verify.
    signed = world.encrypt("--sign", "--compress-algo", "none", "-u", world.rsa_fpr)
    result = world.keyring.decrypt(_rewrap(world, signed))
    assert result.plaintext == PLAINTEXT
    assert result.signature_valid
    assert result.signer_fingerprint == world.rsa_fpr


def test_tampered_signature_is_signed_not_valid(world: World) -> None:
    signed = world.encrypt("--sign", "--compress-algo", "none", "-u", world.rsa_fpr)
    assert b"Vertraulich" in signed
    tampered = signed.replace(b"Vertraulich", b"Vertraulicx", 1)

    result = world.keyring.decrypt(_rewrap(world, tampered))

    assert result.signed
    assert not result.signature_valid
    assert result.signature_status == "BADSIG"
    assert result.signer_fingerprint is None
    assert result.signer_key_id == world.rsa_fpr[-16:]
    assert result.plaintext == PLAINTEXT.replace(b"Vertraulich", b"Vertraulicx", 1)


def test_public_key_without_mdc_refused(world: World) -> None:
    # The EFAIL shape proper: public-key encrypted, no MDC (gpg --rfc2440 still writes it).
    message = world.encrypt("--rfc2440", "--encrypt", "-r", world.gateway_fpr)
    packets = gpg(world.keyring.home, "--list-packets", data=message, check=False).decode()
    assert ":encrypted data packet:" in packets
    assert "mdc_method" not in packets
    with pytest.raises(PgpError, match=re.escape("no integrity protection (MDC); refused")):
        world.keyring.decrypt(message)
