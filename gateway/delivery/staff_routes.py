"""Can the gateway reach the office's own staff? Held and quarantine notices and bounces go
to staff addresses; without a route (or a shared mailbox) for them they cannot be delivered.

``xgate init`` and ``xgate serve`` both ask this at the start and say so loudly; the
undeliverable notices themselves end as ``failed`` in the queue (gateway.pipeline.worker).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway.db import make_engine, make_session_factory, read_scope
from gateway.delivery.routing import domain_of, relay_route_for, resolve
from gateway.models import StaffAddress
from gateway.settings import Settings

log = logging.getLogger(__name__)

# How many of a domain's unreachable staff addresses a warning names.
_NAMED = 3


@dataclass(frozen=True)
class Unrouted:
    domain: str
    # Staff sender addresses in it that have no route; empty for an office domain whose
    # staff are not known (yet).
    addresses: tuple[str, ...] = ()

    def describe(self) -> str:
        who = ""
        if self.addresses:
            named = ", ".join(self.addresses[:_NAMED])
            more = len(self.addresses) - _NAMED
            who = f" ({named}{f' and {more} more' if more > 0 else ''})"
        return (f"no route for staff mail to {self.domain}{who}: held and quarantine "
                "notices and bounces to staff there cannot be delivered (they stay in the "
                "queue as failed); route the domain to the office's internal mail server")


def unrouted_staff(session: Session | None, settings: Settings) -> list[Unrouted]:
    """The office's domains, and the staff users' sender addresses, that nothing routes.

    Without a session only the office's domains are checked.
    """
    routes = settings.delivery.routes
    missing: dict[str, list[str]] = {
        d: [] for d in settings.gateway.local_domains
        if relay_route_for(f"postmaster@{d}", routes) is None}
    if session is not None:
        for address in session.scalars(select(StaffAddress.address).distinct()
                                       .order_by(StaffAddress.address)):
            # A staff address may be a shared mailbox too: then it is filed, not relayed.
            if resolve(session, address, routes) is None:
                missing.setdefault(domain_of(address), []).append(address)
    return [Unrouted(domain, tuple(addresses)) for domain, addresses in missing.items()]


def staff_route_problems(settings: Settings) -> list[str]:
    """One sentence per unreachable domain; an unreadable database checks the domains only."""
    engine = make_engine(settings)
    try:
        with read_scope(make_session_factory(engine)) as session:
            found = unrouted_staff(session, settings)
    except SQLAlchemyError:
        found = unrouted_staff(None, settings)
    finally:
        engine.dispose()
    return [u.describe() for u in found]


def warn_unrouted_staff(settings: Settings) -> Sequence[str]:
    """For a start-up: log each problem as a WARNING; the lines for a banner."""
    problems = staff_route_problems(settings)
    for problem in problems:
        log.warning("%s", problem)
    return problems
