"""Encrypted attachments and the scanner, with gpg, openssl, qpdf, msoffcrypto-tool and zip as
the other side and the session's real clamd.

What the gateway holds a key for is opened in memory and its content scanned (EICAR inside
an OpenPGP or S/MIME attachment is found); what it cannot open is UNSCANNABLE with the
reason, also nested in a zip and in a forwarded message. And the verdict is the most severe
finding over every part: a blocked executable that clamd knows is INFECTED, two admins
cannot release it, and a signature update between a release and the delivery still stops a
released message.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.db import session_scope
from gateway.keydir.own_openpgp import import_own_openpgp
from gateway.models import Direction, Message, MessageState
from gateway.quarantine.records import ReleaseOutcome
from gateway.services import Services
from mailboxes.directory import add_mailbox
from scanning.encrypted import encryption_of
from scanning.verdict import Verdict
from tests.support import crypto_setup
from tests.support.clamd import CLAMAV_TESTFILES, EICAR, EICAR_NAME, TESTFILE_NAME, RunningClamd
from tests.support.gpg_partner import GpgPartner
from tests.support.openssl_partner import OpensslPartner, mail
from tests.support.pipeline import drain, enqueue, load_message
from tests.support.smime_pki import Party, make_ca, make_person
from tests.test_pipeline_scan import _admins, _approve
from tests.test_scan_limits import make_zip

MAILBOX = "kita@jugendamt.example"
SENDER = "a@partner.example"
STAFF = "sb@jugendamt.example"
TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nAnbei der Bericht.\r\n"
REPORT = b"%PDF-1.4\n% Bericht ueber L. M., vertraulich\n%%EOF\n"
TEST_SIGNATURES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "clamav"


@dataclass(frozen=True)
class Keys:
    directory: Path
    gpg: GpgPartner
    ours_pgp: str  # fingerprint of the mailbox's OpenPGP key (imported into each gateway)
    ours_pgp_secret: bytes
    stranger_pgp: str  # a key the gateway does not hold
    partner_pgp: str  # the sender's signing key
    ca: Party
    ours: Party  # the mailbox's S/MIME certificate
    stranger: Party  # someone else's S/MIME certificate
    partner: Party  # the sender's S/MIME certificate


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    d = tmp_path_factory.mktemp("scan-encrypted")
    ca = make_ca(d, "ca", bits=2048)
    with GpgPartner.create(d / "gpg") as gpg:
        ours = gpg.generate(f"Kita <{MAILBOX}>", "cv25519")
        yield Keys(d, gpg, ours, gpg.export_secret(ours),
                   gpg.generate("Jemand <jemand@elsewhere.example>", "cv25519"),
                   gpg.generate(f"Partner <{SENDER}>", "cv25519"),
                   ca, make_person(d, "ours", MAILBOX, ca),
                   make_person(d, "stranger", "jemand@elsewhere.example", ca, bits=2048),
                   make_person(d, "partner", SENDER, ca, bits=2048))


@pytest.fixture
def gw(services: Services, keys: Keys) -> Services:
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Kita")
        import_own_openpgp(s, services.master_key, MAILBOX, keys.ours_pgp_secret,
                           actor="test", now=services.clock())
    crypto_setup.own_smime(services, MAILBOX, keys.ours)
    crypto_setup.partner_key(services, keys.gpg.export_public(keys.partner_pgp))
    return services


# --- building mail ------------------------------------------------------------------------------


def attachment(data: bytes, name: str, content_type: str = "application/octet-stream") -> bytes:
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (f'Content-Type: {content_type}; name="{name}"\r\n'
            f'Content-Disposition: attachment; filename="{name}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + body


def multipart(*parts: bytes, boundary: str = "b0", sender: str = SENDER,
              to: str = MAILBOX) -> bytes:
    body = b"".join(f"--{boundary}\r\n".encode() + p + b"\r\n" for p in parts)
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: Bericht\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n').encode() + \
        body + f"--{boundary}--\r\n".encode()


def forwarded(inner: bytes) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + inner


def verdict(gw: Services, raw: bytes, *, direction: Direction = Direction.INBOUND,
            mail_from: str = SENDER, rcpt: str = MAILBOX) -> Message:
    queue_id = enqueue(gw, [rcpt], raw, mail_from=mail_from, direction=direction)
    drain(gw)
    return load_message(gw, queue_id)


def unscannable(gw: Services, raw: bytes) -> str:
    message = verdict(gw, raw)
    assert message.state == MessageState.QUARANTINED, message.reason
    assert message.reason is not None and message.reason.startswith("unscannable: "), \
        message.reason
    return message.reason


def facts(message: Message) -> dict[str, str]:
    assert message.facts is not None
    loaded = json.loads(message.facts)
    assert isinstance(loaded, dict)
    return loaded


def cms_der(keys: Keys, entity: bytes, *recipients: Party) -> bytes:
    """``openssl cms -encrypt`` with DER output: what a client saves as smime.p7m."""
    return OpensslPartner(keys.directory).run(
        "cms", "-encrypt", "-binary", "-aes-256-cbc", "-outform", "DER",
        *(str(p.cert_pem) for p in recipients), data=entity)


def eicar_entity() -> bytes:
    return (b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n' + TEXT
            + b"\r\n--x\r\n" + attachment(EICAR, "eicar.com") + b"\r\n--x--\r\n")


# --- recognition by content ---------------------------------------------------------------------


def run(*args: str, cwd: Path) -> None:
    """A command-line tool as a citizen or partner would run it; fails the test if it fails."""
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A real PDF made by qpdf, encrypted every way qpdf can."""
    d = tmp_path_factory.mktemp("pdfs")
    (d / "plain.pdf").write_bytes(
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >> endobj\n"
        b"trailer << /Root 1 0 R /Size 4 >>\n%%EOF\n")
    # The hand-written file has no cross-reference table: qpdf repairs it (exit code 3,
    # "succeeded with warnings") into a proper PDF.
    subprocess.run(["qpdf", "plain.pdf", "fixed.pdf"], cwd=d, capture_output=True, timeout=60,
                   check=False)
    made: dict[str, bytes] = {"plain": (d / "fixed.pdf").read_bytes()}
    # name: (key bits, encryption options, other options)
    variants = {"rc4-40": ("40", [], []), "rc4-128": ("128", [], []),
                "aes-128": ("128", ["--use-aes=y"], []),
                "aes-256-r5": ("256", ["--force-R5"], []), "aes-256": ("256", [], []),
                "aes-256-objstm": ("256", [], ["--object-streams=generate"])}
    for name, (bits, options, other) in variants.items():
        for user, kind in (("geheim", "user"), ("", "owner")):
            out = f"{kind}-{name}.pdf"
            run("qpdf", "--allow-weak-crypto", *other, "--encrypt", user, "eigentuemer", bits,
                *options, "--", "fixed.pdf", out, cwd=d)
            made[f"{kind}-{name}"] = (d / out).read_bytes()
    return made


