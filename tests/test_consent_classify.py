"""Classification of outbound mail for the consent gate: headers, subject tag, sensitive
mailbox, and the problems that hold a message (the rule fails closed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.consent.classify import (
    ConsentRequest,
    canonical_category,
    canonical_legal_basis,
    classify,
    parse_subject_tag,
)
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
