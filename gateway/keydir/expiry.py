"""Which keys expire soon: approved partner keys and the office's own keys in use.

A partner key that expires unnoticed makes outbound mail to that partner stop (held, never
sent in plaintext); an own key that expires makes partners' clients refuse to encrypt to us.
Both need a person to act weeks ahead, so the check warns ``warn_days`` in advance.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from gateway.clock import Clock
from gateway.db import read_scope
from gateway.keydir.models import KeyKind, KeyStatus, OwnKey, PartnerKey
from gateway.periodic import PeriodicJob

log = logging.getLogger(__name__)

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class ExpiringKey:
    owner: Literal["partner", "own"]
    id: int  # a partner key's id, or an own key's id
    kind: KeyKind
    fingerprint: str
    # The partner's name (or "" for a key without partner), or the own key's address.
    holder: str
    addresses: tuple[str, ...]
    not_after: datetime
    days_left: int  # whole days from now, rounded down

    def describe(self) -> str:
        whose = f"partner {self.holder}" if self.owner == "partner" and self.holder else (
            "partner key without partner" if self.owner == "partner" else f"own key {self.holder}")
        return (f"{whose}: {self.kind} key {self.id} ({self.fingerprint}) for "
                f"{', '.join(self.addresses)} expires {self.not_after:%Y-%m-%d} "
                f"(in {self.days_left} days)")


def expiring(session: Session, now: datetime, within_days: int) -> list[ExpiringKey]:
    """Approved partner keys and unretired own keys whose validity ends in the next
    ``within_days`` days (after ``now``), soonest first."""
    until = now + timedelta(days=within_days)
    found: list[ExpiringKey] = []
    partner_keys = session.scalars(
        select(PartnerKey).options(selectinload(PartnerKey.addresses),
                                   selectinload(PartnerKey.partner))
        .where(PartnerKey.status == KeyStatus.APPROVED, PartnerKey.not_after.is_not(None),
               PartnerKey.not_after > now, PartnerKey.not_after <= until))
    for key in partner_keys:
        assert key.not_after is not None
        found.append(ExpiringKey("partner", key.id, key.kind, key.fingerprint,
                                 key.partner.name if key.partner else "",
                                 tuple(key.address_list), key.not_after,
                                 (key.not_after - now) // _DAY))
    own_keys = session.scalars(
        select(OwnKey).where(OwnKey.retired.is_(False), OwnKey.not_after.is_not(None),
                             OwnKey.not_after > now, OwnKey.not_after <= until))
    for own in own_keys:
        assert own.not_after is not None
        found.append(ExpiringKey("own", own.id, own.kind, own.fingerprint, own.address,
                                 (own.address,), own.not_after, (own.not_after - now) // _DAY))
    return sorted(found, key=lambda k: (k.not_after, k.owner, k.id))


def check_expiry(session: Session, now: datetime, warn_days: int) -> list[ExpiringKey]:
    """``expiring`` plus one WARNING log record per key, for the log collector's alerts."""
    keys = expiring(session, now, warn_days)
    for key in keys:
        log.warning("key expires soon: %s", key.describe(), extra={
            "key_owner": key.owner, "key_id": key.id, "fingerprint": key.fingerprint,
            "not_after": key.not_after.isoformat()})
    return keys


class KeyExpiryCollector(Collector):
    """``xgate_keys_expiring``: keys expiring within the warning period, computed from the
    database at each scrape like gateway.metrics.QueueCollector."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, warn_days: int) -> None:
        self.sessions = sessions
        self.clock = clock
        self.warn_days = warn_days

    def collect(self) -> Iterator[Metric]:
        try:
            with read_scope(self.sessions) as session:
                keys = expiring(session, self.clock(), self.warn_days)
        except SQLAlchemyError as exc:
            # xgate_database_up already says the database is away; no made-up zero here.
            log.warning("metrics: database unavailable: %s", type(exc).__name__)
            return
        gauge = GaugeMetricFamily(
            "xgate_keys_expiring",
            "Keys in use whose validity ends within the warning period, by owner and kind",
            labels=["owner", "kind"])
        counts = {(owner, kind): 0 for owner in ("partner", "own") for kind in KeyKind}
        for key in keys:
            counts[(key.owner, key.kind)] += 1
        for (owner, kind), count in counts.items():
            gauge.add_metric([owner, kind.value], count)
        yield gauge


class ExpiryWatch(PeriodicJob):
    """Logs the expiry warnings periodically (every ``interval`` seconds, first at start).

    Runs in the admin web process, which exists once per installation, so each warning is
    logged once per round and not once per worker.
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, warn_days: int,
                 interval: float = 6 * 3600) -> None:
        super().__init__("key-expiry", interval)
        self.sessions = sessions
        self.clock = clock
        self.warn_days = warn_days

    def check_once(self) -> list[ExpiringKey]:
        try:
            with read_scope(self.sessions) as session:
                return check_expiry(session, self.clock(), self.warn_days)
        except SQLAlchemyError as exc:
            log.warning("key expiry check: database unavailable: %s", type(exc).__name__)
            return []

    def run_once(self) -> None:
        self.check_once()
