"""Tables of the key and certificate directory: partners, their keys, and the office's own.

Partner keys carry their provenance (who imported them, which verified message they were
harvested from, which URL they were looked up at, and when) and a status: only *approved*
keys ever receive encrypted mail.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base
from gateway.models import UTCDateTime
from gateway.settings import OutboundPolicy


class KeyKind(StrEnum):
    SMIME = "smime"
    OPENPGP = "openpgp"


class KeyStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"


class KeySource(StrEnum):
    IMPORT = "import"
    HARVEST = "harvest"
    WKD = "wkd"
    API = "api"


class InvalidSignature(StrEnum):
    """What happens to a partner's mail whose signature is present but fails."""

    # Kept for an admin: a failing signature means tampering or a broken certificate.
    QUARANTINE = "quarantine"
    # Delivered, with a subject prefix and a text part at the top that say why.
    WARN = "warn"


def _enum(cls: type[StrEnum], name: str) -> Enum:
    # Plain strings as in gateway.models: a new value needs no ALTER TYPE on PostgreSQL.
    return Enum(cls, name=name, native_enum=False, length=16,
                values_callable=lambda e: [m.value for m in e])


class Partner(Base):
    """An organisation the office exchanges mail with, and what it demands of that mail."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    outbound_policy: Mapped[OutboundPolicy] = mapped_column(
        _enum(OutboundPolicy, "outbound_policy"), default=OutboundPolicy.EITHER)
    # AES-256-GCM (AuthEnvelopedData) only where the partner said its clients read it;
    # otherwise AES-256-CBC, which every S/MIME client understands.
    smime_gcm: Mapped[bool] = mapped_column(Boolean, default=False)
    # Inline PGP (an armored text/plain body) for partners whose clients cannot read
    # PGP/MIME; used only for single-part text messages, PGP/MIME otherwise.
    openpgp_inline: Mapped[bool] = mapped_column(Boolean, default=False)
    inbound_require_encryption: Mapped[bool] = mapped_column(Boolean, default=False)
    inbound_require_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    inbound_invalid_signature: Mapped[InvalidSignature] = mapped_column(
        _enum(InvalidSignature, "invalid_signature"), default=InvalidSignature.QUARANTINE)
    # The only partners that may be sent plaintext (gateway.keydir.partners enforces it).
    non_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(255))

    patterns: Mapped[list[PartnerAddress]] = relationship(
        back_populates="partner", cascade="all, delete-orphan",
        order_by="PartnerAddress.pattern")


class PartnerAddress(Base):
    """A whole domain ("jugendamt-b.example") or one address ("beratung@stelle.example")."""

    __tablename__ = "partner_addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    # Lower case; unique, so one address never belongs to two partners.
    pattern: Mapped[str] = mapped_column(String(320), unique=True)

    partner: Mapped[Partner] = relationship(back_populates="patterns")


class PartnerKey(Base):
    """A partner's S/MIME certificate or OpenPGP public key, with its provenance."""

    __tablename__ = "partner_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # NULL for a key harvested from a sender no partner record names (yet); a removed
    # partner leaves its keys behind for the record.
    partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("partners.id", ondelete="SET NULL"), nullable=True, index=True)
    kind: Mapped[KeyKind] = mapped_column(_enum(KeyKind, "key_kind"))
    # S/MIME: SHA-256 of the certificate DER, lower-case hex. OpenPGP: the primary key's
    # fingerprint, upper-case hex.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The DER certificate, or the ASCII-armored public key.
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # For display: the certificate's subject, or the key's user ids (one per line).
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str | None] = mapped_column(Text, nullable=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    # Whether mail can be encrypted to it at all (an S/MIME certificate's key usage, an
    # OpenPGP key's encryption subkey); a signing-only key still proves signatures.
    can_encrypt: Mapped[bool] = mapped_column(Boolean)
    # Accepted, but worth an admin's attention (e.g. RSA 2048, below TR-02102's 3000 bits).
    warning: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A certificate's notBefore, an OpenPGP key's creation time.
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    # NULL: an OpenPGP key without expiry.
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[KeyStatus] = mapped_column(_enum(KeyStatus, "key_status"))
    source: Mapped[KeySource] = mapped_column(_enum(KeySource, "key_source"))
    # The file name, the queue id of the verified message, or the URL looked up.
    source_detail: Mapped[str] = mapped_column(Text, default="")
    added_by: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    partner: Mapped[Partner | None] = relationship()
    addresses: Mapped[list[PartnerKeyAddress]] = relationship(
        back_populates="key", cascade="all, delete-orphan", order_by="PartnerKeyAddress.address")

    __table_args__ = (
        UniqueConstraint("kind", "fingerprint"),
        Index("ix_partner_keys_status", "status"),
    )

    @property
    def address_list(self) -> list[str]:
        return [a.address for a in self.addresses]


class PartnerKeyAddress(Base):
    """An e-mail address a partner key names (lower case): what recipients are matched on."""

    __tablename__ = "partner_key_addresses"

    key_id: Mapped[int] = mapped_column(
        ForeignKey("partner_keys.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True, index=True)

    key: Mapped[PartnerKey] = relationship(back_populates="addresses")


class OwnKey(Base):
    """One of the office's own keys for an address (several per address for rollover)."""

    __tablename__ = "own_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # A mailbox, function or staff address, or "@domain" for an office-wide key.
    address: Mapped[str] = mapped_column(String(320), index=True)
    kind: Mapped[KeyKind] = mapped_column(_enum(KeyKind, "key_kind"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The DER certificate, or the ASCII-armored public key.
    public: Mapped[bytes] = mapped_column(LargeBinary)
    # S/MIME: the intermediate CA certificates imported with it that lead from it towards
    # its root (PEM, issuer first; the root itself left out): partners need them to build
    # the chain, in the export and in our signatures. NULL for OpenPGP and for a
    # certificate imported without them.
    chain: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The private key (PKCS#8 DER, or an armored unprotected OpenPGP secret key), sealed
    # with the master key and bound to this row's address, kind and fingerprint.
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    algorithm: Mapped[str] = mapped_column(String(32))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # An S/MIME certificate may be for encryption only (German PKIs often issue a pair);
    # only a key that can sign is picked for signing.
    can_sign: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(255))
    # Retired keys neither sign nor decrypt any more.
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retired_by: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (UniqueConstraint("address", "kind", "fingerprint"),)
