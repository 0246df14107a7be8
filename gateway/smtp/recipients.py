"""The RCPT decision of one listener, answered from memory when it can be.

Every RCPT of every session needs it, so a database round trip each time (a thread hop and
a query) would set the pace of the whole edge. What the settings decide (routes) needs no
lookup; shared mailbox addresses are few and are kept in memory for a few seconds. A miss
always reloads from the database before it refuses, so a mailbox added a moment ago is
accepted at once; a removed one may be accepted for up to ``ttl`` seconds and is then
bounced by the route stage, never lost.
"""

from __future__ import annotations

import asyncio
import time

from gateway.db import read_scope
from gateway.delivery.routing import relay_route_for, routed_inbound
from gateway.services import Services
from mailboxes.directory import all_addresses, normalise_address


class RecipientCheck:
    def __init__(self, services: Services, *, inbound: bool, ttl: float = 5.0) -> None:
        self.services = services
        self.inbound = inbound
        self.ttl = ttl
        self._mailboxes: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    async def acceptable(self, address: str) -> bool:
        if self._by_routes(address):
            return True
        fresh = time.monotonic() - self._loaded_at < self.ttl
        if fresh and normalise_address(address) in self._mailboxes:
            return True
        await asyncio.to_thread(self._reload)
        return normalise_address(address) in self._mailboxes

    def _by_routes(self, address: str) -> bool:
        settings = self.services.settings
        if self.inbound:
            return routed_inbound(address, settings.gateway.local_domains,
                                  settings.delivery.routes)
        return relay_route_for(address, settings.delivery.routes) is not None

    def _reload(self) -> None:
        with read_scope(self.services.sessions) as session:
            addresses = frozenset(all_addresses(session))
        self._mailboxes = addresses
        self._loaded_at = time.monotonic()
