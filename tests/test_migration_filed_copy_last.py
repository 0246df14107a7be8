"""Migration 0026 rebuilds mailbox_messages on SQLite with the sealed copy last (so a large
copy's zeroblob is not built in memory), keeping every row and what refers to it; down again
restores the earlier order."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from gateway.db import make_engine
from gateway.migrate import downgrade, upgrade
from gateway.settings import Settings

SEALED = b"\x00sealed copy\xff" * 100


def _engine(tmp_path: Path) -> Engine:
    settings = Settings.model_validate({"database": {"url": f"sqlite:///{tmp_path / 'm.db'}"}})
    return make_engine(settings)


def _columns(engine: Engine) -> list[str]:
    with engine.connect() as c:
        return [row[1] for row in c.exec_driver_sql("PRAGMA table_info(mailbox_messages)")]


def test_the_sealed_copy_becomes_the_last_column_and_rows_stay(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    upgrade(engine, "0025")
    assert _columns(engine)[-3:] == ["sealed", "seal_message_id", "queue_id"]
    with engine.begin() as c:
        c.execute(text("INSERT INTO mailboxes (id, address, name, sensitive, created_at, "
                       "receipt_enabled) VALUES (1, 'a@x.example', 'A', 0, '2026-12-05', 1)"))
        c.execute(text("INSERT INTO mailbox_messages (id, mailbox_id, message_id, mail_from, "
                       "size, delivered_at, seen, sealed, seal_message_id, queue_id) VALUES "
                       "(7, 1, NULL, 'p@y.example', 3, '2026-12-05', 0, :s, 42, 'Q1')"),
                  {"s": SEALED})
        c.execute(text("INSERT INTO tickets (id, mailbox_id, number, state, requester, "
                       "subject_sealed, created_at, updated_at) VALUES (3, 1, 'T-1', 'new', "
                       "'p@y.example', x'00', '2026-12-05', '2026-12-05')"))
        c.execute(text("INSERT INTO ticket_articles (ticket_id, kind, created_at, author, "
                       "stored_message_id) VALUES (3, 'mail', '2026-12-05', 'p', 7)"))
    upgrade(engine)
    assert _columns(engine)[-1] == "sealed"
    with engine.connect() as c:
        row = c.execute(text("SELECT id, mailbox_id, mail_from, sealed, seal_message_id, "
                             "queue_id FROM mailbox_messages")).one()
        assert tuple(row) == (7, 1, "p@y.example", SEALED, 42, "Q1")
        assert c.execute(text("SELECT stored_message_id FROM ticket_articles")).scalar() == 7
        assert c.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    downgrade(engine, "0025")
    assert _columns(engine)[-3:] == ["sealed", "seal_message_id", "queue_id"]
    with engine.connect() as c:
        assert c.execute(text("SELECT sealed FROM mailbox_messages WHERE id = 7")).scalar() \
            == SEALED
    engine.dispose()
