"""Leaf parts and MIME limits (scanning.parts): decoding, nesting, and hostile structure."""

from __future__ import annotations

import base64
import binascii
import datetime
import tracemalloc
from email import policy
from email.message import Message
from email.parser import BytesParser

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from gateway.settings import Settings
from scanning.parts import (
    MimeLimits,
    Part,
    TooComplex,
    check_raw_structure,
    decoded_message,
    leaf_parts,
    uuencoded_blocks,
)

LIMITS = MimeLimits()
CRLF = "\r\n"


def parse(raw: bytes | str) -> Message:
    data = raw.encode() if isinstance(raw, str) else raw
    parsed: Message = BytesParser(policy=policy.default).parsebytes(data)
    return parsed


def nested(depth: int, newline: str = CRLF) -> bytes:
    """``depth`` multiparts, each the only part of the one around it."""
    head = [f"From: a@example.org{newline}MIME-Version: 1.0{newline}"]
    tail = []
    for level in range(depth):
        head.append(f'Content-Type: multipart/mixed; boundary="b{level}"{newline}{newline}'
                    f"--b{level}{newline}")
        tail.append(f"{newline}--b{level}--{newline}")
    body = f"Content-Type: text/plain{newline}{newline}innen{newline}"
    return ("".join(head) + body + "".join(reversed(tail))).encode()


def many_parts(count: int) -> bytes:
    parts = ["From: a@example.org\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"]
    for number in range(count):
        parts.append(f"--x\r\nContent-Type: text/plain\r\n"
                     f'Content-Disposition: attachment; filename="f{number}.txt"\r\n\r\n'
                     f"Teil {number}\r\n")
    parts.append("--x--\r\n")
    return "".join(parts).encode()


def attachment_message() -> bytes:
    pdf = b"%PDF-1.7 Bericht\x00\xff" * 20
    return (
        "From: jugendamt@example.org\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        "--outer\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "Gr=C3=BC=C3=9Fe aus dem Jugendamt\r\n"
        "--outer\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="bericht.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(pdf).decode().replace("\n", "\r\n")
        + "--outer--\r\n"
    ).encode()


# --- decoding ------------------------------------------------------------------------------


def test_from_settings_takes_the_scanning_section() -> None:
    scanning = Settings().scanning.model_copy(update={"max_mime_parts": 7,
                                                      "max_mime_depth": 3})
    assert MimeLimits.from_settings(scanning) == MimeLimits(max_parts=7, max_depth=3)


def test_leaf_parts_are_decoded_from_base64_and_quoted_printable() -> None:
    parts = list(leaf_parts(parse(attachment_message()), LIMITS))
    assert [(p.path, p.content_type, p.filename) for p in parts] == [
        ("1 text/plain", "text/plain", None),
        ("2 attachment bericht.pdf", "application/pdf", "bericht.pdf")]
    assert parts[0].data == "Grüße aus dem Jugendamt".encode()  # the CRLF is the boundary's
    assert parts[1].data == b"%PDF-1.7 Bericht\x00\xff" * 20
    assert parts[1].section == "2"


def test_a_single_part_message_is_part_1() -> None:
    message = parse("From: a@example.org\r\nContent-Type: text/plain\r\n\r\nHallo\r\n")
    assert list(leaf_parts(message, LIMITS)) == [
        Part("1 text/plain", "text/plain", None, b"Hallo\r\n", "1")]


def test_x_uuencode_parts_are_decoded() -> None:
    payload = b"MZ\x90\x00 binary \xff\x00" * 10
    encoded = b"begin 644 tool.exe\r\n" + b"".join(
        binascii.b2a_uu(payload[i:i + 45]).replace(b"\n", b"\r\n")
        for i in range(0, len(payload), 45)) + b"`\r\nend\r\n"
    raw = (b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
           b"--x\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: x-uuencode\r\n"
           b'Content-Disposition: attachment; filename="tool.exe"\r\n\r\n'
           + encoded + b"--x--\r\n")
    (part,) = leaf_parts(parse(raw), LIMITS)
    assert part.data == payload
    assert part.filename == "tool.exe"


def test_uuencoded_blocks_in_a_text_body_become_parts_of_their_own() -> None:
    payload = b"\x7fELF hidden in plain text"
    body = ("Hallo,\r\nanbei das Programm:\r\n\r\nbegin 755 run.bin\r\n"
            + binascii.b2a_uu(payload).decode().replace("\n", "\r\n")
            + "`\r\nend\r\n\r\nGruss\r\n")
    message = parse("From: a@example.org\r\nContent-Type: text/plain\r\n\r\n" + body)
    parts = list(leaf_parts(message, LIMITS))
    assert [p.path for p in parts] == ["1 text/plain", "1.uu1 attachment run.bin"]
    assert parts[1].data == payload
    assert parts[1].filename == "run.bin"


