"""The aiosmtpd handler: what the edge decides at MAIL, RCPT and DATA.

Blocking work (database lookups, the spool's commit) runs in worker threads, never on the
event loop. The 250 after DATA is sent only after ``store_received``'s transaction committed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException
from sqlalchemy.exc import SQLAlchemyError

from crypto.at_rest import STREAM_SEAL_BYTES
from gateway.memory_release import RELEASE_AFTER_BYTES, release_freed_memory
from gateway.models import Direction
from gateway.queue import spool
from gateway.queue.intake import IntakeCommitter
from gateway.services import Services
from gateway.settings import ListenerSettings, Settings
from gateway.smtp import codes
from gateway.smtp.addresses import NULL_SENDER, is_valid_address
from gateway.smtp.content import content_problem
from gateway.smtp.protocol import format_peer, take_message
from gateway.smtp.recipients import RecipientCheck
from gateway.smtp.trace import received_header, with_protocol

log = logging.getLogger(__name__)

# Messages up to this size are sealed on the event loop (AES-GCM: tens of microseconds).
INLINE_SEAL_BYTES = 256 * 1024


class ListenerKind(StrEnum):
    INBOUND = "inbound"  # partners' MTAs deliver to us
    SUBMISSION = "submission"  # staff mail clients, SMTP AUTH over TLS

    @property
    def direction(self) -> Direction:
        return Direction.INBOUND if self is ListenerKind.INBOUND else Direction.OUTBOUND

    @property
    def actor(self) -> str:
        return f"smtp:{self.value}"

    def settings(self, settings: Settings) -> ListenerSettings:
        return settings.smtp.inbound if self is ListenerKind.INBOUND else settings.smtp.submission


class EdgeHandler:
    """One per listener, shared by its connections; per-connection state lives in aiosmtpd's
    Session and Envelope."""

    def __init__(self, services: Services, kind: ListenerKind,
                 committer: IntakeCommitter) -> None:
        self.services = services
        self.kind = kind
        # Shared by both listeners of the process: concurrent sessions share commits.
        self.committer = committer
        self.recipients = RecipientCheck(services, inbound=kind is ListenerKind.INBOUND)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        # With this hook present aiosmtpd leaves recording the name to us.
        session.host_name = hostname
        if self.kind is ListenerKind.INBOUND:
            # Partners never authenticate here; do not advertise an empty AUTH.
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if address == NULL_SENDER:
            # Bounces come with the null sender; staff submitting one is a misconfiguration.
            if self.kind is ListenerKind.SUBMISSION:
                return codes.NULL_SENDER_NOT_ALLOWED
        elif not is_valid_address(address):
            return codes.BAD_SENDER_SYNTAX
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return codes.SENDER_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        smtp = self.services.settings.smtp
        # Checked first: it costs nothing, and past the limit nothing else matters. Every
        # accepted RCPT counts, a repeated one too: otherwise one address sent ten thousand
        # times would get ten thousand 250s.
        if len(envelope.rcpt_tos) >= smtp.max_recipients:
            return codes.TOO_MANY_RECIPIENTS
        if address in envelope.rcpt_tos:
            # Accepted already: no second lookup. It is stored (and delivered) once.
            envelope.rcpt_tos.append(address)
            return codes.RECIPIENT_OK
        if not is_valid_address(address):
            return codes.BAD_RECIPIENT_SYNTAX
        try:
            acceptable = await self.recipients.acceptable(address)
        except SQLAlchemyError:
            log.exception("recipient lookup failed", extra=self._where(session))
            return codes.TEMPORARY_FAILURE
        if not acceptable:
            log.info("recipient rejected", extra={**self._where(session), "recipient": address})
            return codes.UNKNOWN_RECIPIENT
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return codes.RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = take_message(envelope)
        if data is None or envelope.mail_from is None:
            # aiosmtpd always sets both before calling us; if not, it is our bug.
            log.error("DATA without content or sender", extra=self._where(session))
            return codes.TEMPORARY_FAILURE
        problem = content_problem(data, self.services.settings.smtp.max_header_bytes)
        if problem is not None:
            log.warning("message refused", extra={
                **self._where(session), "reply": problem.split(" ", 2)[1],
                "size": len(data)})
            return problem
        now = self.services.clock()
        # In place: the receive buffer keeps room for the field behind the message
        # (gateway.smtp.data_reader.HEAD_ROOM), so the message moves within its allocation
        # instead of being copied beside itself.
        data[:0] = self._trace(session, now)
        to_store = spool.Envelope(
            direction=self.kind.direction,
            mail_from="" if envelope.mail_from == NULL_SENDER else envelope.mail_from,
            # A repeated RCPT is one recipient.
            rcpt_tos=list(dict.fromkeys(envelope.rcpt_tos)),
            # Handed over, not shared: nothing here or in the protocol writes to it again.
            data=data,
            peer=format_peer(session.peer),
            helo=session.host_name or "",
            auth_user=authenticated_user(session),
            tls=tls_description(session),
        )
        # From here on the message is to_store.data alone.
        del data
        try:
            # Sealing a message of some hundred KB is CPU work for a thread; a small one
            # costs less than the hop, and a large one (STREAM_SEAL_BYTES and up) is sealed
            # by the committer as it writes it (crypto.at_rest.SealedStream). The commit is
            # the committer's, and its future resolves only once the transaction holding
            # this message committed.
            size = len(to_store.data)
            if size <= INLINE_SEAL_BYTES or size >= STREAM_SEAL_BYTES:
                prepared = spool.prepare(self.services.master_key, to_store)
            else:
                prepared = await asyncio.to_thread(spool.prepare, self.services.master_key,
                                                   to_store)
            stored = await asyncio.wrap_future(
                self.committer.submit(prepared, actor=self.kind.actor, now=now))
            queue_id = stored.queue_id
        except Exception:
            # Database down, disk full, a bug: the sender keeps the message and retries.
            log.exception("storing a received message failed", extra=self._where(session))
            return codes.TEMPORARY_FAILURE
        log.info("message queued", extra={
            **self._where(session), "queue_id": queue_id, "mail_from": to_store.mail_from,
            "recipients": len(to_store.rcpt_tos), "size": size})
        if size >= RELEASE_AFTER_BYTES:
            del to_store, prepared
            # A walk over the heap: off the loop, like the sealing of such a message.
            await asyncio.to_thread(release_freed_memory)
        return codes.queued(queue_id)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default answer is a 500 with the exception text: wrong class of reply
        # (our fault is never permanent) and internal details go to the client.
        if isinstance(error, TLSSetupException):
            log.info("TLS handshake failed", extra={"listener": self.kind.value,
                                                    "error": repr(error.__cause__)})
        else:
            log.error("internal error in SMTP session", exc_info=error,
                      extra={"listener": self.kind.value})
        return codes.TEMPORARY_FAILURE

    def _trace(self, session: Session, now: datetime) -> bytes:
        peer = session.peer
        peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        protocol = with_protocol(extended=session.extended_smtp, tls=session.ssl is not None,
                                 authenticated=bool(session.authenticated))
        return received_header(helo=session.host_name or "", peer_ip=peer_ip,
                               hostname=self.services.settings.smtp.hostname,
                               protocol=protocol, now=now)

    def _where(self, session: Session) -> dict[str, str]:
        return {"listener": self.kind.value, "peer": format_peer(session.peer)}


def tls_description(session: Session) -> str:
    """The session's TLS for the audit trail: protocol and cipher, or "none"."""
    if session.ssl is None:
        return "none"
    # aiosmtpd keeps the TLS transport's extra info here after STARTTLS.
    info: dict[str, Any] = dict(session.ssl)
    ssl_object = info.get("ssl_object")
    cipher = info.get("cipher")
    version = ssl_object.version() if ssl_object is not None else None
    name = cipher[0] if isinstance(cipher, tuple) and cipher else None
    return " ".join(str(part) for part in (version, name) if part) or "TLS"


def authenticated_user(session: Session) -> str | None:
    """The staff user name of an authenticated session (see gateway.smtp.auth)."""
    if session.authenticated and isinstance(session.auth_data, str):
        return session.auth_data
    return None