@pytest.mark.parametrize("name", ["rc4-40", "rc4-128", "aes-128", "aes-256-r5", "aes-256",
                                  "aes-256-objstm"])
def test_pdf_with_a_user_password_is_encrypted_and_one_with_permissions_only_is_not(
        pdfs: dict[str, bytes], name: str) -> None:
    found = encryption_of(pdfs[f"user-{name}"])
    assert found is not None and found.kind == "pdf" and not found.openable
    assert found.description == "password-protected PDF"
    # An owner password alone restricts printing or copying; every reader (and ClamAV)
    # opens the file without asking, so it is scannable.
    assert encryption_of(pdfs[f"owner-{name}"]) is None
    assert encryption_of(pdfs["plain"]) is None


def test_pdf_with_an_unreadable_encryption_dictionary_fails_closed() -> None:
    broken = b"%PDF-1.7\ntrailer << /Root 1 0 R /Encrypt 9 0 R >>\n%%EOF\n"
    found = encryption_of(broken)
    assert found is not None and "cannot be read" in found.description


def test_recognised_by_content_not_by_name(keys: Keys, tmp_path: Path) -> None:
    gpg = keys.gpg
    assert encryption_of(gpg.encrypt(REPORT, [keys.ours_pgp], armor=False)) is not None
    armored = gpg.encrypt(REPORT, [keys.ours_pgp])
    assert encryption_of(b"Hallo,\r\nanbei:\r\n\r\n" + armored) is not None
    symmetric = gpg.run("--batch", "--pinentry-mode", "loopback", "--passphrase", "x",
                        "--symmetric", data=REPORT).stdout
    assert encryption_of(symmetric) is not None
    der = cms_der(keys, TEXT, keys.ours)
    found = encryption_of(der)
    assert found is not None and found.kind == "cms" and found.openable
    pem = b"-----BEGIN CMS-----\n" + base64.encodebytes(der) + b"-----END CMS-----\n"
    pem_found = encryption_of(pem)
    assert pem_found is not None and pem_found.der == der
    b64_found = encryption_of(base64.encodebytes(der))
    assert b64_found is not None and b64_found.der == der
    # Signed (and compressed) OpenPGP is no encryption, but ClamAV cannot read it either.
    for armor in (False, True):
        signed = encryption_of(gpg.sign(REPORT, keys.partner_pgp, "inline", armor=armor))
        assert signed is not None and signed.kind == "openpgp-signed", armor
    uncompressed = gpg.sign(REPORT, keys.partner_pgp, "inline", armor=False,
                            extra=["--compress-algo", "none"])
    found_plain = encryption_of(uncompressed)
    assert found_plain is not None and found_plain.kind == "openpgp-signed"
    # Detached signatures, keys and ordinary files are neither.
    assert encryption_of(gpg.sign(REPORT, keys.partner_pgp, "detached")) is None
    assert encryption_of(gpg.export_public(keys.partner_pgp)) is None
    assert encryption_of(REPORT) is None
    assert encryption_of(make_zip({"a.txt": b"hallo"})) is None
    assert encryption_of(bytes(range(256)) * 64) is None
    assert encryption_of(b"\x84\x8c\x03" + bytes(200)) is None


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A .docx, and the same encrypted with a password by msoffcrypto-tool (ECMA-376)."""
    from msoffcrypto.format.ooxml import OOXMLFile  # a test dependency (pyproject.toml)

    docx = make_zip({
        "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.'
                               b'openxmlformats.org/package/2006/content-types"/>',
        "word/document.xml": b"<w:document/>"})
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(docx)).encrypt("geheim", out)
    return {"docx": docx, "encrypted": out.getvalue()}


def test_encrypted_ooxml_is_recognised(office: dict[str, bytes]) -> None:
    found = encryption_of(office["encrypted"])
    assert found is not None and found.kind == "office" and not found.openable
    assert encryption_of(office["docx"]) is None


def rar5_with_encrypted_headers() -> bytes:
    """The start of a RAR 5 archive made with ``rar -hp``: the archive encryption header.

    (No rar program is packaged in Debian main; the header layout is RAR 5's documented
    one: CRC32 of the header, its size and type as vints, type 4 = archive encryption.)
    """
    body = bytes([4, 0]) + bytes([0, 0, 15]) + bytes(16) + bytes(16)  # type, flags, ...
    header = bytes([len(body)]) + body
    crc = zlib.crc32(header).to_bytes(4, "little")
    return b"Rar!\x1a\x07\x01\x00" + crc + header + bytes(64)


# --- the pipeline: opened and scanned -----------------------------------------------------------


def test_eicar_in_an_openpgp_attachment_for_our_key_is_found(gw: Services, keys: Keys) -> None:
    sealed = keys.gpg.encrypt(EICAR, [keys.ours_pgp], armor=False)
    message = verdict(gw, multipart(TEXT, attachment(sealed, "bericht.pdf.pgp")))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and message.reason.startswith("infected: ")
    assert EICAR_NAME in message.reason and "decrypted bericht.pdf" in message.reason


def test_eicar_in_an_armored_openpgp_attachment_is_found(gw: Services, keys: Keys) -> None:
    sealed = keys.gpg.encrypt(EICAR, [keys.ours_pgp])
    message = verdict(gw, multipart(TEXT, attachment(sealed, "bericht.asc", "text/plain")))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and EICAR_NAME in message.reason


def test_clean_signed_openpgp_attachment_is_delivered_with_what_was_opened(
        gw: Services, keys: Keys) -> None:
    sealed = keys.gpg.encrypt(REPORT, [keys.ours_pgp], signer=keys.partner_pgp, armor=False)
    message = verdict(gw, multipart(TEXT, attachment(sealed, "bericht.pdf.gpg")))
    assert message.state == MessageState.DELIVERED, message.reason
    opened = facts(message)["opened_attachments"]
    assert "bericht.pdf.gpg: OpenPGP" in opened
    assert "signature: valid" in opened and SENDER in opened


def test_openpgp_attachment_signed_by_someone_else_is_recorded_invalid(
        gw: Services, keys: Keys) -> None:
    sealed = keys.gpg.encrypt(REPORT, [keys.ours_pgp], signer=keys.stranger_pgp)
    message = verdict(gw, multipart(TEXT, attachment(sealed, "bericht.asc")))
    assert message.state == MessageState.DELIVERED, message.reason
    assert "signature: invalid" in facts(message)["opened_attachments"]


@pytest.mark.parametrize("armor", [False, True])
def test_eicar_in_a_signed_compressed_openpgp_attachment_is_found(
        gw: Services, keys: Keys, armor: bool) -> None:
    signed = keys.gpg.sign(EICAR, keys.partner_pgp, "inline", armor=armor)
    message = verdict(gw, multipart(TEXT, attachment(signed, "bericht.pdf.gpg")))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and EICAR_NAME in message.reason


def test_signed_openpgp_attachment_is_delivered_with_its_signature_recorded(
        gw: Services, keys: Keys) -> None:
    signed = keys.gpg.sign(REPORT, keys.partner_pgp, "inline", armor=False)
    message = verdict(gw, multipart(TEXT, attachment(signed, "bericht.pdf.gpg")))
    assert message.state == MessageState.DELIVERED, message.reason
    assert "OpenPGP signed; signature: valid" in facts(message)["opened_attachments"]


def test_openpgp_attachment_for_a_key_we_do_not_hold_is_unscannable(
        gw: Services, keys: Keys) -> None:
    sealed = keys.gpg.encrypt(EICAR, [keys.stranger_pgp], armor=False)
    reason = unscannable(gw, multipart(TEXT, attachment(sealed, "bericht.pdf.pgp")))
    assert "encrypted attachment: OpenPGP for a key we do not hold" in reason


def test_openpgp_attachment_with_a_password_is_unscannable(gw: Services, keys: Keys) -> None:
    sealed = keys.gpg.run("--batch", "--pinentry-mode", "loopback", "--passphrase", "x",
                          "--symmetric", data=EICAR).stdout
    reason = unscannable(gw, multipart(TEXT, attachment(sealed, "daten.bin")))
    assert "OpenPGP with a password" in reason


def test_eicar_in_an_attached_smime_p7m_for_our_key_is_found(gw: Services, keys: Keys) -> None:
    der = cms_der(keys, eicar_entity(), keys.ours)
    message = verdict(gw, multipart(TEXT, attachment(der, "smime.p7m",
                                                     "application/pkcs7-mime")))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and message.reason.startswith("infected: ")
    assert EICAR_NAME in message.reason and "smime.p7m > " in message.reason


def test_signed_then_encrypted_p7m_records_the_signature(gw: Services, keys: Keys) -> None:
    openssl = OpensslPartner(keys.directory)
    signed = openssl.sign(TEXT, keys.partner, keys.ca, opaque=False)
    der = cms_der(keys, signed, keys.ours)
    message = verdict(gw, multipart(TEXT, attachment(der, "bericht.p7m")))
    assert message.state == MessageState.DELIVERED, message.reason
    opened = facts(message)["opened_attachments"]
    assert "S/MIME aes-256-cbc" in opened.lower() or "S/MIME" in opened
    # The test gateway trusts no CA: the signature is there and checked, not valid.
    assert "signature: invalid (" in opened and "signer=" + SENDER in opened


def test_smime_attachment_for_someone_else_is_unscannable(gw: Services, keys: Keys) -> None:
    der = cms_der(keys, eicar_entity(), keys.stranger)
    reason = unscannable(gw, multipart(TEXT, attachment(der, "smime.p7m")))
    assert "S/MIME for a key we do not hold" in reason


def test_password_protected_pdf_is_unscannable_and_a_restricted_one_delivered(
        gw: Services, pdfs: dict[str, bytes]) -> None:
    reason = unscannable(gw, multipart(TEXT, attachment(pdfs["user-aes-256"], "b.pdf")))
    assert "password-protected PDF" in reason
    message = verdict(gw, multipart(TEXT, attachment(pdfs["owner-aes-256"], "b.pdf")))
    assert message.state == MessageState.DELIVERED, message.reason


def test_encrypted_office_document_is_unscannable(gw: Services,
                                                  office: dict[str, bytes]) -> None:
    reason = unscannable(gw, multipart(TEXT, attachment(office["encrypted"], "antrag.docx")))
    assert "password-protected Office document" in reason


def test_rar_with_encrypted_headers_is_unscannable(gw: Services) -> None:
    reason = unscannable(gw, multipart(TEXT, attachment(rar5_with_encrypted_headers(),
                                                        "x.rar")))
    assert "RAR with encrypted headers" in reason


@pytest.mark.parametrize("what", ["openpgp", "smime", "pdf", "office", "rar"])
def test_encrypted_content_nested_in_a_zip_is_unscannable(
        gw: Services, keys: Keys, pdfs: dict[str, bytes], office: dict[str, bytes],
        what: str) -> None:
    inner = {"openpgp": ("b.pdf.pgp", keys.gpg.encrypt(EICAR, [keys.stranger_pgp],
                                                       armor=False)),
             "smime": ("smime.p7m", cms_der(keys, eicar_entity(), keys.stranger)),
             "pdf": ("b.pdf", pdfs["user-rc4-128"]),
             "office": ("a.docx", office["encrypted"]),
             "rar": ("x.rar", rar5_with_encrypted_headers())}[what]
    reason = unscannable(gw, multipart(TEXT, attachment(make_zip(dict([inner])), "post.zip")))
    assert "post.zip" in reason and ("encrypted" in reason or "password" in reason)


def test_eicar_in_an_openpgp_file_for_our_key_inside_a_zip_is_found(
        gw: Services, keys: Keys) -> None:
    sealed = keys.gpg.encrypt(EICAR, [keys.ours_pgp], armor=False)
    message = verdict(gw, multipart(TEXT, attachment(make_zip({"b.pgp": sealed}), "p.zip")))
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and EICAR_NAME in message.reason


@pytest.mark.parametrize("what", ["openpgp", "smime-mime", "pdf"])
def test_encrypted_content_in_a_forwarded_message(gw: Services, keys: Keys,
                                                 pdfs: dict[str, bytes], what: str) -> None:
    if what == "openpgp":
        part = attachment(keys.gpg.encrypt(REPORT, [keys.stranger_pgp]), "x.asc", "text/plain")
    elif what == "smime-mime":
        # A whole S/MIME message for someone else, forwarded as it was.
        part = OpensslPartner(keys.directory).encrypt(TEXT, keys.stranger)
    else:
        part = attachment(pdfs["user-aes-128"], "b.pdf", "application/pdf")
    inner = multipart(TEXT, part, boundary="inner", sender="x@elsewhere.example")
    reason = unscannable(gw, multipart(TEXT, forwarded(inner)))
    assert "encrypted" in reason or "password" in reason


def test_outbound_mail_encrypted_by_the_senders_client_passes_the_scan(
        gw: Services, keys: Keys) -> None:
    # A caseworker's client encrypted for the partner: the gateway has no key to open it,
    # and the README promises it passes unchanged. Not scanned, and recorded as such.
    sealed = OpensslPartner(keys.directory).encrypt(TEXT, keys.partner)
    message = verdict(gw, mail(sealed, sender=STAFF, to=SENDER), direction=Direction.OUTBOUND,
                      mail_from=STAFF, rcpt=SENDER)
    recorded = facts(message)
    assert recorded["scan"] == "clean"
    assert "encrypted end to end by the sender's client" in recorded["opened_attachments"]


def test_outbound_attachment_encrypted_for_someone_else_is_unscannable(
        gw: Services, keys: Keys) -> None:
    sealed = keys.gpg.encrypt(EICAR, [keys.stranger_pgp], armor=False)
    message = verdict(gw, multipart(TEXT, attachment(sealed, "b.pgp"), sender=STAFF,
                                    to=SENDER), direction=Direction.OUTBOUND,
                      mail_from=STAFF, rcpt=SENDER)
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and message.reason.startswith("unscannable: ")


# --- the most severe finding decides ------------------------------------------------------------


CLAM_EXE = (CLAMAV_TESTFILES / "clam.exe").read_bytes()
HARMLESS_PE = b"MZ" + b"\x90" * 58 + (64).to_bytes(4, "little") + b"PE\x00\x00" + b"\x00" * 200


def test_blocked_executable_that_clamd_knows_is_infected_with_both_findings(
        gw: Services) -> None:
    message = verdict(gw, multipart(TEXT, attachment(CLAM_EXE, "setup.exe")))
    assert message.state == MessageState.QUARANTINED
    reason = message.reason
    assert reason is not None and reason.startswith("infected: ")
    assert TESTFILE_NAME in reason and "blocked: blocked type: executable" in reason


def test_two_admins_cannot_release_a_blocked_executable_that_is_malware(
        gw: Services) -> None:
    _admins(gw)
    message = verdict(gw, multipart(TEXT, attachment(CLAM_EXE, "setup.exe")))
    assert _approve(gw, message.queue_id, "alice").outcome == ReleaseOutcome.APPROVAL_RECORDED
    refused = _approve(gw, message.queue_id, "bob")
    assert refused.outcome == ReleaseOutcome.REFUSED
    assert TESTFILE_NAME in refused.detail
    assert load_message(gw, message.queue_id).state == MessageState.QUARANTINED


def test_signature_update_between_release_and_delivery_stops_the_message(
        gw: Services, tmp_path: Path) -> None:
    """Released by two admins as a harmless tool; clamd learns its hash before delivery."""
    import hashlib

    _admins(gw)
    message = verdict(gw, multipart(TEXT, attachment(HARMLESS_PE, "tool.exe")))
    assert message.reason is not None and message.reason.startswith("blocked: ")
    _approve(gw, message.queue_id, "alice")
    assert _approve(gw, message.queue_id, "bob").outcome == ReleaseOutcome.RELEASED
    signatures = tmp_path / "signatures"
    shutil.copytree(TEST_SIGNATURES, signatures)
    digest = hashlib.md5(HARMLESS_PE, usedforsecurity=False).hexdigest()
    (signatures / "update.hdb").write_text(f"{digest}:{len(HARMLESS_PE)}:Xgate.Test.Update\n")
    updated = RunningClamd.start(test_signatures_dir=str(signatures))
    try:
        scanner = gw.scanner
        previous = scanner.client
        scanner.client = updated.client()
        try:
            drain(gw)
        finally:
            scanner.client = previous
    finally:
        updated.close()
    stopped = load_message(gw, message.queue_id)
    assert stopped.state == MessageState.QUARANTINED
    assert stopped.reason is not None and "Xgate.Test.Update" in stopped.reason


def test_verdict_order_is_infected_unscannable_blocked() -> None:
    from scanning.verdict import Finding, ScanResult

    result = ScanResult.of([Finding(Verdict.BLOCKED, "blocked type: executable (PE)", "2"),
                            Finding(Verdict.UNSCANNABLE, "encrypted attachment", "3"),
                            Finding(Verdict.INFECTED, "Eicar", "2")])
    assert result.verdict == Verdict.INFECTED and result.part == "2"
    assert result.detail == ("infected: Eicar in 2; unscannable: encrypted attachment in 3; "
                             "blocked: blocked type: executable (PE) in 2")
    assert ScanResult.of([]).clean
