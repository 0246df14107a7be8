"""The cache of validated certificate chains (crypto.chain_cache) as verify_smime uses it.

Messages are signed by the real openssl CLI. Whether an answer came from the cache is seen
from the objects in the result's chain: a full validation builds the path from the
certificates loaded out of this message, a cached one hands back the objects it stored.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from crypto.chain_cache import ChainCache
from crypto.smime_verify import REASON_NO_CHAIN, REASON_REVOKED, VerifyResult, verify_smime
from gateway.trust import TrustStore
from tests.support.smime_pki import DAY, Party, make_ca, make_crl, make_person, now

MESSAGE = b"Content-Type: text/plain\r\n\r\nHilfeplan, Fortschreibung\r\n"


@dataclass(frozen=True)
class World:
    directory: Path
    ca: Party
    other_ca: Party
    signer: Party
    short_lived: Party  # valid for two more days only
    signed: bytes  # MESSAGE signed by ``signer``, opaque
    signed_short: bytes  # signed by ``short_lived``


def _sign(directory: Path, signer: Party, ca: Party) -> bytes:
    out = directory / f"signed-{os.urandom(6).hex()}.eml"
    message = directory / "message.txt"
    message.write_bytes(MESSAGE)
    subprocess.run(["openssl", "cms", "-sign", "-nodetach", "-in", str(message), "-out", str(out),
                    "-outform", "SMIME", "-signer", str(signer.cert_pem), "-inkey",
                    str(signer.key_pem), "-certfile", str(ca.cert_pem)],
                   check=True, capture_output=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    directory = tmp_path_factory.mktemp("chain-cache")
    ca = make_ca(directory, "ca", bits=2048)
    other_ca = make_ca(directory, "other", bits=2048)
    signer = make_person(directory, "asd", "asd@partner.example", ca, bits=2048)
    short = make_person(directory, "kurz", "kurz@partner.example", ca, bits=2048,
                        not_after=now() + 2 * DAY)
    return World(directory, ca, other_ca, signer, short, _sign(directory, signer, ca),
                  _sign(directory, short, ca))


def _verify(raw: bytes, anchors: list[x509.Certificate], cache: ChainCache, *,
            crls: list[x509.CertificateRevocationList] | None = None,
            at: datetime.datetime | None = None) -> VerifyResult:
    return verify_smime(raw, anchors, crls=crls or [], now=at, chain_cache=cache)


def _crl(world: World, revoked: list[Party]) -> x509.CertificateRevocationList:
    path = make_crl(world.directory, world.ca, revoked)
    return x509.load_pem_x509_crl(path.read_bytes())


def test_a_signer_seen_before_is_answered_from_the_cache(world: World) -> None:
    cache, anchors = ChainCache(), [world.ca.cert]
    first = _verify(world.signed, anchors, cache)
    second = _verify(world.signed, anchors, cache)
    assert first.valid and second.valid, (first.reason, second.reason)
    assert len(cache) == 1
    # The stored path's objects, not the ones loaded out of the second message.
    assert second.chain[0] is first.chain[0]
    assert second.chain == first.chain == (world.signer.cert, world.ca.cert)
    assert second.signer_fingerprint == world.signer.fingerprint


def test_without_a_cache_every_validation_is_full(world: World) -> None:
    first = verify_smime(world.signed, [world.ca.cert])
    second = verify_smime(world.signed, [world.ca.cert])
    assert first.valid and second.valid
    assert second.chain[0] is not first.chain[0]


def test_a_new_crl_that_revokes_the_signer_never_meets_a_cached_entry(world: World) -> None:
    cache, anchors = ChainCache(), [world.ca.cert]
    clean = [_crl(world, [])]
    first = _verify(world.signed, anchors, cache, crls=clean)
    assert _verify(world.signed, anchors, cache, crls=clean).chain[0] is first.chain[0]
    revoking = [_crl(world, [world.signer])]
    result = _verify(world.signed, anchors, cache, crls=revoking)
    assert not result.valid
    assert result.reason == REASON_REVOKED
    # Added to the CRLs that were there, it counts just the same.
    assert _verify(world.signed, anchors, cache, crls=[*clean, *revoking]).reason == \
        REASON_REVOKED
    # No CRL at all is other trust input too: a full validation, not the entry made with one.
    bare = _verify(world.signed, anchors, cache)
    assert bare.valid
    assert bare.chain[0] is not first.chain[0]


def test_changed_anchors_never_meet_a_cached_entry(world: World) -> None:
    cache = ChainCache()
    cached = _verify(world.signed, [world.ca.cert], cache)
    assert cached.valid
    other = _verify(world.signed, [world.other_ca.cert], cache)
    assert not other.valid
    assert other.reason == REASON_NO_CHAIN
    # The same CA read again is another object: judged in full (and valid), not looked up.
    reloaded = x509.load_pem_x509_certificate(world.ca.cert_pem.read_bytes())
    again = _verify(world.signed, [reloaded], cache)
    assert again.valid
    assert again.chain[0] is not cached.chain[0]
    assert again.chain[-1] is reloaded
    # An anchor added to the set is a change too.
    more = _verify(world.signed, [world.other_ca.cert, world.ca.cert], cache)
    assert more.valid and more.chain[0] is not cached.chain[0]


def test_the_trust_store_drops_its_entries_when_a_new_crl_arrives(world: World,
                                                                 tmp_path: Path) -> None:
    anchors_file = tmp_path / "anchors.pem"
    anchors_file.write_bytes(world.ca.cert_pem.read_bytes())
    crl_file = tmp_path / "ca.crl.pem"
    crl_file.write_bytes(make_crl(world.directory, world.ca, []).read_bytes())
    store = TrustStore(anchors_file, [crl_file])

    def verify() -> VerifyResult:
        anchors, crls = store.current()
        return verify_smime(world.signed, anchors, crls=crls, chain_cache=store.chain_cache)

    assert verify().valid
    assert verify().valid
    assert len(store.chain_cache) == 1
    crl_file.write_bytes(make_crl(world.directory, world.ca, [world.signer]).read_bytes())
    stamp = crl_file.stat().st_mtime_ns + 1_000_000_000
    os.utime(crl_file, ns=(stamp, stamp))  # a new mtime even on a coarse file system clock
    result = verify()
    assert result.reason == REASON_REVOKED
    assert len(store.chain_cache) == 0


def test_an_entry_expires_at_the_crl_next_update(world: World) -> None:
    cache, anchors = ChainCache(), [world.ca.cert]
    crls = [_crl(world, [])]  # nextUpdate in seven days
    first = _verify(world.signed, anchors, cache, crls=crls)
    assert _verify(world.signed, anchors, cache, crls=crls).chain[0] is first.chain[0]
    later = _verify(world.signed, anchors, cache, crls=crls, at=now() + 8 * DAY)
    assert later.valid  # signed while all was valid: still valid, but judged in full
    assert later.chain[0] is not first.chain[0]


def test_an_entry_expires_at_the_earliest_not_after(world: World) -> None:
    cache, anchors = ChainCache(), [world.ca.cert]
    first = _verify(world.signed_short, anchors, cache)
    assert _verify(world.signed_short, anchors, cache).chain[0] is first.chain[0]
    later = _verify(world.signed_short, anchors, cache, at=now() + 3 * DAY)
    assert later.valid  # the signing time lies in the validity: judged in full
    assert later.chain[0] is not first.chain[0]
    # The long-lived signer's entry is still there at the same moment.
    long_first = _verify(world.signed, anchors, cache)
    assert _verify(world.signed, anchors, cache, at=now() + 3 * DAY).chain[0] is \
        long_first.chain[0]


def test_a_reference_time_outside_the_validity_is_not_answered(world: World) -> None:
    cache, anchors = ChainCache(), [world.ca.cert]
    path = (world.short_lived.cert, world.ca.cert)
    cache.put(world.short_lived.cert, [world.ca.cert], anchors, [], path,
              [world.short_lived.cert])
    inside = now()
    assert cache.get(world.short_lived.cert, [world.ca.cert], anchors, [], inside,
                     inside) == path
    for at in (world.short_lived.cert.not_valid_after_utc + datetime.timedelta(seconds=1),
               world.short_lived.cert.not_valid_before_utc - datetime.timedelta(seconds=1)):
        assert cache.get(world.short_lived.cert, [world.ca.cert], anchors, [], at,
                         inside) is None
    # Other certificates brought by the message are another key.
    assert cache.get(world.short_lived.cert, [], anchors, [], inside, inside) is None


def test_failures_are_not_remembered(world: World) -> None:
    cache = ChainCache()
    assert _verify(world.signed, [world.other_ca.cert], cache).reason == REASON_NO_CHAIN
    assert len(cache) == 0


def test_the_least_recently_used_entry_goes_first(world: World) -> None:
    cache, anchors = ChainCache(size=2), [world.ca.cert]
    signers = [world.signer.cert, world.short_lived.cert, world.ca.cert]
    for cert in signers:
        cache.put(cert, [], anchors, [], (cert, world.ca.cert), [cert])
    at = now()
    assert len(cache) == 2
    assert cache.get(signers[0], [], anchors, [], at, at) is None
    assert cache.get(signers[1], [], anchors, [], at, at) is not None
    cache.put(signers[0], [], anchors, [], (signers[0], world.ca.cert), [signers[0]])
    # signers[1] was used more recently than signers[2]: the latter went.
    assert cache.get(signers[2], [], anchors, [], at, at) is None
    assert cache.get(signers[1], [], anchors, [], at, at) is not None
