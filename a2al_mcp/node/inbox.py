"""The persistent mailbox inbox: one SQLite database in the node's data directory.

A note counts as received only once its row is committed (WAL journal, one transaction per
note); the QUIC ``01`` acknowledgement is written after the commit, so a crash can lose no
acknowledged note, and a note that arrives twice (QUIC and DHT, or a replay) is stored once
(primary key: recipient, message id).

**Retention policy.** Reading a note with ``peek=False`` *marks* it read (``read_at``); it
stays in the inbox, and ``read(include_read=True)`` still returns it, until it is deleted
with :meth:`Inbox.delete` or until ``retention_s`` (default 30 days) after it was read, when
:meth:`Inbox.purge` removes it. Unread notes are never purged. Each local identity has its own
inbox (rows keyed by recipient).

Without a data directory the database lives in memory (nothing survives a restart).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..identity.aid import Aid

__all__ = ["Inbox", "Note"]

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
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Note:
    """A received, decrypted mailbox note."""

    msg_id: bytes
    """SHA-256 of the sealed payload (a2ald's message id)."""
    recipient: Aid
    sender: Aid
    """The verified sender (the record's signer, delegation checked)."""
    msg_type: int
    body: bytes
    sent_at: int
    """The sender's timestamp (Unix seconds)."""
    received_at: float
    via: str
    """``direct`` (QUIC), ``store`` (a STORE to us), ``push`` (DHT_PUSH) or ``poll``."""
    read_at: float | None = None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Inbox:
    """Notes per local identity, in SQLite."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        target = ":memory:" if path is None else str(path)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            self._db.executescript(SCHEMA)
        if path is not None:
            path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, note: Note) -> bool:
        """Store a note in its own committed transaction; False if it was already there."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO inbox (recipient, msg_id, sender, msg_type, body, sent_at,"
                " received_at, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(note.recipient),
                    note.msg_id,
                    str(note.sender),
                    note.msg_type,
                    note.body,
                    note.sent_at,
                    note.received_at,
                    note.via,
                ),
            )
            return cur.rowcount == 1

    def has(self, recipient: Aid, msg_id: bytes) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM inbox WHERE recipient = ? AND msg_id = ?", (str(recipient), msg_id)
            ).fetchone()
        return row is not None

    def read(
        self,
        recipient: Aid,
        *,
        peek: bool = False,
        limit: int = 50,
        sender: Aid | None = None,
        include_read: bool = False,
        now: float,
    ) -> list[Note]:
        """Notes for ``recipient``, oldest first: unread ones (and read ones with
        ``include_read``); unless ``peek``, the returned unread notes are marked read."""
        sql = "SELECT * FROM inbox WHERE recipient = ?"
        args: list[object] = [str(recipient)]
        if not include_read:
            sql += " AND read_at IS NULL"
        if sender is not None:
            sql += " AND sender = ?"
            args.append(str(sender))
        sql += " ORDER BY received_at, msg_id LIMIT ?"
        args.append(max(0, limit))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(sql, args).fetchall()
                if not peek:
                    self._db.executemany(
                        "UPDATE inbox SET read_at = ? WHERE recipient = ? AND msg_id = ?"
                        " AND read_at IS NULL",
                        [(now, r[0], r[1]) for r in rows],
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [_note(r) for r in rows]

    def delete(self, recipient: Aid, msg_ids: Sequence[bytes]) -> int:
        """Remove notes; returns how many were there."""
        with self._lock:
            cur = self._db.executemany(
                "DELETE FROM inbox WHERE recipient = ? AND msg_id = ?",
                [(str(recipient), m) for m in msg_ids],
            )
            return cur.rowcount

    def purge(self, now: float, retention_s: float) -> int:
        """Remove notes read more than ``retention_s`` ago."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM inbox WHERE read_at IS NOT NULL AND read_at < ?", (now - retention_s,)
            )
            return cur.rowcount

    def count(self, recipient: Aid, *, unread_only: bool = True) -> int:
        sql = "SELECT COUNT(*) FROM inbox WHERE recipient = ?"
        if unread_only:
            sql += " AND read_at IS NULL"
        with self._lock:
            (n,) = self._db.execute(sql, (str(recipient),)).fetchone()
        return int(n)


def _note(row: Any) -> Note:
    recipient, msg_id, sender, msg_type, body, sent_at, received_at, via, read_at = row
    return Note(
        msg_id=bytes(msg_id),
        recipient=Aid.from_str(recipient),
        sender=Aid.from_str(sender),
        msg_type=int(msg_type),
        body=bytes(body),
        sent_at=int(sent_at),
        received_at=float(received_at),
        via=str(via),
        read_at=None if read_at is None else float(read_at),
    )
