"""The one typed object that flows through the stages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message

from crypto.at_rest import Sealed
from crypto.canonical import encode_binary_bodies
from gateway.consent.classify import ConsentRequest
from gateway.delivery.recipients import MessageRef
from gateway.delivery.routes import LocalRoute, Route
from gateway.mime.entity import split_entity
from gateway.mime.headers import prepend_headers
from gateway.mime.parsed import parse_header_block
from gateway.models import Direction
from gateway.pipeline.crypto_state import InboundCrypto, OutboundCrypto
from scanning.parts import RawStructure

_BINARY_CTE = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*binary")


@dataclass(frozen=True)
class Filing:
    """A copy sealed for a shared mailbox, filed when the worker records the outcome."""

    recipient: str
    route: LocalRoute
    sealed: Sealed
    size: int


@dataclass
class MessageContext:
    message_id: int
    queue_id: str
    direction: Direction
    mail_from: str
    received_at: datetime
    attempt: int
    # The message as received. Plaintext lives only in memory.
    raw: bytes
    # Recipients not yet delivered or failed; stages never see finished ones again.
    pending: list[str]
    auth_user: str | None = None
    # Who acts on the message, for the audit trail (the worker's id).
    worker: str = "worker"
    parsed: EmailMessage | None = None
    # The bytes the parse stage checked but left unparsed (a single top-level part): the
    # reparse stage parses them in full, once, if no stage opened them meanwhile.
    unparsed_body: bytes | None = field(default=None, repr=False)
    # What will be delivered; stages that transform the message replace it.
    content: bytes | None = None
    # X-Xgate-* headers added at delivery, after any such header from outside was removed.
    result_headers: dict[str, str] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    # Mailbox copies to file in the same transaction that records the message's outcome.
    filings: list[Filing] = field(default_factory=list)
    # Facts stages establish, recorded on the message and on the audit entry of the outcome.
    facts: dict[str, str] = field(default_factory=dict)
    # A recipient's own form of the message (encrypted for it); others get ``body``.
    outgoing: dict[str, bytes] = field(default_factory=dict)
    inbound_crypto: InboundCrypto = field(default_factory=InboundCrypto)
    # Outbound: the consent the sender's X-Xgate-* fields ask for (taken before stripping).
    consent_request: ConsentRequest = field(default_factory=ConsentRequest)
    # Outbound: header fields that travel *inside* the signature and encryption (the case
    # and release of a handover), never on the outer, readable envelope.
    protected_headers: dict[str, str] = field(default_factory=dict)
    # Outbound: the releases (id, version) the consent gate relied on; checked again just
    # before the message leaves.
    consent_used: tuple[tuple[int, int], ...] = ()
    # Outbound: the case the report is for (normalised), once the consent gate found it;
    # recorded on the message, so a change to that case's releases finds its reports.
    case_reference: str | None = None
    outbound_crypto: OutboundCrypto = field(default_factory=OutboundCrypto)

    @property
    def ref(self) -> MessageRef:
        return MessageRef(self.message_id, self.queue_id, self.mail_from, self.received_at)

    @property
    def body(self) -> bytes:
        return self.content if self.content is not None else self.raw

    def protected_entity(self) -> tuple[list[bytes], bytes]:
        """Outer header fields and the MIME entity to sign or encrypt, carrying the
        ``protected_headers`` inside it (RFC 7508-style protected header fields)."""
        outer, entity = split_entity(self.body)
        if self.protected_headers:
            entity = prepend_headers(entity, self.protected_headers)
        if _BINARY_CTE.search(entity) is not None:
            # Signing and encrypting canonicalise line endings (RFC 8551 3.1.1): a body in
            # Content-Transfer-Encoding binary would be altered, and the partner's relay
            # may not speak BINARYMIME either. Base64 survives both.
            entity = encode_binary_bodies(entity)
        return outer, entity

    def headers(self) -> Message:
        """The top-level header fields of ``body``: the full parse if a stage made one,
        else the header block alone (cheap, where a stage only needs to look at headers)."""
        if self.parsed is not None:
            return self.parsed
        body = self.body
        cached = self._headers
        if cached is not None and cached[0] is body:
            return cached[1]
        # Only the header block: the parser would otherwise read every line of the body.
        headers = parse_header_block(body)
        self._headers = (body, headers)
        return headers

    def structure(self, check: Callable[[bytes], RawStructure]) -> RawStructure:
        """``check`` (the raw MIME structure check) on ``body``, run once per distinct byte
        string: the parse, reparse and scan stages ask about the same bytes when decryption
        left the message as it was."""
        body = self.body
        cached = self._structure
        if cached is not None and cached[0] is body:
            return cached[1]
        structure = check(body)
        self._structure = (body, structure)
        return structure

    def let_go_of_the_tree(self) -> None:
        """Drop the parse: later header reads parse the header block alone (``headers``)."""
        self.parsed = None

    def known_structure(self) -> RawStructure | None:
        """What the last ``structure`` call found, if it was about the current ``body``."""
        cached = self._structure
        return cached[1] if cached is not None and cached[0] is self.body else None

    # Keyed by the identity of the bytes looked at, and holding them: a later ``content``
    # is another object, so an answer about other bytes is never handed out.
    _headers: tuple[bytes, Message] | None = field(default=None, repr=False)
    _structure: tuple[bytes, RawStructure] | None = field(default=None, repr=False)
    # gateway.pipeline.stages.sender: the author's address, per raw From fields it was read
    # from.
    sender_cache: tuple[tuple[str, ...], str] | None = field(default=None, repr=False)
