"""The last active admin stays (gateway.staff.actions), also when two admins disable each
other at the same moment: the second change waits for the first (row locks on PostgreSQL,
the write lock on SQLite) and then sees that it would leave nobody. Real SQLite and
PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.db import read_scope, session_scope
from gateway.services import Services
from gateway.staff import actions
from gateway.staff import users as staff

PASSWORD = "ein sehr langes passwort"
pytestmark = pytest.mark.usefixtures("cheap_hashing")


def test_two_admins_disabling_each_other_at_once_leave_one(services: Services) -> None:
    with session_scope(services.sessions) as session:
        staff.add_user(session, "alice", PASSWORD, admin=True)
        staff.add_user(session, "bob", PASSWORD, admin=True)
    outcome: list[BaseException | None] = []

    def bob_disables_alice() -> None:
        try:
            with session_scope(services.sessions) as session:
                actions.set_disabled(session, "alice", True, actor="bob")
            outcome.append(None)
        except BaseException as exc:  # handed over to the test's thread
            outcome.append(exc)

    first = services.sessions()
    try:
        first.begin()
        assert actions.set_disabled(first, "bob", True, actor="alice")
        second = threading.Thread(target=bob_disables_alice)
        second.start()
        time.sleep(0.5)
        assert second.is_alive(), "the second change did not wait for the first"
        first.commit()
    finally:
        first.close()
    second.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], staff.LastAdmin), outcome
    with read_scope(services.sessions) as session:
        states = {name: found.disabled for name in ("alice", "bob")
                  if (found := staff.find_user(session, name)) is not None}
    assert states == {"alice": False, "bob": True}
