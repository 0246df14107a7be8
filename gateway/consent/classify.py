"""Is an outbound message a sensitive report, and for which case and category?

Three ways, documented for caseworkers in the README, and a safety net:

* header fields set by a mail-client add-in or the web form: ``X-Xgate-Case``,
  ``X-Xgate-Category`` (and, for a transfer on a legal basis, ``X-Xgate-Legal-Basis`` and
  ``X-Xgate-Justification``);
* a subject tag such as ``[AZ 51.2-1234/2026][Gutachten]``, removed before the mail leaves;
* the sender's mailbox: everything a mailbox marked sensitive sends outside is sensitive;
* a case reference the consent register knows, named in the subject or the text (found by
  ``gateway.consent.references``): a report of that case whoever forgot to tag it.

A pure function of what the message says, so the same rules serve the pipeline and tests.
Whatever makes a message sensitive but leaves its case or category unclear is a *problem*,
and the pipeline holds the message: the rule fails closed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.settings import ConsentSettings

# The sender's request, as header fields. They are taken from the submitted message before
# the strip stage removes every X-Xgate-* field from outside, and are never passed on as is.
CASE_HEADER = "x-xgate-case"
CATEGORY_HEADER = "x-xgate-category"
LEGAL_BASIS_HEADER = "x-xgate-legal-basis"
JUSTIFICATION_HEADER = "x-xgate-justification"
REQUEST_HEADERS = (CASE_HEADER, CATEGORY_HEADER, LEGAL_BASIS_HEADER, JUSTIFICATION_HEADER)

# "[AZ 51.2-1234/2026]" optionally followed by "[category]". "AZ" is the usual abbreviation
# of Aktenzeichen; a colon after it is tolerated because people type one.
_TAG = re.compile(r"\[\s*AZ[:\s]\s*(?P<case>[^\[\]]+?)\s*\]"
                  r"(?:\s*\[\s*(?P<category>[^\[\]]+?)\s*\])?", re.IGNORECASE)
_MAX_FIELD = 500
NAMED_IN_TEXT = "case reference in the text"


@dataclass(frozen=True)
class ConsentRequest:
    """What the sender's header fields ask for; empty fields are None."""

    case: str | None = None
    category: str | None = None
    legal_basis: str | None = None
    justification: str | None = None

    @classmethod
    def from_headers(cls, values: dict[str, str]) -> ConsentRequest:
        def get(name: str) -> str | None:
            value = " ".join(values.get(name, "").split())[:_MAX_FIELD]
            return value or None

        return cls(get(CASE_HEADER), get(CATEGORY_HEADER), get(LEGAL_BASIS_HEADER),
                   get(JUSTIFICATION_HEADER))


@dataclass(frozen=True)
class Classification:
    sensitive: bool
    # "header", "subject tag", "sensitive mailbox" or "case reference in the text"
    source: str | None = None
    case: str | None = None
    category: str | None = None
    legal_basis: str | None = None
    justification: str | None = None
    # Why the gate cannot decide; any problem holds the message.
    problems: tuple[str, ...] = ()
    # The subject without the tag, or None when there was no tag to remove.
    clean_subject: str | None = None


@dataclass(frozen=True)
class SubjectTag:
    case: str
    category: str | None
    clean_subject: str


def parse_subject_tag(subject: str) -> SubjectTag | None:
    match = _TAG.search(subject)
    if match is None:
        return None
    clean = " ".join((subject[:match.start()] + " " + subject[match.end():]).split())
    return SubjectTag(" ".join(match["case"].split()), match["category"], clean)


def canonical_category(name: str, settings: ConsentSettings) -> str | None:
    """The catalogue's spelling of ``name``: exact, an alias, or differing only in case."""
    wanted = " ".join(name.split())
    if wanted in settings.categories:
        return wanted
    folded = wanted.casefold()
    for alias, target in settings.category_aliases.items():
        if alias.casefold() == folded:
            return target
    for category in settings.categories:
        if category.casefold() == folded:
            return category
    return None


def canonical_legal_basis(name: str, settings: ConsentSettings) -> str | None:
    """The configured spelling of a legal basis; "§8a SGB VIII" is "§ 8a SGB VIII"."""
    def key(text: str) -> str:
        return "".join(text.split()).casefold()

    return next((b for b in settings.legal_bases if key(b) == key(name)), None)


def _named_in_text(cases: Sequence[str]) -> Classification:
    """A message without tag or fields that names cases of the register: a report of
    one of them, but of which kind (and, for several, of which case) it does not say."""
    how = ("tag the subject [AZ {case}][Gutachten] (with its category) or give "
           "X-Xgate-Case and X-Xgate-Category")
    if len(cases) == 1:
        problem = (f"names case {cases[0]} known to the consent register, but no category: "
                   + how.format(case=cases[0]))
        return Classification(sensitive=True, source=NAMED_IN_TEXT, case=cases[0],
                              problems=(problem,))
    problem = (f"names cases {', '.join(cases)} known to the consent register, but neither "
               "which one it reports on nor its category: " + how.format(case="…"))
    return Classification(sensitive=True, source=NAMED_IN_TEXT, problems=(problem,))


def classify(request: ConsentRequest, subject: str | None, *, sensitive_mailbox: bool,
             settings: ConsentSettings, named_cases: Sequence[str] = ()) -> Classification:
    """``named_cases``: the register's case references the subject or text names (only
    asked for when nothing else makes the message a report)."""
    tag = parse_subject_tag(subject) if subject else None
    problems: list[str] = []
    if request.case or request.category or request.legal_basis:
        source = "header"
    elif tag is not None:
        source = "subject tag"
    elif sensitive_mailbox:
        source = "sensitive mailbox"
    elif named_cases:
        return _named_in_text(named_cases)
    else:
        return Classification(sensitive=False)

    case = request.case or (tag.case if tag else None)
    if request.case and tag and " ".join(request.case.split()).casefold() != tag.case.casefold():
        problems.append(f"X-Xgate-Case ({request.case}) and the subject tag ({tag.case}) "
                        "name different cases")
    named_category = request.category or (tag.category if tag else None)
    category = None
    if named_category:
        category = canonical_category(named_category, settings)
        if category is None:
            problems.append(f"unknown category {named_category!r}; the catalogue has: "
                            + ", ".join(settings.categories))
    legal_basis = None
    if request.legal_basis:
        legal_basis = canonical_legal_basis(request.legal_basis, settings)
        if legal_basis is None:
            problems.append(f"unknown legal basis {request.legal_basis!r}; known: "
                            + ", ".join(settings.legal_bases))
    if not case:
        problems.append("no case reference: give X-Xgate-Case or a subject tag such as "
                        "[AZ 51.2-1234/2026][Gutachten]")
    if not named_category:
        problems.append("no category: give X-Xgate-Category or a second subject tag such as "
                        "[Gutachten]")
    return Classification(
        sensitive=True, source=source, case=case, category=category, legal_basis=legal_basis,
        justification=request.justification, problems=tuple(problems),
        clean_subject=tag.clean_subject if tag else None)
