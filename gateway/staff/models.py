"""The staff web app's tables: login sessions, the second factor and its recovery codes,
global roles, API tokens and the login throttle's failure counts.

Secrets are never stored as they are: session and API tokens as their SHA-256 (they are
256-bit random values, so a fast hash is enough), recovery codes with argon2 (short enough to
guess offline), the TOTP secret sealed under the master key (it must be read back to check a
code).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class WebSession(Base):
    """A browser's login, from the password onwards. ``second_factor`` turns true when the
    TOTP or recovery code was given; until then the session reaches only the 2FA pages."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"),
                                         index=True)
    # The synchronizer token of every form and API call made with this session.
    csrf_token: Mapped[str] = mapped_column(String(64))
    second_factor: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SecondFactor(Base):
    """A staff user's TOTP secret. ``confirmed_at`` is None while enrolment waits for the
    first code; ``last_step`` is the time step of the last accepted code (no replay)."""

    __tablename__ = "staff_second_factors"

    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"),
                                         primary_key=True)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RecoveryCode(Base):
    """One single-use recovery code (argon2 hash); ``used_at`` set when it was spent."""

    __tablename__ = "staff_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"),
                                         index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class StaffRole(Base):
    """A global role beside ``staff_users.admin``: auditor or data-protection officer.
    Mailbox roles (lead, agent) belong to the mailbox memberships."""

    __tablename__ = "staff_roles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))

    __table_args__ = (UniqueConstraint("user_id", "role"),)


class ApiToken(Base):
    """A staff user's token for the JSON API (``Authorization: Bearer``)."""

    __tablename__ = "staff_api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"),
                                         index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LoginFailure(Base):
    """Failed logins counted per user name and per client address (``kind``), keyed by the
    SHA-256 of the value: the table then holds no names an attacker typed."""

    __tablename__ = "login_failures"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
