"""What a message delivered despite a failing signature must look like to its reader."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser


def assert_warned(filed: bytes, reason: str, german: str, *, sender: str, to: str,
                  subject: str = "Hilfeplan", original_text: str = "Vertraulich") -> str:
    """The subject carries the prefix; the warning (German first, then English, each with
    the precise reason) is the first part of a multipart/mixed around the original content;
    the outer header fields and the X-Xgate-Signature note are kept. Returns the warning."""
    parsed = BytesParser(policy=policy.default).parsebytes(filed)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == f"[Signatur ungültig] {subject}"
    assert (parsed["From"], parsed["To"]) == (sender, to)
    assert parsed["Date"] is not None and parsed["Message-ID"] is not None
    assert parsed["X-Xgate-Signature"] == "invalid"
    assert parsed.get_content_type() == "multipart/mixed"
    parts = list(parsed.iter_parts())
    assert len(parts) == 2
    warning, original = parts
    assert isinstance(warning, EmailMessage) and isinstance(original, EmailMessage)
    assert warning.get_content_type() == "text/plain"
    assert warning.get_content_charset() == "utf-8"
    text = warning.get_content()
    assert isinstance(text, str)
    assert text.index("Die Signatur dieser Nachricht ist ungültig") < text.index(
        "the signature of this message is invalid")
    assert german in text and reason in text
    assert original_text in original.get_content()
    return text
