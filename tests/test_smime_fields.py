"""S/MIME reads only the fields it uses, and reads them right.

The signed attributes come from their encoding (crypto.cms_signed_attrs), the outer content
type from the first bytes of a body (crypto.cms_common.body_content_type), the parts of a
multipart/signed from the raw bytes, and the pinned certificates are only looked up for a
signer that could be one. Signatures and envelopes are made by the real openssl CLI, or by
hand where a malformed but validly signed structure is needed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import algos, cms, core  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from crypto.cms_common import body_content_type, cms_content_type, entity_body, entity_headers
from crypto.cms_signed_attrs import read_signed_attributes
from crypto.smime_verify import verify_smime
from gateway.pipeline.stages.decrypt import smime_kind
from tests.support.smime_pki import Party, make_ca, make_person, now

MESSAGE = b"Content-Type: text/plain\r\n\r\nBericht zur Hilfeplanung\r\n"
DATA_OID = "1.2.840.113549.1.7.1"


@dataclass(frozen=True)
class World:
    directory: Path
    ca: Party
    signer: Party
    self_signed: Party


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    directory = tmp_path_factory.mktemp("smime-fields")
    ca = make_ca(directory, "ca", bits=2048)
    signer = make_person(directory, "asd", "asd@partner.example", ca, bits=2048)
    cert_pem, key_pem = directory / "lotse.pem", directory / "lotse.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                    "-keyout", str(key_pem), "-out", str(cert_pem), "-days", "30",
                    "-subj", "/CN=lotse/emailAddress=info@lotse.example",
                    "-addext", "subjectAltName=email:info@lotse.example",
                    "-addext", "extendedKeyUsage=emailProtection"],
                   check=True, capture_output=True)
    self_signed = Party(x509.load_pem_x509_certificate(cert_pem.read_bytes()),
                        serialization.load_pem_private_key(key_pem.read_bytes(), None),
                        cert_pem, key_pem)
    return World(directory, ca, signer, self_signed)


def _openssl(world: World, *args: str, data: bytes = MESSAGE) -> bytes:
    source = world.directory / f"in-{os.urandom(6).hex()}"
    source.write_bytes(data)
    proc = subprocess.run(["openssl", "cms", "-in", str(source), *args], check=True,
                          capture_output=True)
    return proc.stdout


def _sign(world: World, signer: Party, *args: str) -> bytes:
    return _openssl(world, "-sign", "-signer", str(signer.cert_pem), "-inkey",
                    str(signer.key_pem), "-certfile", str(world.ca.cert_pem), *args)


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# --- signed attributes ----------------------------------------------------------------------


def _attribute(kind: str, *values: object) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": kind, "values": list(values)})


def _attrs(*attributes: cms.CMSAttribute | bytes) -> bytes:
    """The contents of a SignedAttributes SET OF; an attribute given as bytes is its DER."""
    return b"".join(a if isinstance(a, bytes) else a.dump() for a in attributes)


def _tlv(tag: int, contents: bytes) -> bytes:
    assert len(contents) < 128
    return bytes([tag, len(contents)]) + contents


def _raw_attribute(dotted: str, *values: core.Asn1Value) -> bytes:
    """An attribute of any type with any values, which asn1crypto's own classes refuse."""
    oid = core.ObjectIdentifier(dotted).dump()
    return _tlv(0x30, oid + _tlv(0x31, b"".join(v.dump() for v in values)))


def test_the_attributes_of_an_openssl_signature(world: World) -> None:
    der = _sign(world, world.signer, "-nodetach", "-outform", "DER")
    info = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    attrs = read_signed_attributes(info["signed_attrs"].contents)
    assert attrs is not None
    assert attrs["content_type"] == DATA_OID
    assert attrs["message_digest"] == hashlib.sha256(MESSAGE).digest()
    signing_time = attrs["signing_time"]
    assert isinstance(signing_time, datetime.datetime)
    assert abs(signing_time - now()) < datetime.timedelta(minutes=5)
    # What else openssl sends is framed, not converted: smimeCapabilities.
    assert attrs["1.2.840.113549.1.9.15"] is None
    # The same as asn1crypto's full conversion of the three that are used.
    native = {a["type"].native: a["values"][0].native for a in info["signed_attrs"]}
    assert attrs["message_digest"] == native["message_digest"]
    assert attrs["signing_time"] == native["signing_time"]


