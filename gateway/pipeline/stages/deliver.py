"""Deliver to each pending recipient: file into a mailbox, or relay to the next hop.

A relay delivery is recorded as soon as the next hop has answered the final dot, before the
session is ended with QUIT (the transport calls back): first noted in the relay journal
(gateway.delivery.journal: one fsync, no wait for the queue database's write lock), then in
the queue database in a short transaction of its own. A crash after the note does not repeat
the delivery. A crash between the next hop's 250 and the note leaves the recipient pending,
and the message is sent again once the lease has run out: a duplicate, as with every MTA.
benchmarks/relay_window.py measures that window.

A mailbox copy is sealed here and filed by the worker in the one transaction that also
records the message's outcome: filed, marked delivered and audited together or not at all,
so it is exactly once without a transaction of its own.

A recipient the outbound policy planned PORTAL gets no mail with content: its pickup item and
the notice are made in one transaction of their own (gateway.delivery.portal_pickup), before
anything is relayed, so it never reaches a next hop.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from gateway import audit
from gateway.audit import AuditAction
from gateway.consent.records import still_current
from gateway.db import read_scope, session_scope
from gateway.delivery.dsn import Failure
from gateway.delivery.portal_pickup import (
    PortalDelivery,
    put_up_for_pickup,
    send_code_by_sms,
)
from gateway.delivery.recipients import fail_recipients, mark_delivered, note_attempt
from gateway.delivery.routes import LocalRoute
from gateway.delivery.transport import Reply, TransportError
from gateway.memory_release import RELEASE_AFTER_BYTES
from gateway.mime.headers import header_block
from gateway.models import Direction
from gateway.pipeline.context import Filing, MessageContext
from gateway.pipeline.outcomes import Defer
from gateway.policy.outbound import Protection
from gateway.services import Services
from gateway.settings import RelayRoute, TlsPolicy
from mailboxes.store import seal_for_mailbox

log = logging.getLogger(__name__)

# Next hop, its TLS policy, and which form of the message (recipients' copies differ when
# they are encrypted for them).
_HopKey = tuple[str, int, TlsPolicy, Path | None, int]


class DeliverStage:
    name = "deliver"

    def run(self, ctx: MessageContext, services: Services) -> None:
        if ctx.consent_used:
            with read_scope(services.sessions) as session:
                current = still_current(session, ctx.consent_used, services.clock())
            if not current:
                # Changed since the consent stage looked: run the whole pipeline again
                # rather than send on a release that may no longer cover the report.
                raise Defer("a release this report relies on changed; checking again",
                            retry_after=0)
        if len(ctx.body) >= RELEASE_AFTER_BYTES:
            # No stage after this one reads the parsed tree (ctx.headers() reads the header
            # block alone without it), and for a large message it holds about one more
            # copy of the message while the delivered forms are made.
            ctx.let_go_of_the_tree()
        # Each form of the message as the result header fields and the message after them,
        # joined only for a relay: a filed copy is sealed from the two pieces.
        head = header_block(ctx.result_headers)
        forms: dict[int, tuple[bytes, bytes]] = {0: (head, ctx.body)}
        joined: dict[int, bytes] = {}

        def form_of(address: str) -> int:
            own = ctx.outgoing.get(address)
            if own is None:
                return 0
            forms.setdefault(id(own), (head, own))
            return id(own)

        def whole(form: int) -> bytes:
            if form not in joined:
                joined[form] = b"".join(forms[form])
            return joined[form]

        failures: list[Failure] = []
        transient: dict[str, str] = {}

        if ctx.direction == Direction.OUTBOUND:
            self._to_portal(ctx, services)
        for address in list(ctx.pending):
            route = ctx.routes[address]
            if isinstance(route, LocalRoute):
                self._file(ctx, services, address, route, forms[form_of(address)])

        # One session per next hop *and* TLS policy: keyed by host:port alone, a route that
        # allows plaintext could carry mail whose own route requires verified TLS.
        by_hop: dict[_HopKey, list[str]] = defaultdict(list)
        hops: dict[_HopKey, RelayRoute] = {}
        for address in ctx.pending:
            route = ctx.routes[address]
            if isinstance(route, RelayRoute):
                key = (route.host, route.port, route.tls, route.ca_file, form_of(address))
                by_hop[key].append(address)
                hops[key] = route
        if ctx.direction == Direction.OUTBOUND:
            self._refuse_unprotected(ctx, by_hop)
        for key, addresses in by_hop.items():
            self._relay(ctx, services, hops[key], addresses, whole(key[4]), failures,
                        transient)

        now = services.clock()
        if ctx.pending and now - ctx.received_at >= timedelta(
                seconds=services.settings.delivery.max_lifetime_seconds):
            for address in ctx.pending:
                last = transient.get(address, "no successful delivery attempt")
                failures.append(Failure(address, "4.4.7",
                                        f"delivery time expired; last error: {last}"))
        if failures:
            with session_scope(services.sessions) as session:
                fail_recipients(session, services.master_key, services.settings,
                                message=ctx.ref, original=ctx.raw, failures=failures,
                                actor=ctx.worker, now=now)
            failed = {f.recipient for f in failures}
            ctx.pending = [a for a in ctx.pending if a not in failed]
        if ctx.pending:
            reasons = sorted({transient.get(a, "not attempted") for a in ctx.pending})
            raise Defer(f"{len(ctx.pending)} recipient(s) deferred: " + "; ".join(reasons))

    def _to_portal(self, ctx: MessageContext, services: Services) -> None:
        plans = ctx.outbound_crypto.plans
        addresses = [a for a in ctx.pending
                     if a in plans and plans[a].protection == Protection.PORTAL]
        if not addresses:
            return
        now = services.clock()
        done: list[PortalDelivery] = []
        with session_scope(services.sessions) as session:
            for address in addresses:
                done.append(put_up_for_pickup(
                    session, services.master_key, services.settings,
                    message_id=ctx.message_id, queue_id=ctx.queue_id, sender=ctx.mail_from,
                    recipient=address, content=ctx.body,
                    sms_possible=services.code_sender is not None, actor=ctx.worker,
                    now=now))
        for address, delivery in zip(addresses, done, strict=True):
            ctx.pending.remove(address)
            # The item's id; the ticket page says in the reader's language what it means.
            ctx.facts[f"pickup:{address}"] = str(delivery.item_id)
        sender = services.code_sender
        for delivery in done:
            if sender is not None and delivery.sms is not None:
                with session_scope(services.sessions) as session:
                    send_code_by_sms(session, services.master_key, sender, delivery,
                                     office="Bürgerportal", actor=ctx.worker, now=now)

    def _refuse_unprotected(self, ctx: MessageContext, by_hop: dict[_HopKey, list[str]]) -> None:
        """The last line of defence: no external recipient gets the plain message unless
        the policy said so. A missing plan is a bug, and a bug must not leak plaintext."""
        for key, addresses in by_hop.items():
            route = ctx.routes[addresses[0]]
            if isinstance(route, RelayRoute) and route.internal:
                continue
            for address in addresses:
                if key[4] == 0 and not ctx.outbound_crypto.may_send_as_is(address):
                    raise RuntimeError(f"no protection decided for {address}; not relayed")

    def _file(self, ctx: MessageContext, services: Services, address: str, route: LocalRoute,
              content: tuple[bytes, bytes]) -> None:
        sealed = seal_for_mailbox(services.master_key, route.mailbox_id, ctx.message_id,
                                  content)
        ctx.filings.append(Filing(address, route, sealed, sum(map(len, content))))
        ctx.pending.remove(address)

    def _relay(self, ctx: MessageContext, services: Services, route: RelayRoute,
               addresses: list[str], content: bytes, failures: list[Failure],
               transient: dict[str, str]) -> None:
        hop = f"{route.host}:{route.port}"
        recorded = False

        def record(replies: Mapping[str, Reply]) -> None:
            nonlocal recorded
            recorded = True
            self._record(ctx, services, hop, route, addresses, replies, failures, transient)

        try:
            replies = services.transport.send(route, ctx.mail_from, addresses, content,
                                              on_replies=record)
        except TransportError as exc:
            for address in addresses:
                if exc.permanent:
                    failures.append(Failure(address, "5.4.0", exc.reason, route.host))
                else:
                    transient[address] = f"{hop}: {exc.reason}"
            with session_scope(services.sessions) as session:
                for address in addresses:
                    note_attempt(session, ctx.message_id, address, exc.reason)
            return
        if not recorded:
            # A transport that did not call back: record now, later than it should be.
            record(replies)

    def _record(self, ctx: MessageContext, services: Services, hop: str, route: RelayRoute,
                addresses: list[str], replies: Mapping[str, Reply], failures: list[Failure],
                transient: dict[str, str]) -> None:
        """The next hop's answers, recorded while its session is still open (see the module
        docstring): noted in the relay journal at once, then one short transaction."""
        replied = time.monotonic()
        outcome = [(a, replies.get(a, Reply(451, "4.3.0 no reply for recipient")))
                   for a in addresses]
        delivered = [(a, r) for a, r in outcome if r.ok]
        noted = self._note(ctx, services, hop, delivered)
        if noted:
            _log_recorded(ctx, hop, delivered, replied)
        now = services.clock()
        with session_scope(services.sessions) as session:
            for address, reply in outcome:
                if reply.ok:
                    mark_delivered(session, ctx.message_id, address, str(reply), now)
                elif not reply.permanent:
                    note_attempt(session, ctx.message_id, address, str(reply))
            audit.record_many(session, [audit.Event(
                ctx.worker, AuditAction.DELIVERED, ctx.queue_id,
                {"recipient": address, "relay": hop, "reply": str(reply)})
                for address, reply in delivered])
        if delivered and not noted:
            _log_recorded(ctx, hop, delivered, replied)
        if noted and services.relay_journal is not None:
            try:
                services.relay_journal.forget(ctx.queue_id, [a for a, _ in delivered])
            except sqlite3.Error as exc:
                # Forgotten when a worker process starts next, or the message is claimed.
                log.warning("relay journal: %s", exc, extra={"queue_id": ctx.queue_id})
        for address, reply in outcome:
            if reply.ok:
                ctx.pending.remove(address)
            elif reply.permanent:
                failures.append(Failure(address, _status(reply, "5.0.0"), str(reply),
                                        route.host))
            else:
                transient[address] = f"{hop}: {reply}"

    def _note(self, ctx: MessageContext, services: Services, hop: str,
              delivered: list[tuple[str, Reply]]) -> bool:
        """Note the deliveries in the relay journal; False if there is nothing to note or
        no journal to note it in."""
        journal = services.relay_journal
        if journal is None or not delivered:
            return False
        try:
            journal.note(ctx.queue_id, hop, [(a, str(r)) for a, r in delivered])
        except sqlite3.Error as exc:
            # The queue database's record follows at once; only the window is longer.
            log.error("relay journal unavailable (%s); recording in the queue database only",
                      exc, extra={"queue_id": ctx.queue_id})
            return False
        return True


def _log_recorded(ctx: MessageContext, hop: str, delivered: list[tuple[str, Reply]],
                  replied: float) -> None:
    """Logged as soon as the delivery is durably recorded (the journal's note, or else the
    queue database's commit): the crash tests and benchmarks/relay_window.py read it."""
    log.info("relay recorded", extra={
        "queue_id": ctx.queue_id, "relay": hop, "delivered": len(delivered),
        "reply": str(delivered[0][1]),
        # Wall clock, to set against the next hop's time of its 250.
        "recorded_at": round(time.time(), 6),
        "record_ms": round((time.monotonic() - replied) * 1000, 3)})


def _status(reply: Reply, default: str) -> str:
    first = reply.text.split(" ", 1)[0]
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] in "245":
        return first
    return default