def test_uudecoding_is_lenient_about_a_missing_end() -> None:
    text = b"begin 644 a.txt\n" + binascii.b2a_uu(b"abc")
    assert list(uuencoded_blocks(text)) == [("a.txt", b"abc")]


def test_attached_messages_are_walked_into() -> None:
    inner = attachment_message().decode()
    raw = ("From: b@example.org\r\nContent-Type: multipart/mixed; boundary=fw\r\n\r\n"
           "--fw\r\nContent-Type: text/plain\r\n\r\nWeitergeleitet:\r\n"
           "--fw\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--fw--\r\n")
    parts = list(leaf_parts(parse(raw), LIMITS))
    assert [p.path for p in parts] == ["1 text/plain", "2.1 text/plain",
                                       "2.2 attachment bericht.pdf"]
    assert parts[2].data.startswith(b"%PDF")


def test_an_attached_single_part_message_is_numbered_like_imap() -> None:
    raw = ("From: b@example.org\r\nContent-Type: multipart/mixed; boundary=fw\r\n\r\n"
           "--fw\r\nContent-Type: message/rfc822\r\n\r\n"
           "From: c@example.org\r\nContent-Type: text/plain\r\n\r\ninnen\r\n--fw--\r\n")
    assert [p.path for p in leaf_parts(parse(raw), LIMITS)] == ["1.1 text/plain"]


def test_decoded_message_joins_the_decoded_parts_and_is_bounded() -> None:
    message = parse(attachment_message())
    joined = decoded_message(message, LIMITS, 10_000)
    assert joined == "Grüße aus dem Jugendamt".encode() + b"%PDF-1.7 Bericht\x00\xff" * 20
    with pytest.raises(TooComplex, match="decoded message larger than 100 bytes"):
        decoded_message(message, LIMITS, 100)


# --- opaque-signed S/MIME ------------------------------------------------------------------


def signed_data(content: bytes) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Jugendamt Test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (pkcs7.PKCS7SignatureBuilder().set_data(content)
            .add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.DER, []))


