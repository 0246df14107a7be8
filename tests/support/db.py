"""The database of a gateway under test (the CLI's, the web app's) through an engine of the
test's own, disposed after each use: the code under test keeps its own engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from crypto.at_rest import MasterKey
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.models import HoldKind, Message, MessageState
from gateway.queue.spool import Envelope, store_received
from gateway.settings import Settings


@contextmanager
def opened(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on ``settings``' database while in the block."""
    engine = make_engine(settings)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def message_state(settings: Settings, queue_id: str) -> MessageState:
    with opened(settings) as sessions, read_scope(sessions) as s:
        return s.scalars(select(Message.state).where(Message.queue_id == queue_id)).one()


def store_held(settings: Settings, envelope: Envelope, *, kind: HoldKind, reason: str,
               now: datetime, facts: dict[str, Any] | None = None,
               case_reference: str | None = None) -> str:
    """A message as a stage that holds it leaves it: received, then held for ``kind`` with
    ``reason`` (and ``facts`` and the case, when given); its queue id."""
    key = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    with opened(settings) as sessions, session_scope(sessions) as s:
        stored = store_received(s, key, envelope, actor="test", now=now)
        values: dict[str, Any] = {"state": MessageState.HELD, "reason": reason,
                                  "hold_kind": kind, "case_reference": case_reference}
        if facts is not None:
            values["facts"] = json.dumps(facts)
        s.execute(update(Message).where(Message.id == stored.id).values(**values))
        return stored.queue_id
