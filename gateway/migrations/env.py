"""Alembic environment. The engine comes from our settings, never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import gateway.consent.models  # registers the consent gate's tables on the metadata
import gateway.keydir.models  # registers the key directory's tables on the metadata
import gateway.models
import gateway.portal.models  # registers the portal upload's tables on the metadata
import gateway.portal.pickup.models  # registers pickup's tables on the metadata
import gateway.quarantine.models  # registers the quarantine's tables on the metadata
import gateway.staff.models  # registers the staff web app's tables on the metadata
import gateway.tasks.models  # registers the background tasks' table on the metadata
import mailboxes.models  # noqa: F401 - registers the mailbox tables on the metadata
from gateway.db import Base

_ = gateway.models
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode to alter tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through gateway.migrate, which passes a connection")
run_migrations(connection)
