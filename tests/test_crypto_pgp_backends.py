"""Both OpenPGP backends against the real gpg CLI playing the partner agency.

Every behavioural test runs over both backends: ``gnupg`` (python-gnupg over a gateway-owned
home) and ``sequoia`` (pysequoia in-process, with the GnuPG backend as fallback for what
pysequoia cannot verify). Tests that only make sense for one of them say so in their name.
The partner's keys come from gpg; the gateway's own keys from ``generate_key``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.errors import CryptoError
from crypto.pgp_backend import (
    DECRYPTION_FAILED,
    DEFAULT_MAX_OUTPUT,
    NO_INTEGRITY,
    REASON_BAD_SIGNATURE,
    REASON_KEY_EXPIRED,
    REASON_KEY_REVOKED,
    REASON_NO_SIGNATURE,
    REASON_SEVERAL_SIGNATURES,
    PgpBackend,
    PgpError,
    PgpKeyError,
    PgpMalformed,
    PgpNoIntegrity,
    PgpTooLarge,
    inspect_message,
)
from crypto.pgp_gnupg import GnupgBackend
from crypto.pgp_keys import (
    cert_emails,
    cert_fingerprint,
    check_minimum_strength,
    describe_keys,
    encryption_strength_problem,
    generate_key,
    has_secret_material,
    public_part,
)
from crypto.pgp_sequoia import REASON_NOT_VERIFIABLE, SequoiaBackend
from tests.support.gpg_partner import GpgPartner

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg binary not installed")

PLAINTEXT = b"Hilfeplan fuer Kind A.\nVertraulich.\n" * 20
FAILED = "^" + re.escape(DECRYPTION_FAILED) + "$"


@dataclass
class World:
    partner: GpgPartner
    rsa: str  # partner keys: fingerprints, and their public certificates below
    curve: str
    stranger: str  # signs and receives at the partner; the gateway never gets its cert
    weak: str  # RSA-2048
    expired: str
    revoked: str
    certs: dict[str, bytes]
    gw_rsa: bytes  # the gateway's own secret keys
    gw_curve: bytes
    gw_rsa_fpr: str
    gw_curve_fpr: str
    expired_clearsigned: bytes
    revoked_detached: bytes

    def known(self) -> list[bytes]:
        return [self.certs[n] for n in ("rsa", "curve", "weak", "expired", "revoked")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with GpgPartner.create(tmp_path_factory.mktemp("partner")) as partner:
        rsa = partner.generate("Partner RSA <ASD@Partner.example>", "rsa3072")
        curve = partner.generate("Partner ECC <ecc@partner.example>", "cv25519")
        stranger = partner.generate("Stranger <s@other.example>", "cv25519")
        weak = partner.generate("Old Client <old@partner.example>", "rsa2048")
        expired = partner.generate("Expired <exp@partner.example>", "cv25519", expires="1y",
                                   at="20200101T000000")
        expired_clearsigned = partner.sign(b"Alt.\n", expired, "clear",
                                           extra=["--faked-system-time", "20200601T000000"])
        revoked = partner.generate("Revoked <rev@partner.example>", "cv25519")
        revoked_detached = partner.sign(PLAINTEXT, revoked, "detached")
        partner.revoke(revoked)
        gw_rsa = generate_key("Jugendamt <ja@xgate.example>", algorithm="rsa3072", expires=None)
        gw_curve = generate_key("Jugendamt ECC <ja-ecc@xgate.example>", algorithm="cv25519",
                                expires=None)
        partner.import_keys(public_part(gw_rsa) + public_part(gw_curve))
        names = {"rsa": rsa, "curve": curve, "stranger": stranger, "weak": weak,
                 "expired": expired, "revoked": revoked}
        certs = {name: partner.export_public(fpr) for name, fpr in names.items()}
        yield World(partner, rsa, curve, stranger, weak, expired, revoked, certs, gw_rsa,
                    gw_curve, cert_fingerprint(gw_rsa), cert_fingerprint(gw_curve),
                    expired_clearsigned, revoked_detached)


def _make_backend(kind: str, home: Path, max_output: int = DEFAULT_MAX_OUTPUT) -> PgpBackend:
    if kind == "gnupg":
        return GnupgBackend(home / "gnupg", max_output=max_output)
    return SequoiaBackend(fallback=GnupgBackend(home / "fallback", max_output=max_output),
                          max_output=max_output)


@pytest.fixture(scope="module", params=["gnupg", "sequoia"])
def backend(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgpBackend]:
    home = tmp_path_factory.mktemp(f"gw-{request.param}")
    yield _make_backend(request.param, home)
    _kill_agents(home)


def _kill_agents(root: Path) -> None:
    for sub in ("gnupg", "fallback"):
        if (root / sub).exists():
            GpgPartner(root / sub).close()


def _encrypt(world: World, *, to: str | None = None, signer: str | None = None,
             extra: tuple[str, ...] = (), data: bytes = PLAINTEXT) -> bytes:
    return world.partner.encrypt(data, [to or world.gw_curve_fpr], signer=signer, extra=extra)


# --- decrypt: what partners send --------------------------------------------------------------


@pytest.mark.parametrize("signer", ["rsa", "curve"])
@pytest.mark.parametrize("ours", ["rsa", "curve"])
def test_decrypt_gpg_encrypt_and_sign(world: World, backend: PgpBackend, signer: str,
                                      ours: str) -> None:
    signer_fpr = world.rsa if signer == "rsa" else world.curve
    our_fpr = world.gw_rsa_fpr if ours == "rsa" else world.gw_curve_fpr
    message = _encrypt(world, to=our_fpr, signer=signer_fpr)

    result = backend.decrypt(message, [world.gw_rsa, world.gw_curve], world.known())

    assert result.plaintext == PLAINTEXT
    assert result.signed and result.signature_valid
    assert result.signer_fingerprint == signer_fpr
    assert result.signer_key_id == signer_fpr[-16:]
    assert result.recipient_fingerprint == our_fpr
    assert result.signature_reason is None
    # gpg names the cipher; the in-process backend opens gpg's SEIPD v1 itself and knows it.
    assert result.cipher == "aes256"
    assert result.engine == backend.name  # no gpg process behind the in-process backend


def test_decrypt_uncompressed_stays_in_process(world: World, backend: PgpBackend) -> None:
    message = _encrypt(world, signer=world.curve, extra=("--compress-algo", "none"))
    result = backend.decrypt(message, [world.gw_curve], world.known())
    assert result.plaintext == PLAINTEXT
    assert result.signature_valid and result.signer_fingerprint == world.curve
    assert result.engine == backend.name


def test_sequoia_gpg_default_message_needs_no_fallback(world: World) -> None:
    """gpg compresses by default; the signature inside is still verified in-process."""
    message = _encrypt(world, signer=world.rsa)
    result = SequoiaBackend().decrypt(message, [world.gw_curve], world.known())
    assert result.plaintext == PLAINTEXT
    assert result.engine == "sequoia" and result.cipher == "aes256"
    assert result.signed and result.signature_valid
    assert result.signer_fingerprint == world.rsa


def test_sequoia_non_aes_compressed_message_needs_the_fallback(world: World,
                                                               tmp_path: Path) -> None:
    """Beyond the in-process SEIPD v1 path (AES only), pysequoia's own decryption still
    cannot verify a signature inside compressed data: the fallback (gpg) does."""
    message = _encrypt(world, signer=world.rsa, extra=("--cipher-algo", "CAMELLIA256"))
    alone = SequoiaBackend().decrypt(message, [world.gw_curve], world.known())
    assert alone.plaintext == PLAINTEXT
    assert alone.signed and not alone.signature_valid
    assert alone.signature_reason == REASON_NOT_VERIFIABLE
    assert alone.signer_key_id == world.rsa[-16:]
    backend = _make_backend("sequoia", tmp_path)
    try:
        helped = backend.decrypt(message, [world.gw_curve], world.known())
    finally:
        _kill_agents(tmp_path)
    assert helped.plaintext == PLAINTEXT and helped.signature_valid
    assert helped.signer_fingerprint == world.rsa and helped.engine == "gnupg"


def test_decrypt_unsigned(world: World, backend: PgpBackend) -> None:
    result = backend.decrypt(_encrypt(world), [world.gw_curve], world.known())
    assert result.plaintext == PLAINTEXT
    assert not result.signed and not result.signature_valid
    assert result.signer_fingerprint is None and result.signature_reason is None


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("armor", [True, False])
def test_binary_file_comes_out_byte_identical(world: World, backend: PgpBackend,
                                              armor: bool, compress: bool) -> None:
    """``gpg --encrypt --sign`` of a binary file (a binary literal packet), armored or not:
    every bare CR and LF, every NUL is data and comes back as it went in."""
    rng = random.Random(4880)
    data = (b"\r\n.\r\n\n\r\r\r\n\x00" + bytes(rng.choice(b"\r\n\x00\xffa") for _ in range(5000))
            + rng.randbytes(30000) + b"\r")
    extra = () if compress else ("--compress-algo", "none")
    message = world.partner.encrypt(data, [world.gw_curve_fpr], signer=world.curve,
                                    armor=armor, extra=extra)
    assert message.startswith(b"-----BEGIN PGP MESSAGE-----") is armor
    result = backend.decrypt(message, [world.gw_curve], world.known())
    assert result.plaintext == data
    assert result.signature_valid


@pytest.mark.parametrize("compress", [True, False])
def test_decrypt_signed_by_unknown_key(world: World, backend: PgpBackend,
                                       compress: bool) -> None:
    extra = () if compress else ("--compress-algo", "none")
    message = _encrypt(world, signer=world.stranger, extra=extra)
    result = backend.decrypt(message, [world.gw_curve], world.known())
    assert result.plaintext == PLAINTEXT
    assert result.signed and not result.signature_valid
    assert result.signer_fingerprint is None
    assert result.signer_key_id == world.stranger[-16:]
    assert result.signature_reason == f"unknown signer key {world.stranger[-16:]}"


def test_decrypt_two_signatures_are_not_valid(world: World, backend: PgpBackend) -> None:
    message = _encrypt(world, signer=world.rsa,
                       extra=("-u", world.curve, "--compress-algo", "none"))
    result = backend.decrypt(message, [world.gw_curve], world.known())
    assert result.plaintext == PLAINTEXT
    assert result.signed and not result.signature_valid
    assert result.signature_reason == REASON_SEVERAL_SIGNATURES


def test_signer_cert_must_be_passed_in(world: World, backend: PgpBackend) -> None:
    """The GnuPG home remembers certificates; only those of this call count."""
    message = _encrypt(world, signer=world.rsa)
    assert backend.decrypt(message, [world.gw_curve], world.known()).signature_valid
    result = backend.decrypt(message, [world.gw_curve], [world.certs["curve"]])
    assert result.signed and not result.signature_valid
    assert result.signature_reason == f"unknown signer key {world.rsa[-16:]}"


def test_secret_key_must_be_passed_in(world: World, backend: PgpBackend) -> None:
    message = _encrypt(world, to=world.gw_rsa_fpr)
    assert backend.decrypt(message, [world.gw_rsa], []).plaintext == PLAINTEXT
    with pytest.raises(PgpError, match=FAILED):
        backend.decrypt(message, [world.gw_curve], [])


# --- decrypt: failures are uniform ------------------------------------------------------------


def test_encrypted_for_a_key_we_do_not_have(world: World, backend: PgpBackend) -> None:
    message = _encrypt(world, to=world.stranger, signer=world.rsa)
    with pytest.raises(PgpError, match=FAILED):
        backend.decrypt(message, [world.gw_rsa, world.gw_curve], world.known())


@pytest.mark.parametrize("where", [0.3, 0.6, 0.95, -1])
def test_flipped_bit_fails_uniformly(world: World, backend: PgpBackend, where: float) -> None:
    message = bytearray(world.partner.encrypt(PLAINTEXT, [world.gw_curve_fpr], signer=world.rsa,
                                              armor=False))
    message[int(len(message) * where) if where >= 0 else -1] ^= 0x10
    with pytest.raises(PgpError, match=FAILED) as info:
        backend.decrypt(bytes(message), [world.gw_curve], world.known())
    assert type(info.value) is PgpError


@pytest.mark.parametrize("keep", [0.3, 0.8, 0.9])
def test_truncated_armor_fails_uniformly(world: World, backend: PgpBackend, keep: float) -> None:
    armored = _encrypt(world, signer=world.curve)
    cut = int(len(armored) * keep)
    assert cut < armored.rindex(b"\n=")  # inside the base64, not just the armor tail
    with pytest.raises(PgpError, match=FAILED) as info:
        backend.decrypt(armored[:cut], [world.gw_curve], world.known())
    assert type(info.value) is PgpError


def test_tampered_signature_inside_intact_encryption(world: World, backend: PgpBackend) -> None:
    signed = world.partner.sign(PLAINTEXT, world.rsa, "inline", armor=False,
                                extra=["--compress-algo", "none"])
    assert b"Vertraulich" in signed
    tampered = signed.replace(b"Vertraulich", b"Vertraulicx", 1)

    result = backend.decrypt(_rewrap(world, tampered), [world.gw_curve], world.known())

    assert result.plaintext == PLAINTEXT.replace(b"Vertraulich", b"Vertraulicx", 1)
    assert result.signed and not result.signature_valid
    assert result.signature_reason == REASON_BAD_SIGNATURE
    assert result.signer_fingerprint is None
    assert result.signer_key_id == world.rsa[-16:]
    # The same construction with the untouched content verifies: the test is not vacuous.
    good = backend.decrypt(_rewrap(world, signed), [world.gw_curve], world.known())
    assert good.signature_valid and good.signer_fingerprint == world.rsa


def test_random_corruption_never_yields_other_plaintext(world: World,
                                                        backend: PgpBackend) -> None:
    """Bit flips anywhere: the right plaintext, or one of the three refusals; nothing else."""
    rng = random.Random(3156)
    message = world.partner.encrypt(PLAINTEXT, [world.gw_curve_fpr], signer=world.curve,
                                    armor=False, extra=["--compress-algo", "none"])
    outcomes: set[str] = set()
    for _ in range(40):
        damaged = bytearray(message)
        for _ in range(rng.choice((1, 2, 8))):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        try:
            result = backend.decrypt(bytes(damaged), [world.gw_curve], world.known())
        except (PgpMalformed, PgpNoIntegrity) as exc:
            outcomes.add(type(exc).__name__)
        except PgpError as exc:
            assert str(exc) == DECRYPTION_FAILED
            outcomes.add("failed")
        else:
            assert result.plaintext == PLAINTEXT
            outcomes.add("intact")
    assert "failed" in outcomes


def test_message_without_mdc_is_refused(world: World, backend: PgpBackend) -> None:
    # gpg 2.2 ignores --disable-mdc, but --rfc2440 still writes a Symmetrically Encrypted Data
    # packet (tag 9, no MDC) for a public-key message: the EFAIL shape.
    message = _encrypt(world, signer=world.rsa, extra=("--rfc2440",))
    assert 9 in inspect_message(message).tags
    assert not inspect_message(message).integrity_protected
    with pytest.raises(PgpNoIntegrity, match=re.escape(NO_INTEGRITY)):
        backend.decrypt(message, [world.gw_curve], world.known())


@pytest.mark.parametrize("data", [b"", b"Hallo, das ist kein OpenPGP.", b"\x00\x01\x02" * 50,
                                  b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n"])
def test_not_openpgp_is_malformed(backend: PgpBackend, world: World, data: bytes) -> None:
    with pytest.raises(PgpMalformed):
        backend.decrypt(data, [world.gw_curve], world.known())


def test_signed_only_message_does_not_decrypt(world: World, backend: PgpBackend) -> None:
    signed = world.partner.sign(PLAINTEXT, world.rsa, "inline")
    with pytest.raises(PgpError, match=FAILED):
        backend.decrypt(signed, [world.gw_curve], world.known())


@pytest.mark.parametrize("kind", ["gnupg", "sequoia"])
def test_decompression_bomb_is_refused(world: World, tmp_path: Path, kind: str) -> None:
    message = world.partner.encrypt(b"\0" * 5_000_000, [world.gw_curve_fpr],
                                    extra=["--compress-algo", "zlib"])
    assert len(message) < 50_000
    bounded = _make_backend(kind, tmp_path, max_output=100_000)
    try:
        with pytest.raises(PgpTooLarge, match="exceeds 100000 bytes"):
            bounded.decrypt(message, [world.gw_curve], [])
    finally:
        _kill_agents(tmp_path)


def test_secret_key_without_secret_part_is_a_key_error(world: World,
                                                       backend: PgpBackend) -> None:
    with pytest.raises(PgpKeyError):
        backend.decrypt(_encrypt(world), [public_part(world.gw_curve)], [])


# --- verify -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signer", ["rsa", "curve", "weak"])
def test_detached_signature(world: World, backend: PgpBackend, signer: str) -> None:
    fpr = {"rsa": world.rsa, "curve": world.curve, "weak": world.weak}[signer]
    signature = world.partner.sign(PLAINTEXT, fpr, "detached")

    good = backend.verify(PLAINTEXT, signature, world.known())
    assert good.signed and good.valid and good.reason is None
    assert good.signer_fingerprint == fpr
    assert good.content == PLAINTEXT

    bad = backend.verify(PLAINTEXT + b"!", signature, world.known())
    assert bad.signed and not bad.valid
    assert bad.reason == REASON_BAD_SIGNATURE
    assert bad.signer_fingerprint is None and bad.signer_key_id == fpr[-16:]


def test_detached_signature_by_unknown_key(world: World, backend: PgpBackend) -> None:
    signature = world.partner.sign(PLAINTEXT, world.stranger, "detached")
    result = backend.verify(PLAINTEXT, signature, world.known())
    assert not result.valid
    assert result.reason == f"unknown signer key {world.stranger[-16:]}"


def test_tampered_signature_bytes(world: World, backend: PgpBackend) -> None:
    signature = world.partner.sign(PLAINTEXT, world.rsa, "detached", armor=False)
    tampered = bytearray(signature)
    tampered[-20] ^= 0x01  # inside the RSA signature value
    result = backend.verify(PLAINTEXT, bytes(tampered), world.known())
    assert result.signed and not result.valid and result.reason == REASON_BAD_SIGNATURE


def test_cleartext_signed(world: World, backend: PgpBackend) -> None:
    text = b"Sehr geehrte Damen und Herren,  \n- anbei der Bericht.\n\nGruss\n"
    signed = world.partner.sign(text, world.curve, "clear")
    result = backend.verify(signed, None, world.known())
    assert result.valid and result.signer_fingerprint == world.curve
    # Trailing blanks are not signed (RFC 4880 7.1) and are dropped; dash-escaping undone.
    assert result.content == b"Sehr geehrte Damen und Herren,\n- anbei der Bericht.\n\nGruss\n"

    tampered = backend.verify(signed.replace(b"Bericht", b"Beriche"), None, world.known())
    assert tampered.signed and not tampered.valid
    assert tampered.reason == REASON_BAD_SIGNATURE
    assert b"Beriche" in tampered.content


@pytest.mark.parametrize("armor", [True, False])
def test_inline_signed(world: World, backend: PgpBackend, armor: bool) -> None:
    signed = world.partner.sign(PLAINTEXT, world.rsa, "inline", armor=armor)
    result = backend.verify(signed, None, world.known())
    assert result.valid and result.signer_fingerprint == world.rsa
    assert result.content == PLAINTEXT


def test_inline_signed_tampered(world: World, backend: PgpBackend) -> None:
    signed = world.partner.sign(PLAINTEXT, world.rsa, "inline", armor=False,
                                extra=["--compress-algo", "none"])
    tampered = signed.replace(b"Vertraulich", b"Vertraulicx", 1)
    result = backend.verify(tampered, None, world.known())
    assert result.signed and not result.valid and result.reason == REASON_BAD_SIGNATURE
    assert result.content == PLAINTEXT.replace(b"Vertraulich", b"Vertraulicx", 1)


def test_signature_by_expired_key(world: World, backend: PgpBackend) -> None:
    result = backend.verify(world.expired_clearsigned, None, world.known())
    assert result.signed and not result.valid
    assert result.reason == REASON_KEY_EXPIRED
    assert result.content == b"Alt.\n"


def test_signature_by_revoked_key(world: World, backend: PgpBackend) -> None:
    result = backend.verify(PLAINTEXT, world.revoked_detached, world.known())
    assert result.signed and not result.valid
    assert result.reason == REASON_KEY_REVOKED


def test_literal_message_without_signature(world: World, backend: PgpBackend) -> None:
    literal = world.partner.run("--store", "--armor", data=PLAINTEXT).stdout
    result = backend.verify(literal, None, world.known())
    assert not result.signed and not result.valid
    assert result.reason == REASON_NO_SIGNATURE
    assert result.content == PLAINTEXT


@pytest.mark.parametrize("what", ["garbage", "encrypted"])
def test_verify_refuses_what_is_not_a_signed_message(world: World, backend: PgpBackend,
                                                     what: str) -> None:
    data = b"kein OpenPGP" if what == "garbage" else _encrypt(world)
    with pytest.raises(PgpMalformed):
        backend.verify(data, None, world.known())
    with pytest.raises(PgpMalformed):
        backend.verify(PLAINTEXT, data, world.known())


# --- encrypt and sign: what partners receive --------------------------------------------------


@pytest.mark.parametrize("ours", ["rsa", "curve"])
def test_encrypt_for_partner(world: World, backend: PgpBackend, ours: str) -> None:
    secret, fpr = ((world.gw_rsa, world.gw_rsa_fpr) if ours == "rsa"
                   else (world.gw_curve, world.gw_curve_fpr))
    message = backend.encrypt(PLAINTEXT, [world.certs["rsa"], world.certs["curve"]], secret)
    assert message.startswith(b"-----BEGIN PGP MESSAGE-----")

    outcome = world.partner.decrypt(message)

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout == PLAINTEXT
    assert outcome.has("GOODSIG") and outcome.has("GOODMDC")
    validsig = outcome.args("VALIDSIG")
    assert validsig is not None and validsig[9] == fpr
    info = outcome.args("DECRYPTION_INFO")  # <mdc_method> <sym_algo> [<aead_algo>]
    assert info is not None and info[0] == "2" and info[1] == "9"  # MDC, AES-256
    packets = world.partner.run("--list-packets", data=message, check=False).stdout
    assert b"compressed packet" not in packets  # so peers can verify in-process


def test_encrypt_binary_and_unsigned(world: World, backend: PgpBackend) -> None:
    message = backend.encrypt(PLAINTEXT, [world.certs["curve"]], None, armor=False)
    assert message[0] & 0x80
    outcome = world.partner.decrypt(message)
    assert outcome.stdout == PLAINTEXT and not outcome.has("NEWSIG")


def test_encrypt_to_expired_key_fails(world: World, backend: PgpBackend) -> None:
    with pytest.raises(PgpKeyError):
        backend.encrypt(PLAINTEXT, [world.certs["expired"]], None)


@pytest.mark.parametrize("ours", ["rsa", "curve"])
def test_sign_detached_for_partner(world: World, backend: PgpBackend, ours: str) -> None:
    secret, fpr = ((world.gw_rsa, world.gw_rsa_fpr) if ours == "rsa"
                   else (world.gw_curve, world.gw_curve_fpr))
    signature = backend.sign_detached(PLAINTEXT, secret)
    assert signature.startswith(b"-----BEGIN PGP SIGNATURE-----")
    outcome = world.partner.verify_detached(PLAINTEXT, signature)
    assert outcome.returncode == 0 and outcome.has("GOODSIG")
    validsig = outcome.args("VALIDSIG")
    assert validsig is not None and validsig[9] == fpr
    assert world.partner.verify_detached(PLAINTEXT + b"x", signature).has("BADSIG")


@pytest.mark.parametrize("producer", ["gnupg", "sequoia"])
def test_backends_read_each_other(world: World, backend: PgpBackend, tmp_path: Path,
                                  producer: str) -> None:
    # A gpg-made key pair stands for "ours" here: see test_seipd_v2_... for pysequoia keys.
    secret = world.partner.export_secret(world.curve)
    other = _make_backend(producer, tmp_path)
    try:
        message = other.encrypt(PLAINTEXT, [world.certs["curve"]], world.gw_rsa)
        assert 18 in inspect_message(message).tags  # SEIPD (v1): integrity-protected
        result = backend.decrypt(message, [secret], [public_part(world.gw_rsa)])
        assert result.plaintext == PLAINTEXT
        assert result.recipient_fingerprint == world.curve
        assert result.signature_valid and result.signer_fingerprint == world.gw_rsa_fpr
        # Our own output is uncompressed, so even the in-process backend verifies it itself.
        assert result.engine == backend.name
    finally:
        _kill_agents(tmp_path)


def test_seipd_v2_to_pysequoia_keys_is_beyond_gnupg_2_2(world: World, tmp_path: Path) -> None:
    """A known limit, pinned: pysequoia encrypts to its own keys with SEIPD v2 (RFC 9580)."""
    message = SequoiaBackend().encrypt(PLAINTEXT, [public_part(world.gw_curve)], world.gw_rsa)
    shape = inspect_message(message)
    assert shape.cipher == "aes256"  # SEIPD v2 names its cipher in the clear
    result = SequoiaBackend().decrypt(message, [world.gw_curve], [public_part(world.gw_rsa)])
    assert result.plaintext == PLAINTEXT and result.signature_valid
    assert result.cipher == "aes256"
    gnupg = GnupgBackend(tmp_path / "gnupg")
    try:
        with pytest.raises(PgpError, match=FAILED):
            gnupg.decrypt(message, [world.gw_curve], [public_part(world.gw_rsa)])
    finally:
        _kill_agents(tmp_path)


# --- errors and logs --------------------------------------------------------------------------


def test_error_tree() -> None:
    for exc in (PgpNoIntegrity, PgpMalformed, PgpTooLarge, PgpKeyError):
        assert issubclass(exc, PgpError)
    assert issubclass(PgpError, CryptoError)


def test_plaintext_and_secret_keys_never_reach_the_log(world: World, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """python-gnupg logs data at DEBUG; the gateway filters those records."""
    secret = generate_key("Log <log@xgate.example>", algorithm="cv25519", expires=None)
    backend = GnupgBackend(tmp_path / "gnupg")
    try:
        with caplog.at_level(logging.DEBUG):
            signature = backend.sign_detached(PLAINTEXT, secret)
            assert backend.verify(PLAINTEXT, signature, [public_part(secret)]).valid
            message = backend.encrypt(PLAINTEXT, [public_part(secret)], secret)
            assert backend.decrypt(message, [secret], []).plaintext == PLAINTEXT
            describe_keys(secret)
    finally:
        _kill_agents(tmp_path)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "gnupg" in {r.name for r in caplog.records}  # the logger did talk
    assert "Hilfeplan" not in logged and b"Hilfeplan".hex() not in logged
    assert "PRIVATE KEY" not in logged
    body = b"".join(secret.splitlines()[3:6]).decode()  # a piece of the armored secret key
    assert body[:24] not in logged


# --- keys ---------------------------------------------------------------------------------------


def test_describe_partner_key(world: World) -> None:
    [info] = describe_keys(world.certs["rsa"])
    assert info.fingerprint == world.rsa
    assert info.user_ids == ("Partner RSA <ASD@Partner.example>",)
    assert info.emails == ("asd@partner.example",)
    assert (info.algorithm, info.bits) == ("rsa", 3072)
    assert info.can_encrypt and info.can_sign
    assert not info.has_secret and not info.revoked and not info.expired
    assert info.expires is None
    assert info.created.tzinfo is not None
    assert abs(info.created - datetime.now(UTC)) < timedelta(hours=1)
    [sub] = info.subkeys
    assert sub.can_encrypt and not sub.can_sign and (sub.algorithm, sub.bits) == ("rsa", 3072)
    assert encryption_strength_problem(info) is None


def test_describe_several_keys_expired_and_revoked(world: World) -> None:
    infos = describe_keys(world.certs["expired"] + world.certs["revoked"]
                          + world.certs["curve"])
    by_fpr = {i.fingerprint: i for i in infos}
    expired, revoked, curve = (by_fpr[world.expired], by_fpr[world.revoked],
                               by_fpr[world.curve])
    assert expired.expired and expired.expires is not None and expired.expires.year == 2020
    assert revoked.revoked
    assert (curve.algorithm, curve.subkeys[0].algorithm) == ("ed25519", "cv25519")
    assert encryption_strength_problem(expired) == "key has expired"
    assert encryption_strength_problem(revoked) == "key is revoked"
    assert encryption_strength_problem(curve) is None


def test_weak_partner_key_verifies_but_is_not_encrypted_to(world: World) -> None:
    [info] = describe_keys(world.certs["weak"])
    assert (info.algorithm, info.bits) == ("rsa", 2048)
    problem = encryption_strength_problem(info)
    assert problem is not None and "2048" in problem and "TR-02102" in problem
    with pytest.raises(PgpKeyError, match=r"2048 bits.*TR-02102"):
        check_minimum_strength(info)  # never acceptable as one of our own keys
    # ... while its signatures still count (test_detached_signature[weak]).


def test_generate_key_in_memory(world: World, tmp_path: Path) -> None:
    expires = datetime.now(UTC) + timedelta(days=365)
    secret = generate_key("Neu <Neu@XGate.example>", algorithm="cv25519", expires=expires)
    assert secret.startswith(b"-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert has_secret_material(secret)
    [info] = describe_keys(secret)
    assert info.has_secret and info.emails == ("neu@xgate.example",)
    # Sequoia back-dates a new key's creation by a minute, and expiry counts from creation.
    assert info.expires is not None and abs(info.expires - expires) < timedelta(minutes=2)
    assert info.can_sign and info.can_encrypt
    check_minimum_strength(info)

    public = public_part(secret)
    assert public.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert not has_secret_material(public)
    assert not describe_keys(public)[0].has_secret
    assert cert_emails(public) == ("neu@xgate.example",)
    # A partner can use it.
    world.partner.import_keys(public)
    assert world.partner.encrypt(b"x", [info.fingerprint]).startswith(b"-----BEGIN PGP")
    assert not os.listdir(tmp_path)  # nothing was written


def test_generate_rsa_key_meets_tr_02102(world: World) -> None:
    [info] = describe_keys(world.gw_rsa)
    assert (info.algorithm, info.bits) == ("rsa", 3072) and info.has_secret
    assert all(sub.bits == 3072 for sub in info.subkeys)
    check_minimum_strength(info)
    with pytest.raises(PgpKeyError):
        generate_key("X <x@xgate.example>", algorithm="rsa2048", expires=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n"])
def test_describe_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(PgpMalformed):
        describe_keys(data)


# --- helpers ------------------------------------------------------------------------------------
# gpg cannot encrypt pre-built OpenPGP packets (it always wraps input in a literal packet), so
# a test that needs a tampered signature *inside* intact encryption writes the Symmetrically
# Encrypted Integrity Protected Data packet (RFC 4880 5.13) itself: it encrypts a carrier to
# the gateway and to the partner, learns the session key from the partner's copy, and puts its
# own packets under the carrier's key packets.


def _rewrap(world: World, packets: bytes) -> bytes:
    carrier = world.partner.encrypt(b"carrier", [world.gw_curve_fpr, world.curve], armor=False,
                                    extra=["--cipher-algo", "AES256"])
    shown = world.partner.run("--show-session-key", "--decrypt", data=carrier)
    key = shown.args("SESSION_KEY")
    assert key is not None and key[0].startswith("9:")
    esks = b"".join(p for p in _packets(carrier) if p[0] & 0x3F in (1, 3) or
                    (not p[0] & 0x40 and (p[0] >> 2) & 0xF in (1, 3)))
    return esks + _seipd(bytes.fromhex(key[0][2:]), packets)


def _packets(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        ctb = data[pos]
        if ctb & 0x40:
            first = data[pos + 1]
            if first < 192:
                size, hdr = first, 2
            elif first < 224:
                size, hdr = ((first - 192) << 8) + data[pos + 2] + 192, 3
            elif first == 255:
                size, hdr = int.from_bytes(data[pos + 2 : pos + 6], "big"), 6
            else:  # partial lengths: only the encrypted data packet, which comes last
                yield data[pos:]
                return
        else:
            width = {0: 1, 1: 2, 2: 4}[ctb & 3]
            size, hdr = int.from_bytes(data[pos + 1 : pos + 1 + width], "big"), 1 + width
        yield data[pos : pos + hdr + size]
        pos += hdr + size


def _seipd(session_key: bytes, packets: bytes) -> bytes:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    prefix = os.urandom(16)
    prefix += prefix[-2:]
    body = prefix + packets + b"\xd3\x14"
    body += hashlib.sha1(body).digest()
    encryptor = Cipher(algorithms.AES(session_key), CFB(bytes(16))).encryptor()
    content = b"\x01" + encryptor.update(body) + encryptor.finalize()
    return b"\xd2\xff" + len(content).to_bytes(4, "big") + content
