"""Migration 0024 (staff_users.last_login_at) rebuilds ``staff_users`` on SQLite; everything
that refers to a staff user (their sessions, second factor, roles, tokens, addresses, mailbox
memberships, all ON DELETE CASCADE) is still there after the upgrade and after the way back,
and nobody has logged in yet."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from gateway.db import make_engine
from gateway.migrate import downgrade, upgrade
from tests.conftest import make_settings
from tests.test_migrations_keep_data import _counts, _fill

REFERRING = ("web_sessions", "staff_second_factors", "staff_roles", "staff_api_tokens",
             "staff_addresses", "mailbox_members")


def test_staff_users_keep_everything_that_refers_to_them_through_0024(tmp_path: Path) -> None:
    engine: Engine = make_engine(make_settings(tmp_path / "var", f"sqlite:///{tmp_path}/x.db"))
    try:
        upgrade(engine, "0023")
        with engine.begin() as c:
            _fill(c, "staff_users", id=1, username="chef")
            _fill(c, "mailboxes", id=1)
            for table in REFERRING:
                _fill(c, table, **({"mailbox_id": 1} if table == "mailbox_members" else {}),
                      user_id=1)
        kept = dict.fromkeys(("staff_users", *REFERRING), 1)
        upgrade(engine, "0024")
        assert _counts(engine, "staff_users", *REFERRING) == kept
        with engine.connect() as c:
            assert c.execute(text("SELECT last_login_at FROM staff_users")).scalar_one() is None
        downgrade(engine, "0023")
        assert _counts(engine, "staff_users", *REFERRING) == kept
    finally:
        engine.dispose()
