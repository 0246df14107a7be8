"""The consent register searched: by case reference, by a person named in a release, by
state, within the releases a user may see. What is shown is recorded in the audit trail.

The people a release names are sealed, so a search by person opens the current version of
every release in reach, in memory, and compares there; the search term itself is never
recorded (it is a name). One office holds a few thousand releases, and a list shows at most
``limit`` of them.
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
    views = current_versions(session, master_key, case=case or None, mailboxes=mailboxes)
    wanted = " ".join((person or "").split()).casefold()
    if wanted:
        views = [v for v in views if any(wanted in " ".join(n.split()).casefold()
                                         for n in _names(v))]
    if state:
        views = [v for v in views if release_state(v.release, now, zone) == state]
    shown = views[:limit]
    audit.record(session, actor=actor, action=AuditAction.CONSENT_LISTED, detail={
        "case": case or None, "by_person": bool(wanted), "state": state or None,
        "releases": [[v.release.id, v.release.version] for v in shown], "via": via})
    return Found(shown, len(views) > limit)
