"""The inbox's SQLite database: its schema and how it is opened, for writing or read-only.

:class:`~a2al_mcp.node.inbox.Inbox` decides when to open, reopen and fall back; this module
only knows the file: WAL journal and ``synchronous=NORMAL`` (durable across process crashes)
for writing, and for reading on a full disk the read-only fallbacks described at
:func:`open_read_only`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .._lazy import lazy_module

if TYPE_CHECKING:
    import sqlite3
else:  # loaded with the first database opened
    sqlite3 = lazy_module("sqlite3")

__all__ = ["SCHEMA", "open_read_only", "open_sqlite", "open_writable"]

logger = logging.getLogger("a2al_mcp.node.inbox")  # the inbox's log, as before the split

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS inbox (
    recipient   TEXT    NOT NULL,
    msg_id      BLOB    NOT NULL,
    sender      TEXT    NOT NULL,
    msg_type    INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    sent_at     INTEGER NOT NULL,
    received_at REAL    NOT NULL,
    via         TEXT    NOT NULL,
    read_at     REAL,
    PRIMARY KEY (recipient, msg_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_by_time ON inbox (recipient, received_at);
CREATE INDEX IF NOT EXISTS inbox_by_sender ON inbox (sender);
"""


def open_sqlite(path: Path | None, schema: str) -> sqlite3.Connection:
    """A database at ``path`` (in memory for None) for writing, as the node's stores keep
    theirs (the inbox, the outbox): the file 0600 from its creation, WAL journal and
    ``synchronous=NORMAL`` (durable across process crashes), ``schema`` applied.

    Raises:
        sqlite3.Error, OSError: it cannot be created, opened or written (e.g. a full disk:
            SQLite cannot create its ``-shm``/``-wal`` files).
    """
    if path is not None and not path.exists():
        with contextlib.suppress(FileExistsError):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            os.close(os.open(path, flags, 0o600))
    db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None,
                         check_same_thread=False)  # fmt: skip
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    if path is not None:
        with contextlib.suppress(OSError):
            path.chmod(0o600)
    return db


def open_writable(path: Path | None) -> sqlite3.Connection:
    """The inbox's database at ``path`` (in memory for None), created if need be, for
    writing (:func:`open_sqlite`), its table read once.

    Raises:
        sqlite3.Error, OSError: it cannot be opened or written (e.g. a full disk: SQLite cannot
            create its ``-shm``/``-wal`` files).
    """
    db = open_sqlite(path, SCHEMA)
    try:
        db.execute("SELECT COUNT(*) FROM inbox").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def open_read_only(path: Path) -> sqlite3.Connection:
    """The database for reading only. On a full disk SQLite may be unable to create the
    ``-shm`` file even for reading; then, if no ``-wal`` file holds commits, the database
    file alone is read (``immutable``). Failing both, an empty in-memory view (the notes
    are not lost: they reappear once the database can be opened again)."""
    uri = path.resolve().as_uri()
    wal = path.with_name(path.name + "-wal")
    options = ["?mode=ro"]
    with contextlib.suppress(OSError):
        if not wal.exists() or wal.stat().st_size == 0:
            options.append("?mode=ro&immutable=1")
    for opt in options:
        db = sqlite3.connect(uri + opt, uri=True, isolation_level=None,
                             check_same_thread=False)  # fmt: skip
        try:
            db.execute("SELECT COUNT(*) FROM inbox").fetchone()
        except sqlite3.Error as exc:
            db.close()
            logger.info("inbox.read_only_open_failed mode=%s reason=%s", opt, exc)
            continue
        return db
    logger.error("inbox.unreadable path=%s: showing an empty inbox until it can be opened",
                 path)  # fmt: skip
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.executescript(SCHEMA)
    return db