@pytest.mark.parametrize("contents", [
    # content-type twice
    _attrs(_attribute("content_type", "data"), _attribute("content_type", "data")),
    # two values where RFC 5652 says one
    _attrs(_attribute("content_type", "data", "signed_data")),
    _attrs(_attribute("message_digest", b"a" * 32, b"b" * 32)),
    # an unknown attribute without a value, or with two
    _attrs(_raw_attribute("1.2.3.4")),
    _attrs(_raw_attribute("1.2.3.4", core.Integer(1), core.Integer(2))),
    # values of the wrong type: signing-time, message-digest, content-type
    _attrs(_attribute("content_type", "data"),
           _raw_attribute("1.2.840.113549.1.9.5", core.OctetString(b"20260101"))),
    _attrs(_raw_attribute("1.2.840.113549.1.9.4", core.Integer(7))),
    _attrs(_raw_attribute("1.2.840.113549.1.9.3", core.OctetString(b"data"))),
    # not attributes at all, or cut short
    b"\x30\x05\x06\x03",
    b"\x04\x02ab",
    _attrs(_attribute("content_type", "data"))[:-1],
])
def test_malformed_attribute_sets(contents: bytes) -> None:
    assert read_signed_attributes(contents) is None


def _hand_signed(signer: Party, attributes: list[cms.CMSAttribute]) -> bytes:
    """Opaque signed-data over MESSAGE whose signed attributes are ``attributes``, with a
    signature that verifies over them: only their content can be wrong."""
    assert isinstance(signer.key, rsa.RSAPrivateKey)
    signed_attrs = cms.CMSAttributes(attributes)
    signature = signer.key.sign(signed_attrs.dump(), PKCS1v15(), hashes.SHA256())
    cert = asn1_x509.Certificate.load(signer.der)
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": cert.issuer, "serial_number": cert.serial_number}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signed_attrs": signed_attrs,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
        "signature": signature,
    })
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "data", "content": MESSAGE},
        "certificates": [cert],
        "signer_infos": [signer_info],
    })
    der = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return (b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(der).replace(b"\n", b"\r\n"))


def test_a_validly_signed_repeated_attribute_is_malformed(world: World) -> None:
    digest = hashlib.sha256(MESSAGE).digest()
    good = [_attribute("content_type", "data"), _attribute("message_digest", digest),
            _attribute("signing_time", cms.Time(name="utc_time", value=now()))]
    result = verify_smime(_hand_signed(world.signer, good), [world.ca.cert])
    assert result.valid, result.reason  # the hand-made structure is right as such
    repeated = [*good, _attribute("message_digest", digest)]
    result = verify_smime(_hand_signed(world.signer, repeated), [world.ca.cert])
    assert (result.valid, result.reason) == (False, "signed attributes are malformed")
    other_type = [_attribute("content_type", "signed_data"), *good[1:]]
    result = verify_smime(_hand_signed(world.signer, other_type), [world.ca.cert])
    assert result.reason == "content-type attribute missing or mismatched"
    wrong = [good[0], _attribute("message_digest", hashlib.sha256(b"other").digest()), good[2]]
    assert verify_smime(_hand_signed(world.signer, wrong), [world.ca.cert]).reason == \
        "content digest mismatch"


# --- the outer content type from the body's first bytes ----------------------------------------


def _entities(world: World) -> dict[str, bytes]:
    return {
        "signed": _crlf(_sign(world, world.signer, "-nodetach", "-outform", "SMIME")),
        "enveloped": _crlf(_openssl(world, "-encrypt", "-aes-256-cbc", "-outform", "SMIME",
                                    str(world.signer.cert_pem))),
        "auth_enveloped": _crlf(_openssl(world, "-encrypt", "-aes-256-gcm", "-outform", "SMIME",
                                         str(world.signer.cert_pem))),
    }


