"""Classification of outbound mail for the consent gate: headers, subject tag, sensitive
mailbox, and the problems that hold a message (the rule fails closed)."""

from __future__ import annotations

import base64
import quopri
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.consent.classify import (
    ConsentRequest,
    canonical_category,
    canonical_legal_basis,
    classify,
    parse_subject_tag,
)
from gateway.consent.references import MAX_CANDIDATES, case_references, leading_texts
from gateway.settings import ConsentSettings

SETTINGS = ConsentSettings()
CASE = "51.2-1234/2026"


@pytest.mark.parametrize(("subject", "case", "category", "clean"), [
    (f"[AZ {CASE}][Gutachten] Bericht", CASE, "Gutachten", "Bericht"),
    (f"Re: [AZ {CASE}] [Hilfeplan] Termin", CASE, "Hilfeplan", "Re: Termin"),
    (f"Bericht [az:{CASE}]", CASE, None, "Bericht"),
    ("[AZ  51.2 - 1234/2026 ][ ärztlicher Bericht ]", "51.2 - 1234/2026",
     "ärztlicher Bericht", ""),
])
def test_subject_tags(subject: str, case: str, category: str | None, clean: str) -> None:
    tag = parse_subject_tag(subject)
    assert tag is not None
    assert (tag.case, tag.category, tag.clean_subject) == (case, category, clean)


@pytest.mark.parametrize("subject", ["Bericht", "[Gutachten] Bericht", "[AZ] leer",
                                     "AZ 51.2-1234/2026 ohne Klammern", "[AZX 1]"])
def test_no_subject_tag(subject: str) -> None:
    assert parse_subject_tag(subject) is None


@pytest.mark.parametrize(("name", "expected"), [
    ("Gutachten", "psychologisches Gutachten"), ("gutachten", "psychologisches Gutachten"),
    ("Hilfeplan", "Hilfeplan"), ("HILFEPLAN", "Hilfeplan"), (" Schulbericht ", "Schulbericht"),
    ("Arztbericht", "ärztlicher Bericht"), ("Zeugnis", None), ("", None),
])
def test_categories_and_aliases(name: str, expected: str | None) -> None:
    assert canonical_category(name, SETTINGS) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("§ 8a SGB VIII", "§ 8a SGB VIII"), ("§8a SGB VIII", "§ 8a SGB VIII"),
    ("§ 4 kkg", "§ 4 KKG"), ("§ 8 SGB VIII", None), ("Notfall", None),
])
def test_legal_bases(name: str, expected: str | None) -> None:
    assert canonical_legal_basis(name, SETTINGS) == expected


def test_plain_mail_is_not_sensitive() -> None:
    assert not classify(ConsentRequest(), "Terminabsprache", sensitive_mailbox=False,
                        settings=SETTINGS).sensitive
    assert not classify(ConsentRequest(), None, sensitive_mailbox=False,
                        settings=SETTINGS).sensitive


def test_headers_win_and_resolve_aliases() -> None:
    found = classify(ConsentRequest(CASE, "Gutachten"), "Bericht", sensitive_mailbox=False,
                     settings=SETTINGS)
    assert (found.sensitive, found.source, found.case, found.category, found.problems) == (
        True, "header", CASE, "psychologisches Gutachten", ())
    assert found.clean_subject is None


def test_header_case_with_subject_category() -> None:
    found = classify(ConsentRequest(case=CASE), f"[AZ {CASE}][Hilfeplan] x",
                     sensitive_mailbox=False, settings=SETTINGS)
    assert (found.category, found.problems, found.clean_subject) == ("Hilfeplan", (), "x")


def test_header_and_tag_naming_different_cases_is_a_problem() -> None:
    found = classify(ConsentRequest(case="1/2026", category="Hilfeplan"),
                     f"[AZ {CASE}] x", sensitive_mailbox=False, settings=SETTINGS)
    assert found.problems == (f"X-Xgate-Case (1/2026) and the subject tag ({CASE}) name "
                              "different cases",)


@pytest.mark.parametrize(("request_", "subject", "mailbox", "problem"), [
    (ConsentRequest(), "Frage", True, "no case reference"),
    (ConsentRequest(), "Frage", True, "no category"),
    (ConsentRequest(), f"[AZ {CASE}] Bericht", False, "no category"),
    (ConsentRequest(case=CASE, category="Zeugnis"), None, False, "unknown category 'Zeugnis'"),
    (ConsentRequest(category="Hilfeplan"), None, False, "no case reference"),
    (ConsentRequest(case=CASE, category="Hilfeplan", legal_basis="Bauchgefühl"), None, False,
     "unknown legal basis 'Bauchgefühl'"),
    (ConsentRequest(legal_basis="§ 8a SGB VIII"), None, False, "no case reference"),
])
def test_problems_hold(request_: ConsentRequest, subject: str | None, mailbox: bool,
                       problem: str) -> None:
    found = classify(request_, subject, sensitive_mailbox=mailbox, settings=SETTINGS)
    assert found.sensitive
    assert any(p.startswith(problem) for p in found.problems), found.problems


