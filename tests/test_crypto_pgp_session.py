"""The in-process path for gpg's usual output: PKESK v3 + SEIPD v1 opened with ``cryptography``.

``SequoiaBackend`` opens such messages itself (``crypto.pgp_session``) and gives only the
signed message inside to ``pysequoia.verify``: no gpg process, and signatures inside
compressed data are verified. The ``strict`` fixture makes that observable: no fallback
backend, and ``pysequoia.decrypt`` (the old path) fails the test if it is called at all.
The partner is the real gpg CLI; its default output is compressed, signed and written with
partial body lengths (it reads from a pipe).
"""

from __future__ import annotations

import bz2
import hashlib
import os
import re
import shutil
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysequoia
import pytest

from crypto.pgp_backend import (
    DECRYPTION_FAILED,
    REASON_BAD_SIGNATURE,
    REASON_KEY_REVOKED,
    PgpError,
    PgpKeyError,
    PgpTooLarge,
)
from crypto.pgp_keys import cert_fingerprint, generate_key, key_packets, public_part
from crypto.pgp_packets import (
    TAG_LITERAL,
    TAG_PKESK,
    TAG_SEIPD,
    PacketFormatError,
    inflate,
    literal_content,
    read_packets,
)
from crypto.pgp_secret_keys import decryption_keys
from crypto.pgp_sequoia import SequoiaBackend
from tests.support.gpg_partner import GpgPartner

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg binary not installed")

PLAINTEXT = b"Hilfeplan fuer Kind B.\nVertraulich.\n" * 40
FAILED = "^" + re.escape(DECRYPTION_FAILED) + "$"


