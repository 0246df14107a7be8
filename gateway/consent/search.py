"""The consent register searched: by case reference, by a person named in a release, by
state, within the releases a user may see. What is shown is recorded in the audit trail.

The people a release names are sealed, so a search by person opens the current version of
every release in reach, in memory, and compares there (2,000 releases: about 0.2 s); the
search term itself is never recorded (it is a name). Without a person only the releases
shown are opened. A list shows at most ``limit`` releases.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit import AuditAction
from gateway.consent.records import VersionView, current_versions
from gateway.consent.views import release_state
from gateway.policy.consent import ReleaseTerms

STATES = ("active", "not yet valid", "expired", "revoked")


@dataclass(frozen=True)
class Found:
    releases: list[VersionView]
    # More matched than were shown: the user narrows the search.
    more: bool


def _names(view: VersionView) -> tuple[str, ...]:
    return (*view.release.data_subjects, view.release.granted_by.name)


def search_releases(session: Session, master_key: MasterKey, *, mailboxes: Collection[int] | None,
                    case: str | None, person: str | None, state: str | None, now: datetime,
                    zone: ZoneInfo, actor: str, via: str, limit: int) -> Found:
    """The current versions that match, newest release first, at most ``limit``; the
    reading is recorded (releases and versions, never names) in the caller's transaction."""
    def in_state(terms: ReleaseTerms) -> bool:
        return release_state(terms, now, zone) == state

    wanted = " ".join((person or "").split()).casefold()
    # The state is in the terms, the names only in the sealed part: without a name to look
    # for, only the releases shown (and one more, to know there are more) are opened.
    views = current_versions(session, master_key, case=case or None, mailboxes=mailboxes,
                             keep=in_state if state else None,
                             limit=None if wanted else limit + 1)
    if wanted:
        views = [v for v in views if any(wanted in " ".join(n.split()).casefold()
                                         for n in _names(v))]
    shown = views[:limit]
    audit.record(session, actor=actor, action=AuditAction.CONSENT_LISTED, detail={
        "case": case or None, "by_person": bool(wanted), "state": state or None,
        "releases": [[v.release.id, v.release.version] for v in shown], "via": via})
    return Found(shown, len(views) > limit)