def test_request_headers_are_trimmed_and_bounded() -> None:
    request = ConsentRequest.from_headers({"x-xgate-case": f"  {CASE}\r\n ",
                                           "x-xgate-category": "",
                                           "x-xgate-justification": "x" * 2000})
    assert request.case == CASE and request.category is None
    assert request.justification is not None and len(request.justification) == 500


@given(st.text(max_size=80), st.booleans())
def test_anything_sensitive_without_case_or_category_has_a_problem(subject: str,
                                                                   mailbox: bool) -> None:
    """Fail closed: a sensitive message is decidable only with a case and a known category."""
    found = classify(ConsentRequest(), subject, sensitive_mailbox=mailbox, settings=SETTINGS)
    if found.sensitive and not found.problems:
        assert found.case and found.category in SETTINGS.categories
    if mailbox:
        assert found.sensitive


# -- case references named in the subject or text ---------------------------------------------

def _part(body: bytes, *, encoding: str = "8bit", charset: str = "utf-8",
          subtype: str = "plain") -> bytes:
    return (f"Content-Type: text/{subtype}; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + body


def _parsed(*parts: bytes) -> EmailMessage:
    boundary = "b-1"
    body = b"".join(b"--b-1\r\n" + p + b"\r\n" for p in parts) + b"--b-1--\r\n"
    raw = (f"Subject: x\r\nMIME-Version: 1.0\r\n"
           f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n').encode() + body
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


PATTERN = SETTINGS.case_reference_pattern


@pytest.mark.parametrize(("text", "found"), [
    (f"Psychologisches Gutachten zu L. M. (AZ {CASE})", [CASE]),
    ("Az.: 51-12/26, dann 5.1.3-77/2025.", ["51-12/26", "5.1.3-77/2025"]),
    (f"{CASE} und nochmal {CASE}", [CASE]),
    ("Telefon 0421-361/20261, Rechnung R51.2-1234/2026, 51.2-1234/2026/7", []),
])
def test_default_pattern_finds_german_case_references(text: str, found: list[str]) -> None:
    assert case_references([text], PATTERN) == found


def test_a_group_named_case_is_the_reference() -> None:
    pattern = r"Fall\s+(?P<case>[A-Z]{2}-\d+)"
    assert case_references(["Fall  JA-17 und JA-18"], pattern) == ["ja-17"]


def test_candidates_are_capped() -> None:
    text = " ".join(f"51.2-{i}/2026" for i in range(MAX_CANDIDATES + 20))
    assert len(case_references([text], PATTERN)) == MAX_CANDIDATES


def test_leading_texts_decode_each_text_part_within_the_budget() -> None:
    text = f"Gutachten zum AZ {CASE}\r\n".encode()
    message = _parsed(_part(base64.encodebytes(text * 200), encoding="base64"),
                      _part(quopri.encodestring("Grüße, AZ 51-1/26".encode()),
                            encoding="quoted-printable", charset="utf-8", subtype="html"),
                      b"Content-Type: application/pdf\r\n\r\n51-2/26\r\n",
                      _part("Straße 51-3/26".encode("latin-1"), charset="x-unknown"))
    texts = list(leading_texts(message, 1_000_000))
    assert texts[0] == (text * 200).decode()
    assert texts[1] == "Grüße, AZ 51-1/26"
    # An unknown charset costs the umlauts, not the reference.
    assert texts[2] == "Stra\ufffde 51-3/26"
    assert case_references(texts, PATTERN) == [CASE, "51-1/26", "51-3/26"]
    # The budget covers all parts together, and only that much is decoded.
    limited = list(leading_texts(message, 1024))
    assert [len(t) for t in limited] == [1024]


def test_broken_base64_is_skipped_not_fatal() -> None:
    message = _parsed(_part(b"@@@ not base64 @@@\r\n", encoding="base64"),
                      _part(f"AZ {CASE}".encode()))
    assert case_references(leading_texts(message, 4096), PATTERN) == [CASE]


def test_named_cases_make_a_report_without_category() -> None:
    found = classify(ConsentRequest(), "Gutachten zu L.", sensitive_mailbox=False,
                     settings=SETTINGS, named_cases=[CASE])
    assert found.sensitive and found.case == CASE and found.category is None
    assert found.source == "case reference in the text"
    assert found.problems == (
        f"names case {CASE} known to the consent register, but no category: tag the subject "
        f"[AZ {CASE}][Gutachten] (with its category) or give X-Xgate-Case and "
        "X-Xgate-Category",)
    # A tag, a field or a sensitive mailbox decide first; the text only when none does.
    tagged = classify(ConsentRequest(), f"[AZ {CASE}][Gutachten] zu L.",
                      sensitive_mailbox=False, settings=SETTINGS, named_cases=["51-1/26"])
    assert tagged.source == "subject tag" and tagged.problems == ()
    assert not classify(ConsentRequest(), "Termin", sensitive_mailbox=False,
                        settings=SETTINGS).sensitive


@pytest.mark.parametrize(("pattern", "message"), [
    ("(unclosed", "not a regular expression"),
    ("\\d*", "matches empty text"),
])
def test_a_bad_case_reference_pattern_is_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ConsentSettings(case_reference_pattern=pattern)