def smime_part(der: bytes, smime_type: str | None = "signed-data") -> str:
    parameter = f"; smime-type={smime_type}" if smime_type else ""
    return (f'Content-Type: application/pkcs7-mime{parameter}; name="smime.p7m"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(der).decode().replace("\n", "\r\n"))


def wrapped(part: str) -> bytes:
    return ("From: a@example.org\r\nContent-Type: multipart/mixed; boundary=s\r\n\r\n"
            "--s\r\nContent-Type: text/plain\r\n\r\nsiehe Anhang\r\n"
            f"--s\r\n{part}--s--\r\n").encode()


@pytest.mark.parametrize("smime_type", ["signed-data", None])
def test_the_parts_of_opaque_signed_smime_are_scanned(smime_type: str | None) -> None:
    der = signed_data(attachment_message().replace(b"From: jugendamt@example.org\r\n", b""))
    parts = list(leaf_parts(parse(wrapped(smime_part(der, smime_type))), LIMITS))
    assert [p.path for p in parts] == ["1 text/plain", "2.1 text/plain",
                                       "2.2 attachment bericht.pdf"]
    assert parts[2].data == b"%PDF-1.7 Bericht\x00\xff" * 20


def test_opaque_signed_smime_labelled_by_file_name_only_is_opened_too() -> None:
    der = signed_data(b"Content-Type: text/plain\r\n\r\ninnen\r\n")
    part = ('Content-Type: application/octet-stream; name="smime.p7m"\r\n'
            'Content-Disposition: attachment; filename="smime.p7m"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(der).decode().replace("\n", "\r\n"))
    parts = list(leaf_parts(parse(wrapped(part)), LIMITS))
    assert [(p.path, p.data) for p in parts] == [("1 text/plain", b"siehe Anhang"),
                                                 ("2.1 text/plain", b"innen\r\n")]


def test_delivery_status_fields_are_scanned_as_text() -> None:
    raw = ("Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
           "--r\r\nContent-Type: message/delivery-status\r\n\r\n"
           "Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; a@b\r\n"
           "Action: failed\r\n\r\n--r--\r\n")
    (part,) = leaf_parts(parse(raw), LIMITS)
    assert b"Reporting-MTA: dns; mx.example.org" in part.data
    assert b"Action: failed" in part.data


def test_unreadable_opaque_signed_smime_is_too_complex() -> None:
    with pytest.raises(TooComplex, match="unreadable opaque-signed S/MIME part"):
        list(leaf_parts(parse(wrapped(smime_part(b"\x30\x03garbage"))), LIMITS))


def test_encrypted_smime_inside_stays_a_leaf() -> None:
    parts = list(leaf_parts(parse(wrapped(smime_part(b"\x30\x03abc", "enveloped-data"))),
                            LIMITS))
    assert [p.content_type for p in parts] == ["text/plain", "application/pkcs7-mime"]


def test_deep_nesting_inside_opaque_signed_smime_is_refused() -> None:
    der = signed_data(nested(30).split(b"\r\n", 2)[2])
    with pytest.raises(TooComplex, match="inside opaque-signed S/MIME"):
        list(leaf_parts(parse(wrapped(smime_part(der))), LIMITS))


# --- hostile structure ---------------------------------------------------------------------


def test_a_message_with_1000_parts_is_refused_before_and_after_parsing() -> None:
    raw = many_parts(1000)
    assert check_raw_structure(raw, LIMITS) == "more than 500 MIME parts"
    message = parse(raw)  # the stdlib copes with this many
    with pytest.raises(TooComplex, match="more than 500 MIME parts"):
        next(leaf_parts(message, LIMITS))


def test_parts_limit_plus_one() -> None:
    # The top-level multipart counts as a part: 9 attachments make 10 entities.
    limits = MimeLimits(max_parts=10)
    assert check_raw_structure(many_parts(9), limits) is None
    assert len(list(leaf_parts(parse(many_parts(9)), limits))) == 9
    assert check_raw_structure(many_parts(10), limits) == "more than 10 MIME parts"
    with pytest.raises(TooComplex):
        list(leaf_parts(parse(many_parts(10)), limits))


def test_multipart_nesting_of_100_levels_is_refused() -> None:
    raw = nested(100)
    assert check_raw_structure(raw, LIMITS) == "MIME nesting deeper than 20 levels"
    message = parse(raw)
    with pytest.raises(TooComplex, match="MIME nesting deeper than 20 levels"):
        next(leaf_parts(message, LIMITS))


def test_depth_limit_plus_one() -> None:
    assert check_raw_structure(nested(20), LIMITS) is None
    (part,) = leaf_parts(parse(nested(20)), LIMITS)
    assert part.data == b"innen\r\n"
    assert part.section == ".".join(["1"] * 20)
    assert check_raw_structure(nested(21), LIMITS) == "MIME nesting deeper than 20 levels"
    with pytest.raises(TooComplex):
        list(leaf_parts(parse(nested(21)), LIMITS))


def test_nesting_that_would_crash_the_parser_is_measured_in_linear_time() -> None:
    raw = nested(20_000)  # the stdlib parser gives up with RecursionError long before
    tracemalloc.start()
    try:
        assert check_raw_structure(raw, LIMITS) == "MIME nesting deeper than 20 levels"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


@pytest.mark.parametrize("newline", ["\n", "\r"])
def test_other_line_endings_are_followed_like_the_parser_does(newline: str) -> None:
    assert check_raw_structure(nested(30, newline), LIMITS) == \
        "MIME nesting deeper than 20 levels"
    assert check_raw_structure(nested(5, newline), LIMITS) is None


def test_attached_messages_count_as_nesting_in_the_raw_check() -> None:
    raw = "Content-Type: text/plain\r\n\r\nx\r\n"
    for _ in range(25):
        raw = "Content-Type: message/rfc822\r\n\r\n" + raw
    assert check_raw_structure(raw.encode(), LIMITS) == "MIME nesting deeper than 20 levels"
    with pytest.raises(TooComplex, match="nesting"):
        list(leaf_parts(parse(raw), LIMITS))


def test_digest_parts_default_to_attached_messages() -> None:
    raw = ("Content-Type: multipart/digest; boundary=d\r\n\r\n"
           + "".join("--d\r\n\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(3))
           + "--d--\r\n").encode()
    # 1 digest + 3 attached messages + 3 bodies inside them
    assert check_raw_structure(raw, MimeLimits(max_parts=4)) == "more than 4 MIME parts"
    assert check_raw_structure(raw, MimeLimits(max_parts=7)) is None
    assert len(list(leaf_parts(parse(raw), MimeLimits(max_parts=7)))) == 3


def test_a_boundary_line_closes_the_parts_opened_inside_it() -> None:
    # An unclosed inner multipart must not make the rest of the message count as deeper.
    raw = ("Content-Type: multipart/mixed; boundary=a\r\n\r\n"
           "--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n"
           + "--a\r\n\r\ny\r\n" * 3 + "--a--\r\n").encode()
    assert check_raw_structure(raw, MimeLimits(max_depth=2)) is None
    assert check_raw_structure(raw, MimeLimits(max_parts=6)) is None
    assert check_raw_structure(raw, MimeLimits(max_parts=5)) == "more than 5 MIME parts"
