"""Where a recipient's copy goes: a shared mailbox of the gateway or a relay next hop."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from gateway.delivery.routes import LocalRoute, Route
from gateway.settings import RelayRoute
from mailboxes.directory import mailbox_id_for


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def relay_route_for(address: str, routes: Sequence[RelayRoute]) -> RelayRoute | None:
    domain = domain_of(address)
    for route in routes:
        if route.domain == domain:
            return route
    for route in routes:
        if route.domain == "*":
            return route
    return None


def resolve(session: Session, address: str, routes: Sequence[RelayRoute]) -> Route | None:
    mailbox = mailbox_id_for(session, address)
    if mailbox is not None:
        return LocalRoute(*mailbox)
    return relay_route_for(address, routes)


def routed_inbound(address: str, local_domains: Sequence[str],
                   routes: Sequence[RelayRoute]) -> bool:
    """Inbound mail for the office's own domains that goes on to its internal mail server.

    Only an explicit internal route counts: the catch-all route would make us an open relay.
    """
    if domain_of(address) not in local_domains:
        return False
    route = relay_route_for(address, routes)
    return route is not None and route.internal and route.domain != "*"
