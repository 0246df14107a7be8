"""What the CLI, the API and the console do when a caseworker records, changes or revokes a
release: store the version, then re-check that case's reports at once, in one transaction.

Held reports the change now covers go out by themselves; a revocation also reaches the
case's reports waiting for a retry, so none leaves on a withdrawn consent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway.consent.holds import recheck_case
from gateway.consent.records import (
    Document,
    ReleaseInput,
    VersionView,
    add_release,
    change_release,
    revoke_release,
)
from gateway.settings import Settings


@dataclass(frozen=True)
class Recorded:
    version: VersionView
    # Queue ids of the reports sent through the consent gate again because of this change.
    rechecked: tuple[str, ...]


def record_release(session: Session, master_key: MasterKey, settings: Settings,
                   data: ReleaseInput, *, document: Document | None, actor: str,
                   now: datetime, mailbox_id: int | None = None) -> Recorded:
    view = add_release(session, master_key, settings.consent, data, document=document,
                       actor=actor, now=now, mailbox_id=mailbox_id)
    release = view.release
    woken = recheck_case(session, release.case, actor=actor, now=now,
                         why=f"release {release.id} v{release.version} recorded")
    return Recorded(view, tuple(woken))


def record_change(session: Session, master_key: MasterKey, settings: Settings,
                  release_id: int, data: ReleaseInput, *, document: Document | None,
                  actor: str, now: datetime, expected_version: int | None = None) -> Recorded:
    view = change_release(session, master_key, settings.consent, release_id, data,
                          document=document, actor=actor, now=now,
                          expected_version=expected_version)
    release = view.release
    # A narrower release must stop queued reports as a revocation does; a wider one must
    # free held ones. Both are a re-check of the case's reports.
    woken = recheck_case(session, release.case, actor=actor, now=now, include_queued=True,
                         why=f"release {release.id} changed (v{release.version})")
    return Recorded(view, tuple(woken))


def record_revocation(session: Session, master_key: MasterKey, release_id: int, *,
                      actor: str, reason: str, now: datetime,
                      revoked_at: datetime | None = None) -> Recorded:
    view = revoke_release(session, master_key, release_id, actor=actor, reason=reason,
                          now=now, revoked_at=revoked_at)
    release = view.release
    woken = recheck_case(session, release.case, actor=actor, now=now, include_queued=True,
                         why=f"release {release.id} revoked")
    return Recorded(view, tuple(woken))