@dataclass
class World:
    partner: GpgPartner
    rsa: str  # partner keys (gpg-made): they sign, and stand for gpg-made keys of "ours"
    curve: str
    stranger: str  # the gateway never gets its certificate nor its secret
    certs: dict[str, bytes]
    secrets: dict[str, bytes]  # "gw_rsa", "gw_curve" (pysequoia-made), "gpg_rsa", "gpg_curve"
    fprs: dict[str, str]  # the same names: primary fingerprints

    def known(self) -> list[bytes]:
        return [self.certs["rsa"], self.certs["curve"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with GpgPartner.create(tmp_path_factory.mktemp("partner")) as partner:
        rsa = partner.generate("Partner RSA <asd@partner.example>", "rsa3072")
        curve = partner.generate("Partner ECC <ecc@partner.example>", "cv25519")
        stranger = partner.generate("Stranger <s@other.example>", "cv25519")
        gw_rsa = generate_key("JA <ja@xgate.example>", algorithm="rsa3072", expires=None)
        gw_curve = generate_key("JA ECC <ecc@xgate.example>", algorithm="cv25519",
                                expires=None)
        partner.import_keys(public_part(gw_rsa) + public_part(gw_curve))
        secrets = {"gw_rsa": gw_rsa, "gw_curve": gw_curve,
                   "gpg_rsa": partner.export_secret(rsa),
                   "gpg_curve": partner.export_secret(curve)}
        fprs = {"gw_rsa": cert_fingerprint(gw_rsa), "gw_curve": cert_fingerprint(gw_curve),
                "gpg_rsa": rsa, "gpg_curve": curve}
        certs = {"rsa": partner.export_public(rsa), "curve": partner.export_public(curve),
                 "stranger": partner.export_public(stranger)}
        yield World(partner, rsa, curve, stranger, certs, secrets, fprs)


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> SequoiaBackend:
    """A backend that can only succeed (or fail) on the in-process SEIPD v1 path."""

    def old_path(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pysequoia.decrypt was used: not the in-process path")

    monkeypatch.setattr(pysequoia, "decrypt", old_path)
    return SequoiaBackend(fallback=None)


def _encrypt(world: World, to: str, *, signer: str | None = None, armor: bool = True,
             extra: tuple[str, ...] = (), data: bytes = PLAINTEXT) -> bytes:
    return world.partner.encrypt(data, [world.fprs[to]], signer=signer, armor=armor,
                                 extra=extra)


# --- gpg's default output, verified without gpg -----------------------------------------------


def test_gpg_default_output_is_compressed_signed_and_partial(world: World) -> None:
    """What the tests below rely on: the structure gpg writes by default."""
    message = _encrypt(world, "gpg_curve", signer=world.rsa, armor=False)
    listing = world.partner.run("--list-packets", data=message).stdout.decode()
    assert "pubkey enc packet: version 3" in listing
    assert re.search(r"tag=18 .*partial", listing)  # SEIPD with partial body lengths
    assert "compressed packet: algo=2" in listing  # ZLIB, gpg's default
    # gpg stops listing at a literal packet of unknown length, before the signature packet.
    assert "onepass_sig packet" in listing and "literal data packet" in listing
    packets = read_packets(message)
    assert [p.tag for p in packets] == [TAG_PKESK, TAG_SEIPD]
    assert packets[1].body[0] == 1  # SEIPD version 1 (MDC)


@pytest.mark.parametrize("signer", ["rsa", "curve"])
@pytest.mark.parametrize("ours", ["gw_rsa", "gw_curve", "gpg_rsa", "gpg_curve"])
def test_gpg_encrypt_and_sign_verified_in_process(world: World, strict: SequoiaBackend,
                                                  ours: str, signer: str) -> None:
    signer_fpr = world.rsa if signer == "rsa" else world.curve
    message = _encrypt(world, ours, signer=signer_fpr)

    result = strict.decrypt(message, [world.secrets[ours]], world.known())

    assert result.plaintext == PLAINTEXT
    assert result.signed and result.signature_valid and result.signature_reason is None
    assert result.signer_fingerprint == signer_fpr
    assert result.signer_key_id == signer_fpr[-16:]
    assert result.recipient_fingerprint == world.fprs[ours]
    assert result.cipher == "aes256"
    assert result.engine == "sequoia"


@pytest.mark.parametrize("compress", ["zip", "zlib", "bzip2", "none"])
def test_every_compression_algorithm(world: World, strict: SequoiaBackend,
                                     compress: str) -> None:
    message = _encrypt(world, "gw_rsa", signer=world.curve,
                       extra=("--compress-algo", compress))
    result = strict.decrypt(message, [world.secrets["gw_rsa"]], world.known())
    assert result.plaintext == PLAINTEXT
    assert result.signature_valid and result.signer_fingerprint == world.curve


@pytest.mark.parametrize(("algo", "name"), [("AES", "aes128"), ("AES192", "aes192")])
def test_aes_key_sizes_are_reported(world: World, strict: SequoiaBackend, algo: str,
                                    name: str) -> None:
    message = _encrypt(world, "gw_curve", signer=world.rsa, extra=("--cipher-algo", algo))
    result = strict.decrypt(message, [world.secrets["gw_curve"]], world.known())
    assert result.plaintext == PLAINTEXT and result.signature_valid
    assert result.cipher == name


@pytest.mark.parametrize("compress", [True, False])
def test_unsigned(world: World, strict: SequoiaBackend, compress: bool) -> None:
    extra = () if compress else ("--compress-algo", "none")
    message = _encrypt(world, "gw_curve", extra=extra)
    result = strict.decrypt(message, [world.secrets["gw_curve"]], world.known())
    assert result.plaintext == PLAINTEXT and result.cipher == "aes256"
    assert not result.signed and not result.signature_valid
    assert result.signer_key_id is None and result.signature_reason is None


def test_partial_lengths_across_many_chunks(world: World, strict: SequoiaBackend) -> None:
    data = os.urandom(300_000)  # incompressible: the packets stay large
    message = _encrypt(world, "gw_curve", signer=world.rsa, armor=False, data=data)
    seipd = _seipd_offset(message)
    assert message[seipd] == 0xD2 and 224 <= message[seipd + 1] < 255  # partial length
    result = strict.decrypt(message, [world.secrets["gw_curve"]], world.known())
    assert result.plaintext == data and result.signature_valid


def test_definite_lengths_from_a_file(world: World, strict: SequoiaBackend,
                                      tmp_path: Path) -> None:
    """gpg knows the size of a file: definite lengths, and an old-format literal header."""
    source = tmp_path / "plan.txt"
    source.write_bytes(PLAINTEXT)
    message = world.partner.run("--compress-algo", "none", "--encrypt", "-r",
                                world.fprs["gw_rsa"], "-o", "-", str(source)).stdout
    seipd = _seipd_offset(message)
    assert message[seipd] == 0xD2 and not 224 <= message[seipd + 1] < 255  # not partial
    result = strict.decrypt(message, [world.secrets["gw_rsa"]], [])
    assert result.plaintext == PLAINTEXT and not result.signed


@pytest.mark.parametrize("ours", ["gw_rsa", "gw_curve"])
def test_hidden_recipient_tries_each_key(world: World, strict: SequoiaBackend,
                                         ours: str) -> None:
    message = _encrypt(world, ours, signer=world.curve, armor=False,
                       extra=("--throw-keyids",))
    assert read_packets(message)[0].body[1:9] == bytes(8)  # key id 0: "try all your keys"
    keys = [world.secrets["gw_curve"], world.secrets["gw_rsa"]]  # the wrong one first
    result = strict.decrypt(message, keys, world.known())
    assert result.plaintext == PLAINTEXT and result.signature_valid
    assert result.recipient_fingerprint == world.fprs[ours]


# --- signatures that do not verify, found in-process --------------------------------------------


def test_unknown_signer_inside_compressed(world: World, strict: SequoiaBackend) -> None:
    message = _encrypt(world, "gw_curve", signer=world.stranger)
    result = strict.decrypt(message, [world.secrets["gw_curve"]], world.known())
    assert result.plaintext == PLAINTEXT
    assert result.signed and not result.signature_valid and result.signer_fingerprint is None
    assert result.signer_key_id == world.stranger[-16:]
    assert result.signature_reason == f"unknown signer key {world.stranger[-16:]}"


@pytest.mark.parametrize("algo", [1, 2, 3])
def test_bad_signature_inside_compressed(world: World, strict: SequoiaBackend,
                                         algo: int) -> None:
    signed = world.partner.sign(PLAINTEXT, world.rsa, "inline", armor=False,
                                extra=["--compress-algo", "none"])
    tampered = signed.replace(b"Vertraulich", b"Vertraulicx", 1)
    good = strict.decrypt(_rewrap(world, _compressed(algo, signed)),
                          [world.secrets["gw_curve"]], world.known())
    assert good.signature_valid and good.signer_fingerprint == world.rsa

    result = strict.decrypt(_rewrap(world, _compressed(algo, tampered)),
                            [world.secrets["gw_curve"]], world.known())

    assert result.plaintext == PLAINTEXT.replace(b"Vertraulich", b"Vertraulicx", 1)
    assert result.signed and not result.signature_valid
    assert result.signature_reason == REASON_BAD_SIGNATURE
    assert result.signer_key_id == world.rsa[-16:] and result.signer_fingerprint is None


def test_revoked_signer_inside_compressed(world: World, strict: SequoiaBackend) -> None:
    revoked = world.partner.generate("Revoked <rev@partner.example>", "cv25519")
    message = _encrypt(world, "gw_curve", signer=revoked)
    world.partner.revoke(revoked)
    result = strict.decrypt(message, [world.secrets["gw_curve"]],
                            [world.partner.export_public(revoked)])
    assert result.plaintext == PLAINTEXT
    assert result.signed and not result.signature_valid
    assert result.signature_reason == REASON_KEY_REVOKED


# --- failures: one uniform error, nothing used before the MDC matched ---------------------------


def test_wrong_key_fails_uniformly(world: World) -> None:
    backend = SequoiaBackend(fallback=None)
    keys = [world.secrets["gw_rsa"], world.secrets["gw_curve"]]
    for extra in ((), ("--throw-keyids",)):
        message = world.partner.encrypt(PLAINTEXT, [world.stranger], signer=world.rsa,
                                        extra=extra)
        with pytest.raises(PgpError, match=FAILED) as info:
            backend.decrypt(message, keys, world.known())
        assert type(info.value) is PgpError


@pytest.mark.parametrize("where", [0.2, 0.5, 0.8, -30, -21, -1])
def test_flipped_bit_in_encrypted_data_is_final(world: World, strict: SequoiaBackend,
                                                where: float) -> None:
    """Past the PKESK, damage is caught by the MDC on our path, with no second opinion."""
    gpg_made = _encrypt(world, "gw_rsa", signer=world.curve, armor=False)
    # Re-framed with one definite length, so that the flip hits encrypted data and never a
    # partial-length header (damaged framing is refused before any key is used).
    seipd = read_packets(gpg_made)[-1].body
    body = bytearray(seipd)
    body[int(len(body) * where) if where > 0 else len(body) + int(where)] ^= 0x04
    head = gpg_made[: _seipd_offset(gpg_made)]
    assert strict.decrypt(head + _framed(TAG_SEIPD, seipd), [world.secrets["gw_rsa"]],
                          world.known()).signature_valid
    with pytest.raises(PgpError, match=FAILED) as info:
        strict.decrypt(head + _framed(TAG_SEIPD, bytes(body)), [world.secrets["gw_rsa"]],
                       world.known())
    assert type(info.value) is PgpError


def test_flipped_bits_anywhere_fail_uniformly(world: World) -> None:
    backend = SequoiaBackend(fallback=None)
    message = _encrypt(world, "gw_rsa", signer=world.curve, armor=False)
    for position in range(0, len(message), max(1, len(message) // 25)):
        damaged = bytearray(message)
        damaged[position] ^= 0x01
        try:
            result = backend.decrypt(bytes(damaged), [world.secrets["gw_rsa"]], world.known())
        except PgpError as exc:
            assert str(exc) == DECRYPTION_FAILED or type(exc).__name__ == "PgpMalformed"
        else:  # a flip in a header can leave the message intact (e.g. the PKESK key id)
            assert result.plaintext == PLAINTEXT


@pytest.mark.parametrize("keep", [50, 300, 0.5, -23, -1])
def test_truncated_fails_uniformly(world: World, keep: float) -> None:
    backend = SequoiaBackend(fallback=None)
    message = _encrypt(world, "gw_curve", signer=world.rsa, armor=False)
    cut = int(len(message) * keep) if isinstance(keep, float) else keep
    with pytest.raises(PgpError, match=FAILED) as info:
        backend.decrypt(message[:cut], [world.secrets["gw_curve"]], world.known())
    assert type(info.value) is PgpError


@pytest.mark.parametrize("damage", ["digest", "header", "missing"])
def test_mdc_must_match(world: World, strict: SequoiaBackend, damage: str) -> None:
    literal = _literal(PLAINTEXT)
    message = _rewrap(world, literal, mdc=damage)
    with pytest.raises(PgpError, match=FAILED) as info:
        strict.decrypt(message, [world.secrets["gw_curve"]], [])
    assert type(info.value) is PgpError
    # The same construction with a correct MDC decrypts: the test is not vacuous.
    ok = strict.decrypt(_rewrap(world, literal), [world.secrets["gw_curve"]], [])
    assert ok.plaintext == PLAINTEXT


def test_nested_compression(world: World, strict: SequoiaBackend) -> None:
    signed = world.partner.sign(PLAINTEXT, world.rsa, "inline", armor=False,
                                extra=["--compress-algo", "none"])
    twice = _compressed(2, _compressed(1, signed))
    result = strict.decrypt(_rewrap(world, twice), [world.secrets["gw_curve"]], world.known())
    assert result.plaintext == PLAINTEXT and result.signature_valid
    too_deep = _compressed(2, _compressed(2, _compressed(2, twice)))
    with pytest.raises(PgpError, match=FAILED):
        strict.decrypt(_rewrap(world, too_deep), [world.secrets["gw_curve"]], world.known())
    bomb = _compressed(2, _compressed(2, _literal(b"\0" * 1_000_000)))
    with pytest.raises(PgpTooLarge):
        SequoiaBackend(max_output=100_000).decrypt(_rewrap(world, bomb),
                                                   [world.secrets["gw_curve"]], [])


@pytest.mark.parametrize("inner", ["two literals", "marker", "garbage", "empty"])
def test_other_inner_structures_fail_uniformly(world: World, strict: SequoiaBackend,
                                               inner: str) -> None:
    """Past the MDC nothing goes back to pysequoia's (unbounded) decryption."""
    packets = {"two literals": _literal(b"a") + _literal(b"b"),
               "marker": _framed(10, b"PGP") + _literal(b"a"),
               "garbage": b"\x00\x01\x02", "empty": b""}[inner]
    with pytest.raises(PgpError, match=FAILED) as info:
        strict.decrypt(_rewrap(world, packets), [world.secrets["gw_curve"]], [])
    assert type(info.value) is PgpError


def test_quick_check_bytes_decide_nothing(world: World, strict: SequoiaBackend) -> None:
    """RFC 9580 recommends ignoring them (an oracle otherwise); only the MDC counts."""
    message = _rewrap(world, _literal(PLAINTEXT), quick_check_ok=False)
    assert strict.decrypt(message, [world.secrets["gw_curve"]], []).plaintext == PLAINTEXT


def test_secret_key_without_secret_part(world: World) -> None:
    message = _encrypt(world, "gw_curve")
    with pytest.raises(PgpKeyError):
        SequoiaBackend().decrypt(message, [public_part(world.secrets["gw_curve"])], [])


# --- size bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", ["zip", "zlib", "bzip2"])
def test_decompression_bomb_is_cut_off_while_inflating(world: World,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       compress: str) -> None:
    monkeypatch.setattr(pysequoia, "decrypt", None)  # the old path would fail differently
    bomb = world.partner.encrypt(b"\0" * 20_000_000, [world.fprs["gw_curve"]], armor=False,
                                 extra=("--compress-algo", compress))
    assert len(bomb) < 100_000
    backend = SequoiaBackend(fallback=None, max_output=100_000)
    tracemalloc.start()
    try:
        with pytest.raises(PgpTooLarge, match="exceeds 100000 bytes"):
            backend.decrypt(bomb, [world.secrets["gw_curve"]], [])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # 20 MB expanded would show; the bound is max_output + overhead


@pytest.mark.parametrize("compress", ["zlib", "none"])
def test_max_output_is_exact(world: World, strict: SequoiaBackend, compress: str) -> None:
    backend = SequoiaBackend(fallback=None, max_output=5000)
    for size, fits in ((5000, True), (5001, False)):
        message = _encrypt(world, "gw_curve", signer=world.rsa, data=b"a" * size,
                           extra=("--compress-algo", compress))
        if fits:
            assert backend.decrypt(message, [world.secrets["gw_curve"]],
                                   world.known()).signature_valid
        else:
            with pytest.raises(PgpTooLarge):
                backend.decrypt(message, [world.secrets["gw_curve"]], world.known())


# --- the pieces -----------------------------------------------------------------------------------


def test_secret_key_parsing_matches_sequoia(world: World) -> None:
    for name, secret in world.secrets.items():
        keys = decryption_keys(secret)
        fingerprints = {(p.fingerprint or "").upper() for p in key_packets(secret)}
        assert keys, name
        for key in keys:
            assert key.primary_fingerprint == world.fprs[name]
            assert key.fingerprint.hex().upper() in fingerprints
            assert key.key_id == key.fingerprint[-8:]
    assert decryption_keys(public_part(world.secrets["gw_curve"])) == []
    assert decryption_keys(b"garbage") == []


def test_read_packets_both_formats_and_partial_lengths() -> None:
    body = bytes(range(256)) * 5  # 1280 octets
    # Chunks of 512 (0xE9) and 256 (0xE8) octets, then a two-octet length for the last 512.
    partial = b"\xcb\xe9" + body[:512] + b"\xe8" + body[512:768] + b"\xc1\x40" + body[768:]
    streams = {
        "old 1": b"\xac" + b"\x05" + b"hello",
        "old 2": b"\xad" + len(body).to_bytes(2, "big") + body,
        "old 4": b"\xae" + len(body).to_bytes(4, "big") + body,
        "new 2": b"\xcb" + bytes([((len(body) - 192) >> 8) + 192, (len(body) - 192) & 0xFF])
                 + body,
        "new 5": b"\xcb\xff" + len(body).to_bytes(4, "big") + body,
        "partial": partial,
    }
    for name, stream in streams.items():
        [packet] = read_packets(stream)
        assert packet.tag == TAG_LITERAL, name
        assert packet.body == (b"hello" if name == "old 1" else body), name
    [packet] = read_packets(b"\xaf" + body)  # old format, indeterminate length
    assert packet.body == body
    two = read_packets(streams["old 1"] + streams["partial"])
    assert [p.tag for p in two] == [TAG_LITERAL, TAG_LITERAL]
    for stream in streams.values():
        for cut in (1, len(stream) // 2, len(stream) - 1):
            with pytest.raises(PacketFormatError):
                read_packets(stream[:cut])
    with pytest.raises(PacketFormatError):
        read_packets(b"\x05\x00")


def test_literal_content_and_inflate() -> None:
    assert literal_content(b"b\x04name\x00\x00\x00\x00data") == b"data"
    with pytest.raises(PacketFormatError):
        literal_content(b"b\x09name")
    for algo in (0, 1, 2, 3):
        assert inflate(_compressed(algo, b"x" * 1000)[1:], 10_000) == b"x" * 1000
        with pytest.raises(PgpTooLarge):
            inflate(_compressed(algo, b"x" * 200_000)[1:], 10_000)
    with pytest.raises(PacketFormatError):
        inflate(b"\x02not zlib", 10_000)
    with pytest.raises(PacketFormatError):
        inflate(b"\x07", 10_000)


# --- helpers --------------------------------------------------------------------------------------
# gpg always wraps its input in a literal packet, so tests that need other packets *inside*
# intact encryption write the SEIPD themselves: encrypt a carrier to the gateway and to the
# partner, learn the session key from the partner's copy, and put our own SEIPD under the
# carrier's key packets.


def _rewrap(world: World, packets: bytes, *, mdc: str = "ok",
            quick_check_ok: bool = True) -> bytes:
    carrier = world.partner.encrypt(b"carrier", [world.fprs["gw_curve"], world.curve],
                                    armor=False, extra=["--cipher-algo", "AES256"])
    shown = world.partner.run("--show-session-key", "--decrypt", data=carrier)
    key = shown.args("SESSION_KEY")
    assert key is not None and key[0].startswith("9:")
    head = b"".join(_framed(p.tag, p.body) for p in read_packets(carrier) if p.tag == TAG_PKESK)
    return head + _seipd(bytes.fromhex(key[0][2:]), packets, mdc, quick_check_ok)


def _seipd(session_key: bytes, packets: bytes, mdc: str, quick_check_ok: bool) -> bytes:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    prefix = os.urandom(16)
    prefix += prefix[-2:] if quick_check_ok else bytes(b ^ 0xFF for b in prefix[-2:])
    body = prefix + packets + (b"\xd3\x15" if mdc == "header" else b"\xd3\x14")
    digest = hashlib.sha1(body).digest()
    if mdc == "digest":
        digest = bytes([digest[0] ^ 1]) + digest[1:]
    body = body + digest if mdc != "missing" else prefix + packets
    encryptor = Cipher(algorithms.AES(session_key), CFB(bytes(16))).encryptor()
    return _framed(TAG_SEIPD, b"\x01" + encryptor.update(body) + encryptor.finalize())


def _seipd_offset(message: bytes) -> int:
    """Where the SEIPD starts in gpg's binary output: after its old-format PKESK packets."""
    pos = 0
    while message[pos] & 0x40 == 0:  # old format (gpg writes PKESKs so)
        size = {0: 1, 1: 2, 2: 4}[message[pos] & 3]
        pos += 1 + size + int.from_bytes(message[pos + 1 : pos + 1 + size], "big")
    return pos


def _framed(tag: int, body: bytes) -> bytes:
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def _literal(data: bytes) -> bytes:
    return _framed(TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + data)


def _compressed(algo: int, data: bytes) -> bytes:
    if algo == 1:
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = deflater.compress(data) + deflater.flush()
    elif algo == 2:
        packed = zlib.compress(data)
    elif algo == 3:
        packed = bz2.compress(data)
    else:
        packed = data
    return b"\xa3" + bytes([algo]) + packed  # old format, indeterminate length
