"""The inbound decision (gateway.policy.inbound) and the wording of signature failures
(gateway.policy.signature) as pure rules over facts; the warning part (gateway.mime.leading_text).

The pipeline tests (test_pipeline_smime, test_pipeline_openpgp) run the same rules with
openssl and gpg as the senders."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from crypto import smime_verify
from crypto.pgp_backend import REASON_BAD_SIGNATURE, REASON_KEY_REVOKED, REASON_SEVERAL_SIGNATURES
from gateway.keydir.models import InvalidSignature
from gateway.keydir.partners import PartnerPolicy
from gateway.mime.leading_text import prefix_subject, with_leading_text
from gateway.policy.inbound import InboundVerdict, decide_inbound
from gateway.policy.signature import Problem, SignatureFailure, classify
from gateway.settings import OutboundPolicy

AT = datetime(2026, 3, 31, 12, tzinfo=UTC)
TAMPERED = classify("smime", smime_verify.REASON_DIGEST)


def partner(*, invalid: InvalidSignature = InvalidSignature.QUARANTINE,
            require_signature: bool = False, require_encryption: bool = False
            ) -> PartnerPolicy:
    return PartnerPolicy(
        id=1, name="Jugendamt B", outbound_policy=OutboundPolicy.EITHER, smime_gcm=False,
        openpgp_inline=False, inbound_require_encryption=require_encryption,
        inbound_require_signature=require_signature, inbound_invalid_signature=invalid,
        non_sensitive=False, pattern="jugendamt-b.example")


def decide(failure: SignatureFailure | None, who: PartnerPolicy | None, *,
           released: bool = False, encrypted: bool = True, verified: bool = False
           ) -> tuple[InboundVerdict, str]:
    decision = decide_inbound(encrypted=encrypted, verified=verified, failure=failure,
                              partner=who, released=released)
    return decision.verdict, decision.reason


@pytest.mark.parametrize(("kind", "detail", "at", "problem", "reason", "german"), [
    ("smime", smime_verify.REASON_DIGEST, None, Problem.TAMPERED,
     "tampered: the content was altered after signing (content digest mismatch)",
     "der Inhalt wurde nach dem Signieren verändert"),
    ("smime", smime_verify.REASON_SIGNATURE, None, Problem.TAMPERED,
     "tampered: the content was altered after signing (signature does not verify)",
     "der Inhalt wurde nach dem Signieren verändert"),
    ("smime", smime_verify.REASON_EXPIRED, AT, Problem.EXPIRED,
     "certificate expired on 2026-03-31", "das Zertifikat ist am 31.03.2026 abgelaufen"),
    ("smime", smime_verify.REASON_NOT_YET_VALID, AT, Problem.NOT_YET_VALID,
     "certificate not yet valid (valid from 2026-03-31)",
     "das Zertifikat ist erst ab dem 31.03.2026 gültig"),
    ("smime", smime_verify.REASON_REVOKED, AT, Problem.REVOKED,
     "certificate revoked on 2026-03-31", "das Zertifikat wurde am 31.03.2026 widerrufen"),
    ("smime", smime_verify.REASON_NO_CHAIN, None, Problem.UNTRUSTED,
     "no chain to a trusted CA",
     "das Zertifikat führt zu keiner vertrauenswürdigen Zertifizierungsstelle"),
    ("smime", "certificate does not name the sender a@b.example", None,
     Problem.NOT_THE_SENDER, "certificate does not name the sender a@b.example",
     "das Zertifikat nennt nicht die Absenderadresse"),
    ("openpgp", "unknown signer key 0123456789ABCDEF", None, Problem.UNKNOWN_SIGNER,
     "unknown OpenPGP signer key 0123456789ABCDEF",
     "der Signaturschlüssel ist dem Gateway nicht bekannt"),
    ("openpgp", REASON_BAD_SIGNATURE, None, Problem.TAMPERED,
     "tampered: the content was altered after signing (bad signature)",
     "der Inhalt wurde nach dem Signieren verändert"),
    ("openpgp", REASON_KEY_REVOKED, None, Problem.REVOKED, "signing key revoked",
     "der Signaturschlüssel wurde widerrufen"),
    ("smime", "digest algorithm sha1 is not accepted", None, Problem.OTHER,
     "digest algorithm sha1 is not accepted",
     "die Prüfung ergab: digest algorithm sha1 is not accepted"),
])
def test_failures_are_named_precisely(kind: str, detail: str, at: datetime | None,
                                      problem: Problem, reason: str, german: str) -> None:
    failure = classify(kind, detail, at)
    assert (failure.problem, failure.reason, failure.german) == (problem, reason, german)
    name = "S/MIME" if kind == "smime" else "OpenPGP"
    assert failure.summary == f"{name} signature fails: {reason}"


def test_a_failing_signature_is_quarantined_by_default_for_everyone() -> None:
    assert decide(TAMPERED, None) == (InboundVerdict.QUARANTINE, TAMPERED.summary)
    assert decide(TAMPERED, partner()) == (InboundVerdict.QUARANTINE, TAMPERED.summary)


def test_a_partner_set_to_warn_gets_it_delivered_with_a_warning() -> None:
    assert decide(TAMPERED, partner(invalid=InvalidSignature.WARN)) == (
        InboundVerdict.WARN, TAMPERED.summary)


def test_warn_does_not_override_what_the_partner_must_do() -> None:
    must_sign = partner(invalid=InvalidSignature.WARN, require_signature=True)
    assert decide(TAMPERED, must_sign) == (
        InboundVerdict.QUARANTINE,
        f"partner 'Jugendamt B' must sign validly: {TAMPERED.summary}")
    must_encrypt = partner(invalid=InvalidSignature.WARN, require_encryption=True)
    verdict, reason = decide(TAMPERED, must_encrypt, encrypted=False)
    assert verdict is InboundVerdict.QUARANTINE and "must encrypt" in reason


def test_without_a_signature_nothing_changes() -> None:
    assert decide(None, None, encrypted=False) == (InboundVerdict.DELIVER, "")
    assert decide(None, partner(), encrypted=False) == (InboundVerdict.DELIVER, "")
    assert decide(None, partner(require_signature=True)) == (
        InboundVerdict.QUARANTINE,
        "partner 'Jugendamt B' must sign validly: the message is not signed")
    assert decide(None, partner(require_signature=True), verified=True) == (
        InboundVerdict.DELIVER, "")


def test_a_signature_the_gateway_cannot_check_counts_as_none() -> None:
    several = classify("openpgp", REASON_SEVERAL_SIGNATURES)
    assert several.problem is Problem.UNVERIFIABLE and not several.fails
    assert decide(several, None) == (InboundVerdict.DELIVER, "")
    verdict, _ = decide(several, partner(require_signature=True))
    assert verdict is InboundVerdict.QUARANTINE


def test_a_release_by_two_admins_delivers_and_still_warns() -> None:
    assert decide(TAMPERED, None, released=True) == (InboundVerdict.WARN, TAMPERED.summary)
    assert decide(None, partner(require_encryption=True), released=True,
                  encrypted=False) == (InboundVerdict.DELIVER, "")


MESSAGE = (b"Received: from x\r\nFrom: a@b.example\r\nTo: c@d.example\r\n"
           b"Subject: =?utf-8?q?Stellungnahme_f=C3=BCr_Kind_A?=\r\n"
           b"Date: Mon, 23 Nov 2026 08:00:00 +0100\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
           b"--alt\r\nContent-Type: text/plain\r\n\r\nHallo\r\n"
           b"--alt\r\nContent-Type: text/html\r\n\r\n<p>Hallo</p>\r\n--alt--\r\n")


def test_the_warning_comes_first_around_the_untouched_original() -> None:
    marked = prefix_subject(with_leading_text(MESSAGE, "Achtung: ungültig\nWarning"),
                            "[Signatur ungültig]")
    parsed = BytesParser(policy=policy.default).parsebytes(marked)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "[Signatur ungültig] Stellungnahme für Kind A"
    assert [parsed[h] for h in ("From", "To", "Date")] == [
        "a@b.example", "c@d.example", "Mon, 23 Nov 2026 08:00:00 +0100"]
    assert marked.startswith(b"Received: from x\r\n")
    assert marked.count(b"MIME-Version") == 1
    assert not parsed.defects
    warning, original = parsed.iter_parts()
    assert isinstance(warning, EmailMessage)
    assert warning.get_content().replace("\r\n", "\n") == "Achtung: ungültig\nWarning\n"
    assert original.get_content_type() == "multipart/alternative"
    # The original entity's bytes are all there, unchanged.
    assert MESSAGE[MESSAGE.index(b"Content-Type: multipart/alternative"):].rstrip() in marked


def test_the_prefix_is_put_on_once_and_a_missing_subject_gets_one() -> None:
    once = prefix_subject(MESSAGE, "[Signatur ungültig]")
    assert prefix_subject(once, "[Signatur ungültig]") == once
    bare = prefix_subject(b"From: a@b.example\r\n\r\nHallo\r\n", "[Signatur ungültig]")
    assert BytesParser(policy=policy.default).parsebytes(bare)["Subject"] == (
        "[Signatur ungültig]")
