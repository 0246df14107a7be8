"""Large blobs into and out of SQLite without SQLite's copies.

A bound blob parameter is copied by SQLite twice (the parameter and the record), and a cached
statement keeps the parameter's copy until it runs again: a 50 MB message stayed resident in
the process that stored it. On SQLite a large blob is therefore inserted as zeros of its
length (``zeroblob``) and written in pieces through the blob handle. PostgreSQL (psycopg
sends the buffer as it is) and small blobs take the plain bound parameter.

Reading a large blob as a column value, SQLite assembles it from its overflow pages into a
buffer of its own, which the driver then copies into the bytes object: twice the blob. The
blob handle reads it straight into the bytes object instead.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, SealedStream, open_sealed_file

# From this size on a blob is streamed; below it the two copies cost less than the extra
# statement.
STREAMED_BLOB_BYTES = 1 << 20
_PIECE = 1 << 20


def sqlite_for_large(session: Session,
                     data: bytes | bytearray | memoryview | SealedStream) -> \
        sqlite3.Connection | None:
    """The session's SQLite connection if ``data`` is to be streamed into it, else None."""
    if len(data) < STREAMED_BLOB_BYTES:
        return None
    return sqlite_connection(session)


def sqlite_connection(session: Session) -> sqlite3.Connection | None:
    """The session's SQLite connection, or None on another database."""
    raw = session.connection().connection.dbapi_connection
    return raw if isinstance(raw, sqlite3.Connection) else None


def write_blob(raw: sqlite3.Connection, table: str, column: str, rowid: int,
               data: bytes | bytearray | memoryview | SealedStream) -> None:
    """Write ``data`` over the zeros of the same length in ``table.column`` of ``rowid``; a
    ``SealedStream`` is sealed while it is written, a chunk at a time."""
    with raw.blobopen(table, column, rowid) as blob:
        if isinstance(data, SealedStream):
            for chunk in data.chunks():
                blob.write(chunk)
                del chunk  # not held while the next one is encrypted
            return
        with memoryview(data) as view:
            for start in range(0, len(view), _PIECE):
                blob.write(view[start : start + _PIECE])


def open_sealed_blob(raw: sqlite3.Connection, table: str, column: str, rowid: int,
                     master: MasterKey, context: bytes) -> bytes:
    """The content sealed in ``table.column`` of ``rowid``, decrypted as it is read through
    the blob handle (never the whole ciphertext and the plaintext at once)."""
    with raw.blobopen(table, column, rowid, readonly=True) as blob:
        return open_sealed_file(master, blob, len(blob), context)
