"""The consent gate: may this message go out under a release from confidentiality?

A release (Schweigepflichtentbindung) lets the office pass a named category of information
about one case to named recipients for a period. ``decide`` is a pure function of the message
facts, the release records and the clock, so the pipeline, the admin UI and the tests all get
the same answer for the same inputs, together with the reasons and the records it relied on
(the audit trail must show *which* release justified a transfer).

Order of the verdicts, and why:

* ALLOW first: a current release is the normal, strongest footing for a transfer.
* STATUTORY next: a legal basis can justify a transfer without consent, but only with a
  written justification and a second person's approval (four-eyes), so it never moves on by
  itself; ``ready`` says whether those two conditions are met.
* DENY when the only releases that would have covered the message are revoked or expired:
  the person withdrew or let lapse their consent, and sending anyway would be a breach.
* HOLD otherwise, naming the precise missing part so staff know what consent to obtain.

It fails closed throughout: anything not positively covered is held.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")

# The default catalogue of information categories. Category names are the terms used on the
# release forms, so they stay in German; they are compared exactly because a near miss
# ("Hilfeplan 2024") is a different thing the person did not consent to.
DEFAULT_CATEGORIES: frozenset[str] = frozenset({
    "Hilfeplan",
    "psychologisches Gutachten",
    "ärztlicher Bericht",
    "Schulbericht",
    "Familiengerichtsentscheidung",
    "Stellungnahme",
    "Sonstiges",
})

GrantorRole = Literal["parent", "guardian", "young person", "other"]
RecipientKind = Literal["partner", "address"]

GRANTOR_ROLES: tuple[str, ...] = ("parent", "guardian", "young person", "other")
_GRANTOR_ROLES: frozenset[str] = frozenset(GRANTOR_ROLES)
_RECIPIENT_KINDS: frozenset[str] = frozenset({"partner", "address"})


# The reason a STATUTORY decision gives when the sender wrote no justification; approving
# such a transfer is refused (gateway.consent.holds), as no approval can make it ready.
JUSTIFICATION_MISSING = "a justification is required"


class Verdict(StrEnum):
    ALLOW = "allow"
    HOLD = "hold"
    DENY = "deny"
    STATUTORY = "statutory"


@dataclass(frozen=True)
class RecipientRef:
    """A recipient a release names: a partner organisation, or one single address."""

    kind: RecipientKind
    value: str

    def __post_init__(self) -> None:
        # Checked at run time as well because records come from forms and the database,
        # where the Literal type gives no protection.
        if self.kind not in _RECIPIENT_KINDS:
            raise ValueError(f"unknown recipient kind {self.kind!r}")
        if not self.value.strip():
            raise ValueError("recipient value must not be empty")


@dataclass(frozen=True)
class Grantor:
    name: str
    role: GrantorRole

    def __post_init__(self) -> None:
        if self.role not in _GRANTOR_ROLES:
            raise ValueError(f"unknown grantor role {self.role!r}")


@dataclass(frozen=True)
class ReleaseTerms:
    """What one version of a release allows: all the decision reads.

    The people it is about, who granted it and for what purpose are not among them: they are
    stored sealed, and the gate decides without opening them (see ``Release``).
    """

    id: int
    version: int
    case: str  # the case reference (Aktenzeichen)
    categories: frozenset[str]
    recipients: tuple[RecipientRef, ...]
    valid_from: date
    valid_until: date
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        # A naive revocation time cannot be compared with the clock without guessing a zone;
        # refusing it here keeps the guess out of the decision.
        if self.revoked_at is not None and self.revoked_at.utcoffset() is None:
            raise ValueError("revoked_at must be timezone-aware")
        if self.valid_from > self.valid_until:
            raise ValueError("valid_from is after valid_until")

    @property
    def ref(self) -> tuple[int, int]:
        return (self.id, self.version)


@dataclass(frozen=True, kw_only=True)
class Release(ReleaseTerms):
    """One version of a release from confidentiality, as recorded: its terms and the
    personal part (the data subjects, the grantor, the purpose)."""

    data_subjects: tuple[str, ...]
    granted_by: Grantor
    purpose: str


@dataclass(frozen=True)
class MessageFacts:
    case: str
    category: str
    recipient_address: str
    recipient_partner: str | None
    statutory_basis: str | None
    justification: str | None
    approvals: tuple[str, ...]  # who approved a statutory transfer
    sender: str


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]
    used: tuple[tuple[int, int], ...]  # (release id, version) of the records relied on
    ready: bool = False  # STATUTORY only: justification present and a second approver


def normalise_case(case: str) -> str:
    """Case references are typed by hand in many places; spacing and case carry no meaning."""
    return " ".join(case.split()).casefold()


def _normalise_name(name: str) -> str:
    return " ".join(name.split()).casefold()


def _normalise_address(address: str) -> str:
    return address.strip().casefold()


def names_recipient(release: ReleaseTerms, address: str, partner: str | None) -> bool:
    """Does the release name this recipient, by exact address or by partner organisation?"""
    wanted_address = _normalise_address(address)
    wanted_partner = _normalise_name(partner) if partner and partner.strip() else None
    for ref in release.recipients:
        if ref.kind == "address" and _normalise_address(ref.value) == wanted_address:
            return True
        if (ref.kind == "partner" and wanted_partner is not None
                and _normalise_name(ref.value) == wanted_partner):
            return True
    return False


def local_date(now: datetime, tz: ZoneInfo = BERLIN) -> date:
    """The calendar date at ``now`` in the office's zone; validity is judged on this date.

    A release "valid until 29 March" means until the end of that day as people in the office
    see it, whatever the UTC offset is that night.
    """
    return now.astimezone(tz).date()


def _latest_versions(releases: Sequence[ReleaseTerms]) -> list[ReleaseTerms]:
    # A newer version of a release replaces the older one: if a person narrowed their consent
    # (dropped a recipient, shortened the period), the old, wider version must not still let
    # messages through. Equal (id, version) pairs are all kept: they are duplicates, not
    # replacements, and dropping one arbitrarily would make the result depend on input order.
    newest: dict[int, int] = {}
    for r in releases:
        newest[r.id] = max(r.version, newest.get(r.id, r.version))
    return [r for r in releases if r.version == newest[r.id]]


def _refs(releases: Sequence[ReleaseTerms]) -> tuple[tuple[int, int], ...]:
    # Sorted and de-duplicated so the audit record does not depend on the input order.
    return tuple(sorted({r.ref for r in releases}))


def _statutory(facts: MessageFacts, basis: str) -> Decision:
    reasons = [f"no current release covers this message; statutory basis invoked: {basis}"]
    justified = bool(facts.justification and facts.justification.strip())
    sender = _normalise_address(facts.sender)
    # Four-eyes: the sender approving their own transfer does not count, nor does a blank.
    second = any(a.strip() and _normalise_address(a) != sender for a in facts.approvals)
    if not justified:
        reasons.append(JUSTIFICATION_MISSING)
    if not second:
        reasons.append("approval by a second person other than the sender is required")
    if justified and second:
        reasons.append("justification present and approved by a second person")
    return Decision(Verdict.STATUTORY, tuple(reasons), (), ready=justified and second)


def decide(facts: MessageFacts, releases: Sequence[ReleaseTerms], now: datetime,
           tz: ZoneInfo = BERLIN, *,
           categories: Collection[str] = DEFAULT_CATEGORIES) -> Decision:
    """Decide whether the message may go out under a release, and say why."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    case = " ".join(facts.case.split())
    category = facts.category
    recipient = facts.recipient_address.strip()

    # An unknown category can never be covered by a release and is most likely a data-entry
    # error; it is held even under a statutory basis, because the basis must name what is sent.
    if category not in categories:
        return Decision(Verdict.HOLD, (f"unknown category: {category}",), ())

    today = local_date(now, tz)
    current = _latest_versions(releases)
    for_case = [r for r in current if normalise_case(r.case) == normalise_case(case)]
    for_category = [r for r in for_case if category in r.categories]
    matching = [r for r in for_category
                if names_recipient(r, facts.recipient_address, facts.recipient_partner)]

    def revoked(r: ReleaseTerms) -> bool:
        return r.revoked_at is not None and r.revoked_at <= now

    valid = [r for r in matching
             if not revoked(r) and r.valid_from <= today <= r.valid_until]
    if valid:
        refs = _refs(valid)
        listed = ", ".join(f"{i} v{v}" for i, v in refs)
        return Decision(
            Verdict.ALLOW,
            (f"release {listed} covers case {case}, category {category}, recipient "
             f"{recipient} on {today.isoformat()}",),
            refs,
        )

    basis = facts.statutory_basis.strip() if facts.statutory_basis else ""
    if basis:
        return _statutory(facts, basis)

    lapsed = [r for r in matching if revoked(r) or r.valid_until < today]
    pending = [r for r in matching if not revoked(r) and today < r.valid_from]
    # A release that is signed but not yet in force is the "new one" that makes a lapsed
    # release no reason to refuse: the message waits for it instead of being denied.
    if pending:
        start = min(r.valid_from for r in pending)
        return Decision(Verdict.HOLD, (f"not yet valid (from {start.isoformat()})",),
                        _refs(pending))
    if lapsed:
        lapses: set[str] = set()
        for r in lapsed:
            if r.revoked_at is not None and r.revoked_at <= now:
                lapses.add(f"release {r.id} v{r.version} was revoked at "
                           f"{r.revoked_at.astimezone(tz).isoformat()}")
            else:
                lapses.add(f"release {r.id} v{r.version} expired after "
                           f"{r.valid_until.isoformat()}")
        # Sorted so the reasons, like ``used``, do not depend on the order of the records.
        reasons = sorted(lapses)
        reasons.append("no current release covers this message")
        return Decision(Verdict.DENY, tuple(reasons), _refs(lapsed))

    if not for_case:
        return Decision(Verdict.HOLD, (f"no release for case {case}",), ())
    if not for_category:
        return Decision(
            Verdict.HOLD, (f"the releases for case {case} do not cover category {category}",), ())
    return Decision(
        Verdict.HOLD, (f"the releases for case {case} do not cover recipient {recipient}",), ())