def test_the_content_type_from_the_first_bytes_is_the_whole_body_s(world: World) -> None:
    expected = {"signed": "signed_data", "enveloped": "enveloped_data",
                "auth_enveloped": "authenticated_enveloped_data"}
    for name, entity in _entities(world).items():
        headers = entity_headers(entity)
        assert body_content_type(entity, headers) == expected[name]
        assert cms_content_type(entity_body(entity, headers)) == expected[name]
        # The DER itself as the body (7bit or binary), and base64 in lines of 4 characters.
        der = entity_body(entity, headers)
        head = b"Content-Type: application/pkcs7-mime\r\n"
        for encoding, body in ((b"binary", der),
                               (b"base64", b"\r\n".join(re.findall(
                                   rb".{1,4}", base64.b64encode(der))))):
            raw = head + b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body
            assert body_content_type(raw, entity_headers(raw)) == expected[name]


@pytest.mark.parametrize("body", [b"", b"AAAA", b"R2FyYmFnZSwgbm90IENNUw==", b"MIAGCSqGSIb3",
                                  b"!!!!" * 40, b"MA==" * 30])
def test_no_content_type_in_garbage(body: bytes) -> None:
    raw = (b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + body + b"\r\n")
    assert body_content_type(raw, entity_headers(raw)) is None


def test_smime_type_left_out_is_told_by_the_content(world: World) -> None:
    entities = _entities(world)
    for name, kind in (("signed", "signed"), ("enveloped", "encrypted"),
                       ("auth_enveloped", "encrypted")):
        entity = re.sub(rb";\s*smime-type=[\w-]+", b"", entities[name])
        assert b"smime-type" not in entity.split(b"\r\n\r\n")[0]
        assert smime_kind(entity_headers(entity), entity) == kind


# --- multipart/signed cut from the raw bytes ------------------------------------------------


def test_detached_content_with_lines_like_the_delimiter(world: World) -> None:
    boundary = b"xgate-" + os.urandom(6).hex().encode()
    content = (b"Content-Type: text/plain\r\n\r\n"
               b"--" + boundary + b"-not-a-delimiter\r\n"
               b"x--" + boundary + b"\r\n"
               b" --" + boundary + b"\r\n"
               b"Ende\r\n")
    signature = _openssl(world, "-sign", "-binary", "-outform", "DER", "-signer",
                         str(world.signer.cert_pem), "-inkey", str(world.signer.key_pem),
                         data=content)
    raw = (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
           b'micalg=sha-256; boundary="' + boundary + b'"\r\n\r\n'
           b"--" + boundary + b"\r\n" + content + b"\r\n"
           b"--" + boundary + b"\r\n"
           b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(signature).replace(b"\n", b"\r\n")
           + b"\r\n--" + boundary + b"--\r\n")
    result = verify_smime(raw, [world.ca.cert])
    assert result.valid, result.reason
    assert result.content == content
    # One byte of the content changed: the cut is the signed bytes, not more or less.
    tampered = raw.replace(b"Ende", b"Endf")
    assert verify_smime(tampered, [world.ca.cert]).reason == "content digest mismatch"


# --- pinned certificates looked up only when they can matter ----------------------------------


def test_pinned_certificates_are_only_looked_up_for_a_self_issued_signer(world: World) -> None:
    calls: list[int] = []

    def lookup() -> list[x509.Certificate]:
        calls.append(1)
        return [world.self_signed.cert]

    by_ca = _crlf(_sign(world, world.signer, "-nodetach", "-outform", "SMIME"))
    result = verify_smime(by_ca, [world.ca.cert], pinned=lookup)
    assert result.valid and not result.pinned
    assert calls == []
    own = _crlf(_openssl(world, "-sign", "-nodetach", "-outform", "SMIME", "-signer",
                         str(world.self_signed.cert_pem), "-inkey",
                         str(world.self_signed.key_pem)))
    result = verify_smime(own, [world.ca.cert], pinned=lookup)
    assert result.valid and result.pinned, result.reason
    assert calls == [1]
    # Not pinned (the lookup has nothing): no chain, as before.
    assert verify_smime(own, [world.ca.cert], pinned=lambda: []).reason == \
        "no chain to a trusted CA"
