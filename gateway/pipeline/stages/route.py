"""Decide each pending recipient's route; recipients without one fail with a DSN."""

from __future__ import annotations

from gateway.db import read_scope, session_scope
from gateway.delivery.dsn import Failure
from gateway.delivery.recipients import fail_recipients
from gateway.delivery.routing import resolve
from gateway.pipeline.context import MessageContext
from gateway.services import Services


class RouteStage:
    name = "route"

    def run(self, ctx: MessageContext, services: Services) -> None:
        routes = services.settings.delivery.routes
        unroutable: list[Failure] = []
        with read_scope(services.sessions) as session:
            for address in ctx.pending:
                route = resolve(session, address, routes)
                if route is None:
                    unroutable.append(Failure(address, "5.1.2", "no route to this destination"))
                else:
                    ctx.routes[address] = route
        if unroutable:
            with session_scope(services.sessions) as session:
                fail_recipients(session, services.master_key, services.settings,
                                message=ctx.ref, original=ctx.raw, failures=unroutable,
                                actor=ctx.worker, now=services.clock())
        failed = {f.recipient for f in unroutable}
        ctx.pending = [a for a in ctx.pending if a not in failed]
