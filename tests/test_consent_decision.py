"""The consent gate's decision: a table over every field, and a property that ALLOW is earned.

Pure function, no database: these tests take milliseconds, so the table can afford to pin
every boundary (including both DST nights of 2026 in Europe/Berlin) explicitly.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy.consent import (
    DEFAULT_CATEGORIES,
    Decision,
    Grantor,
    MessageFacts,
    RecipientRef,
    Release,
    Verdict,
    decide,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
CASE = "51-JA 123/26"
ADDRESS = "beratung@erziehungsberatung.example"
PARTNER = "Erziehungsberatung Nord"
SENDER = "m.schulz@jugendamt.example"


def release(rid: int = 1, version: int = 1, **changes: Any) -> Release:
    base = Release(
        id=rid,
        version=version,
        case=CASE,
        data_subjects=("Lena M.",),
        granted_by=Grantor("Petra M.", "parent"),
        categories=frozenset({"Hilfeplan", "Schulbericht"}),
        recipients=(RecipientRef("address", ADDRESS),),
        purpose="Hilfeplanung",
        valid_from=date(2026, 1, 1),
        valid_until=date(2026, 12, 31),
    )
    return replace(base, **changes)


def facts(**changes: Any) -> MessageFacts:
    base = MessageFacts(
        case=CASE,
        category="Hilfeplan",
        recipient_address=ADDRESS,
        recipient_partner=None,
        statutory_basis=None,
        justification=None,
        approvals=(),
        sender=SENDER,
    )
    return replace(base, **changes)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


PARTNER_ONLY = (RecipientRef("partner", PARTNER),)
STATUTORY = {"statutory_basis": "§ 8a SGB VIII", "justification": "acute risk to the child"}

# (releases, fact changes, now, verdict, used, a phrase the first reason must contain)
CASES = [
    pytest.param([release()], {}, NOW, Verdict.ALLOW, [(1, 1)], "covers case", id="covered"),
    # -- case reference
    pytest.param([release(case="  51-ja   123/26 ")], {}, NOW, Verdict.ALLOW, [(1, 1)], "covers",
                 id="case-normalised-whitespace-and-case"),
    pytest.param([release(case="51-JA 999/26")], {}, NOW, Verdict.HOLD, [],
                 "no release for case 51-JA 123/26", id="another-case"),
    pytest.param([], {}, NOW, Verdict.HOLD, [], "no release for case", id="no-releases"),
    # -- category
    pytest.param([release()], {"category": "ärztlicher Bericht"}, NOW, Verdict.HOLD, [],
                 "do not cover category ärztlicher Bericht", id="another-category"),
    pytest.param([release()], {"category": "hilfeplan"}, NOW, Verdict.HOLD, [],
                 "unknown category", id="category-is-exact"),
    pytest.param([release(categories=frozenset({"Arztbrief"}))], {"category": "Arztbrief"}, NOW,
                 Verdict.HOLD, [], "unknown category", id="category-not-in-catalogue"),
    pytest.param([release()], {"category": "Arztbrief", **STATUTORY, "approvals": ("k.lange",)},
                 NOW, Verdict.HOLD, [], "unknown category", id="unknown-category-not-statutory"),
    # -- recipient
    pytest.param([release()], {"recipient_address": "other@example.org"}, NOW, Verdict.HOLD, [],
                 "do not cover recipient other@example.org", id="another-recipient"),
    pytest.param([release()], {"recipient_address": "Beratung@ErziehungsBeratung.EXAMPLE"}, NOW,
                 Verdict.ALLOW, [(1, 1)], "covers", id="address-case-insensitive"),
    pytest.param([release(recipients=PARTNER_ONLY)],
                 {"recipient_address": "x@nord.example", "recipient_partner": PARTNER}, NOW,
                 Verdict.ALLOW, [(1, 1)], "covers", id="partner-match"),
    pytest.param([release(recipients=PARTNER_ONLY)],
                 {"recipient_address": "x@nord.example", "recipient_partner": "Kita Süd"}, NOW,
                 Verdict.HOLD, [], "do not cover recipient", id="another-partner"),
    pytest.param([release(recipients=PARTNER_ONLY)], {"recipient_address": "x@nord.example"},
                 NOW, Verdict.HOLD, [], "do not cover recipient", id="partner-unknown-to-facts"),
    pytest.param([release(recipients=(RecipientRef("address", "x@nord.example"),))],
                 {"recipient_address": "y@nord.example", "recipient_partner": PARTNER}, NOW,
                 Verdict.HOLD, [], "do not cover recipient",
                 id="address-release-does-not-cover-other-partner-address"),
    pytest.param([release(recipients=(RecipientRef("address", PARTNER),))],
                 {"recipient_address": "x@nord.example", "recipient_partner": PARTNER}, NOW,
                 Verdict.HOLD, [], "do not cover recipient", id="kinds-are-not-mixed"),
    # -- expiry, judged on the local date in Europe/Berlin (CEST = UTC+2, CET = UTC+1)
    pytest.param([release(valid_until=date(2026, 6, 15))], {}, utc(2026, 6, 15, 21, 59, 59),
                 Verdict.ALLOW, [(1, 1)], "covers", id="last-second-of-last-day-summer"),
    pytest.param([release(valid_until=date(2026, 6, 15))], {}, utc(2026, 6, 15, 22, 0),
                 Verdict.DENY, [(1, 1)], "expired after 2026-06-15", id="expired-local-midnight"),
    pytest.param([release(valid_until=date(2026, 3, 29))], {}, utc(2026, 3, 29, 21, 59, 59),
                 Verdict.ALLOW, [(1, 1)], "covers", id="dst-spring-last-second"),
    pytest.param([release(valid_until=date(2026, 3, 29))], {}, utc(2026, 3, 29, 22, 0),
                 Verdict.DENY, [(1, 1)], "expired", id="dst-spring-expired-at-local-midnight"),
    pytest.param([release(valid_until=date(2026, 3, 29))], {}, utc(2026, 3, 29, 1, 30),
                 Verdict.ALLOW, [(1, 1)], "covers", id="dst-spring-during-the-switch"),
    pytest.param([release(valid_until=date(2026, 3, 28))], {}, utc(2026, 3, 28, 23, 0),
                 Verdict.DENY, [(1, 1)], "expired", id="dst-spring-previous-day-ends-in-cet"),
    pytest.param([release(valid_until=date(2026, 10, 25))], {}, utc(2026, 10, 25, 22, 59, 59),
                 Verdict.ALLOW, [(1, 1)], "covers", id="dst-autumn-last-second-in-cet"),
    pytest.param([release(valid_until=date(2026, 10, 25))], {}, utc(2026, 10, 25, 23, 0),
                 Verdict.DENY, [(1, 1)], "expired", id="dst-autumn-expired-at-local-midnight"),
    pytest.param([release(valid_until=date(2026, 10, 25))], {}, utc(2026, 10, 25, 0, 30),
                 Verdict.ALLOW, [(1, 1)], "covers", id="dst-autumn-repeated-hour-first"),
    pytest.param([release(valid_until=date(2026, 10, 25))], {}, utc(2026, 10, 25, 1, 30),
                 Verdict.ALLOW, [(1, 1)], "covers", id="dst-autumn-repeated-hour-second"),
    pytest.param([release(valid_until=date(2026, 10, 24))], {}, utc(2026, 10, 24, 22, 0),
                 Verdict.DENY, [(1, 1)], "expired", id="dst-autumn-previous-day-ends-in-cest"),
    # -- not yet valid
    pytest.param([release(valid_from=date(2026, 3, 30))], {}, utc(2026, 3, 29, 21, 59, 59),
                 Verdict.HOLD, [(1, 1)], "not yet valid (from 2026-03-30)", id="not-yet-valid"),
    pytest.param([release(valid_from=date(2026, 3, 30))], {}, utc(2026, 3, 29, 22, 0),
                 Verdict.ALLOW, [(1, 1)], "covers", id="valid-from-local-midnight-dst"),
    pytest.param([release(valid_from=date(2026, 10, 25))], {}, utc(2026, 10, 24, 22, 0),
                 Verdict.ALLOW, [(1, 1)], "covers", id="valid-from-local-midnight-autumn"),
    # -- revocation: revoked means revoked_at <= now
    pytest.param([release(revoked_at=NOW - timedelta(days=1))], {}, NOW, Verdict.DENY, [(1, 1)],
                 "was revoked at", id="revoked-before-now"),
    pytest.param([release(revoked_at=NOW)], {}, NOW, Verdict.DENY, [(1, 1)], "was revoked",
                 id="revoked-exactly-now"),
    pytest.param([release(revoked_at=NOW + timedelta(seconds=1))], {}, NOW, Verdict.ALLOW,
                 [(1, 1)], "covers", id="revocation-in-the-future"),
    pytest.param([release(revoked_at=NOW - timedelta(days=1))], {"category": "Stellungnahme"},
                 NOW, Verdict.HOLD, [], "do not cover category",
                 id="revoked-release-of-other-category-is-hold"),
    # -- two overlapping releases
    pytest.param([release(2), release(1, recipients=(*PARTNER_ONLY, RecipientRef(
        "address", ADDRESS)))], {}, NOW, Verdict.ALLOW, [(1, 1), (2, 1)], "1 v1, 2 v1",
                 id="two-overlapping-both-used"),
    pytest.param([release(1, revoked_at=NOW - timedelta(hours=1)), release(2)], {}, NOW,
                 Verdict.ALLOW, [(2, 1)], "release 2 v1", id="revoked-one-valid-other"),
    pytest.param([release(1, valid_until=date(2026, 6, 14)), release(2)], {}, NOW,
                 Verdict.ALLOW, [(2, 1)], "release 2 v1", id="renewed-after-expiry"),
    pytest.param([release(1, valid_until=date(2026, 6, 14)),
                  release(2, revoked_at=NOW - timedelta(hours=1))], {}, NOW,
                 Verdict.DENY, [(1, 1), (2, 1)], "release 1 v1 expired", id="both-lapsed"),
    pytest.param([release(1, revoked_at=NOW - timedelta(hours=1)),
                  release(2, valid_from=date(2026, 7, 1))], {}, NOW,
                 Verdict.HOLD, [(2, 1)], "not yet valid (from 2026-07-01)",
                 id="revoked-but-new-one-pending"),
    # -- versions: the newest version of a release replaces the older ones
    pytest.param([release(1, 1), release(1, 2, recipients=PARTNER_ONLY)], {}, NOW, Verdict.HOLD,
                 [], "do not cover recipient", id="narrowed-by-newer-version"),
    pytest.param([release(1, 2), release(1, 1, recipients=PARTNER_ONLY)], {}, NOW, Verdict.ALLOW,
                 [(1, 2)], "release 1 v2", id="newer-version-used"),
    # -- statutory basis
    pytest.param([], {**STATUTORY, "approvals": ("k.lange@jugendamt.example",)}, NOW,
                 Verdict.STATUTORY, [], "statutory basis invoked: § 8a SGB VIII",
                 id="statutory-ready"),
    pytest.param([release()], {**STATUTORY, "approvals": ("k.lange@jugendamt.example",)}, NOW,
                 Verdict.ALLOW, [(1, 1)], "covers", id="statutory-but-release-covers"),
    pytest.param([release(revoked_at=NOW - timedelta(days=1))],
                 {**STATUTORY, "approvals": ("k.lange@jugendamt.example",)}, NOW,
                 Verdict.STATUTORY, [], "statutory basis", id="statutory-despite-revocation"),
]


@pytest.mark.parametrize(("releases", "changes", "now", "verdict", "used", "reason"), CASES)
def test_decision_table(releases: list[Release], changes: dict[str, Any], now: datetime,
                        verdict: Verdict, used: list[tuple[int, int]], reason: str) -> None:
    decision = decide(facts(**changes), releases, now)
    assert decision.verdict is verdict, decision.reasons
    assert decision.used == tuple(used)
    assert reason in decision.reasons[0]
    # Every statutory row in this table is justified and second-approved; the not-ready
    # variants have their own table below.
    assert decision.ready is (verdict is Verdict.STATUTORY)


@pytest.mark.parametrize(("changes", "ready", "missing"), [
    pytest.param({"approvals": ("k.lange@jugendamt.example",)}, True, None, id="ready"),
    pytest.param({"justification": None, "approvals": ("k.lange@jugendamt.example",)}, False,
                 "justification", id="no-justification"),
    pytest.param({"justification": "   ", "approvals": ("k.lange@jugendamt.example",)}, False,
                 "justification", id="blank-justification"),
    pytest.param({"approvals": ()}, False, "second person", id="no-approver"),
    pytest.param({"approvals": (SENDER,)}, False, "second person", id="sender-approves-self"),
    pytest.param({"approvals": (" M.Schulz@Jugendamt.EXAMPLE ",)}, False, "second person",
                 id="sender-approves-self-spelled-differently"),
    pytest.param({"approvals": ("",)}, False, "second person", id="blank-approver"),
    pytest.param({"approvals": (SENDER, "k.lange@jugendamt.example")}, True, None,
                 id="sender-and-second-approver"),
])
def test_statutory_needs_justification_and_second_approver(
        changes: dict[str, Any], ready: bool, missing: str | None) -> None:
    decision = decide(facts(**{**STATUTORY, **changes}), [], NOW)
    assert decision.verdict is Verdict.STATUTORY
    assert decision.ready is ready
    assert decision.used == ()
    if missing is not None:
        assert any(missing in r for r in decision.reasons[1:])


def test_blank_statutory_basis_is_no_basis() -> None:
    decision = decide(facts(statutory_basis="  ", justification="x", approvals=("a",)), [], NOW)
    assert decision.verdict is Verdict.HOLD


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(facts(), [release()], datetime(2026, 6, 15, 10, 0))
    with pytest.raises(ValueError, match="aware"):
        release(revoked_at=datetime(2026, 6, 15, 10, 0))


def test_malformed_records_are_refused() -> None:
    with pytest.raises(ValueError, match="valid_from"):
        release(valid_from=date(2026, 2, 1), valid_until=date(2026, 1, 31))
    with pytest.raises(ValueError, match="recipient kind"):
        RecipientRef("group", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grantor role"):
        Grantor("x", "neighbour")  # type: ignore[arg-type]


# ---- property: ALLOW is only ever backed by a release that really covers the message -------

CASES_POOL = ["51-JA 123/26", "51-ja  123/26", " 51-JA 123/26 ", "51-JA 124/26"]
ADDRESSES = ["a@p.example", "A@P.example", "b@p.example", "c@q.example"]
PARTNERS = ["Partner P", "partner  p", "Partner Q"]
CATEGORIES = sorted(DEFAULT_CATEGORIES)[:3]
# Around both DST nights, so the local date and the UTC date often differ.
ANCHORS = [datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 0, tzinfo=UTC)]

# Half the moments fall in 21:00-23:05 UTC, where the Berlin date is already the next day
# (or just turns over) on one side of the DST change and not on the other.
moments = st.builds(
    lambda anchor, days, minutes: anchor + timedelta(days=days, minutes=minutes),
    st.sampled_from(ANCHORS), st.integers(-3, 3),
    st.integers(0, 24 * 60 - 1) | st.integers(21 * 60, 23 * 60 + 5))
recipient_refs = st.one_of(
    st.builds(RecipientRef, st.just("address"), st.sampled_from(ADDRESSES)),
    st.builds(RecipientRef, st.just("partner"), st.sampled_from(PARTNERS)),
)


@st.composite
def releases(draw: st.DrawFn) -> Release:
    # Periods start near the same DST nights as the clock, so they often just cover it.
    anchor = draw(st.sampled_from(ANCHORS)).date()
    start = anchor + timedelta(days=draw(st.integers(-5, 3)))
    return release(
        draw(st.integers(1, 4)),
        draw(st.integers(1, 2)),
        case=draw(st.sampled_from(CASES_POOL)),
        categories=frozenset(draw(st.sets(st.sampled_from(CATEGORIES), min_size=1, max_size=3))),
        recipients=tuple(draw(st.lists(recipient_refs, min_size=1, max_size=3))),
        valid_from=start,
        valid_until=start + timedelta(days=draw(st.integers(0, 5))),
        revoked_at=draw(st.none() | st.none() | moments),
    )


message_facts = st.builds(
    facts,
    case=st.sampled_from(CASES_POOL),
    category=st.sampled_from([*CATEGORIES, "Unbekannt"]),
    recipient_address=st.sampled_from(ADDRESSES),
    recipient_partner=st.none() | st.sampled_from(PARTNERS),
    statutory_basis=st.none() | st.just("§ 8a SGB VIII"),
)


def _covers(r: Release, f: MessageFacts, now: datetime) -> bool:
    """An independent statement of "covers", written from the rules, not from the module."""
    local = now.astimezone(BERLIN).date()
    same_case = " ".join(r.case.split()).lower() == " ".join(f.case.split()).lower()
    partner = " ".join(f.recipient_partner.split()).lower() if f.recipient_partner else None
    names = any(
        (ref.kind == "address" and ref.value.lower() == f.recipient_address.lower())
        or (ref.kind == "partner" and " ".join(ref.value.split()).lower() == partner)
        for ref in r.recipients)
    return (same_case and f.category in r.categories and names
            and (r.revoked_at is None or r.revoked_at > now)
            and r.valid_from <= local <= r.valid_until)


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(releases(), max_size=6), message_facts, moments)
def test_allow_only_with_a_covering_release(rs: list[Release], f: MessageFacts,
                                            now: datetime) -> None:
    decision = decide(f, rs, now)
    if decision.verdict is Verdict.ALLOW:
        assert decision.used
        for ref in decision.used:
            assert any(r.ref == ref and _covers(r, f, now) for r in rs), (ref, decision)
    # The order of the records must not change the outcome or the audit trail.
    assert decide(f, list(reversed(rs)), now) == decision


@FAST
@given(st.lists(releases(), max_size=6), message_facts, moments)
def test_a_covering_release_with_no_newer_version_allows(rs: list[Release], f: MessageFacts,
                                                         now: datetime) -> None:
    # Give every record its own id so no version supersedes another: then covering is enough.
    rs = [replace(r, id=i, version=1) for i, r in enumerate(rs)]
    decision: Decision = decide(f, rs, now)
    covering = [r.ref for r in rs if _covers(r, f, now)]
    if covering and f.category in DEFAULT_CATEGORIES:
        assert decision.verdict is Verdict.ALLOW
        assert decision.used == tuple(sorted(covering))
    else:
        assert decision.verdict is not Verdict.ALLOW
