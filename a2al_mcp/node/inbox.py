"""The persistent mailbox inbox: one SQLite database in the node's data directory.

A note counts as received only once its row is committed (WAL journal, one transaction per
note); the QUIC ``01`` acknowledgement is written after the commit, so a crash can lose no
acknowledged note, and a note that arrives twice (QUIC and DHT, or a replay) is stored once
(primary key: recipient, message id) and acknowledged again, even when the inbox is full.

**Quotas** (``[limits]``, see docs/security.md). A new note is refused — not stored, not
acknowledged — when storing it would put its sender over ``mailbox_notes_per_sender`` or
``mailbox_bytes_per_sender``, or the whole inbox (every local identity) over
``mailbox_notes_total`` or ``mailbox_bytes_total``; note bytes are body bytes. Read and
unread notes both count. :meth:`Inbox.add` says which quota refused it.

**Disk.** A note is refused while the data directory's file system has less than
``mailbox_min_free_disk_bytes`` free, and when the insert fails (SQLite ``database or disk
is full`` or an I/O error): the failure is a refusal, never an exception, so a full disk
stops nothing and loses nothing acknowledged. When the database cannot be opened for writing
(a full disk at start-up: SQLite cannot create its ``-shm``/``-wal`` files) the inbox opens
**read-only** — notes can be read, new notes are refused — and tries again to open it for
writing on a later insert (at most every ``WRITE_RETRY_S``), so it becomes writable again
without a restart once space returns.

**Retention.** Reading a note with ``peek=False`` *marks* it read (``read_at``); it stays in
the inbox, and ``read(include_read=True)`` still returns it, until it is deleted with
:meth:`Inbox.delete` or until ``retention_s`` (``mailbox.retention_s``, default 30 days)
after it was read. Unread notes are purged ``mailbox_unread_retention_s`` (default 90 days)
after they arrived. :meth:`Inbox.purge` removes both. Each local identity has its own inbox
(rows keyed by recipient). A read-only inbox cannot mark notes read: they are returned and
stay unread.

Without a data directory the database lives in memory (nothing survives a restart). The
schema and the ways of opening the file are :mod:`~a2al_mcp.node.inbox_db`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .._clock import Clock, SystemClock
from .._dataclass import dataclass
from .._lazy import lazy_module
from ..config import LimitsConfig
from ..errors import LimitExceeded
from ..identity.aid import Aid
from .inbox_db import SCHEMA as SCHEMA  # re-exported: it lived here
from .inbox_db import open_read_only, open_writable

if TYPE_CHECKING:
    import sqlite3
else:  # loaded with the first database opened
    sqlite3 = lazy_module("sqlite3")

__all__ = ["AddResult", "Inbox", "InboxUsage", "Note"]

logger = logging.getLogger(__name__)

WRITE_RETRY_S: Final = 1.0
"""After a failed write, or while read-only, inserts are refused without touching the disk
for this long; then the next insert tries again (reopening the database for writing)."""


@dataclass(frozen=True, slots=True)
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


class AddResult(enum.Enum):
    """What :meth:`Inbox.add` did with a note."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    """Already in the inbox (acknowledge it again)."""
    SENDER_NOTES = "sender_notes"
    """Refused: the sender has ``mailbox_notes_per_sender`` notes stored."""
    SENDER_BYTES = "sender_bytes"
    """Refused: it would put the sender over ``mailbox_bytes_per_sender``."""
    TOTAL_NOTES = "total_notes"
    """Refused: the inbox holds ``mailbox_notes_total`` notes."""
    TOTAL_BYTES = "total_bytes"
    """Refused: it would put the inbox over ``mailbox_bytes_total``."""
    DISK_LOW = "disk_low"
    """Refused: less than ``mailbox_min_free_disk_bytes`` free on the data directory's disk."""
    DISK_FULL = "disk_full"
    """Refused: the write failed (disk full, I/O error) or the inbox is read-only."""

    @property
    def accepted(self) -> bool:
        """The note is in the inbox: the condition for acknowledging it."""
        return self in (AddResult.STORED, AddResult.DUPLICATE)

    @property
    def quota(self) -> bool:
        """Refused by a per-sender or total quota (not by the disk)."""
        return self in _QUOTAS


_QUOTAS: Final = frozenset(
    {AddResult.SENDER_NOTES, AddResult.SENDER_BYTES, AddResult.TOTAL_NOTES, AddResult.TOTAL_BYTES}
)


@dataclass(frozen=True, slots=True)
class InboxUsage:
    """What the inbox holds and how its storage fares."""

    notes: int
    bytes: int
    """Body bytes of the stored notes."""
    senders: int
    read_only: bool
    """The database could not be written (or opened for writing); new notes are refused."""
    storage_errors: int
    """Failed database operations on notes (insert, mark read, delete, purge) and failed
    opens for writing."""
    freed: int
    """Incremented whenever notes are removed (delete or purge): quotas may have room again."""


class Inbox:
    """Notes per local identity, in SQLite, within the quotas of ``limits``."""

    def __init__(
        self,
        path: Path | None,
        limits: LimitsConfig | None = None,
        *,
        clock: Clock | None = None,
        unread_retention_s: float | None = None,
    ) -> None:
        self.path = path
        self.limits = limits or LimitsConfig()
        self.unread_retention_s = (
            self.limits.mailbox_unread_retention_s
            if unread_retention_s is None
            else unread_retention_s
        )
        self._monotonic = (clock or SystemClock()).monotonic
        self._lock = threading.Lock()
        self._writable = False
        self._blocked_until = 0.0
        self._storage_errors = 0
        self._freed = 0
        self._notes = 0
        self._bytes = 0
        self._per_sender: dict[str, list[int]] = {}
        self._db: sqlite3.Connection | None = None
        if path is None:  # in memory: empty until the first note, opened with first use
            self._writable = True
            return
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        with self._lock:
            self._recount()

    # -- opening --------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Open for writing if possible, else read-only (sets ``_writable``)."""
        try:
            db = self._open_writable()
        except (sqlite3.Error, OSError) as exc:
            self._storage_errors += 1
            self._blocked_until = self._monotonic() + WRITE_RETRY_S
            logger.warning("inbox.read_only path=%s reason=%s", self.path, exc)
            self._writable = False
            return self._open_read_only()
        self._writable = True
        return db

    def _conn(self) -> sqlite3.Connection:
        """The database, opened now if it is the in-memory one not used yet (a node without
        a data directory that never receives a note never builds it: ~0.5 MiB)."""
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open_writable(self) -> sqlite3.Connection:
        return open_writable(self.path)

    def _open_read_only(self) -> sqlite3.Connection:
        assert self.path is not None
        return open_read_only(self.path)

    def _reopen_writable(self) -> bool:
        """Called with the lock held while read-only: try to open for writing (rate-limited)."""
        now = self._monotonic()
        if now < self._blocked_until:
            return False
        self._blocked_until = now + WRITE_RETRY_S
        try:
            db = self._open_writable()
        except (sqlite3.Error, OSError) as exc:
            self._storage_errors += 1
            logger.info("inbox.still_read_only reason=%s", exc)
            return False
        with contextlib.suppress(sqlite3.Error):
            self._conn().close()
        self._db, self._writable, self._blocked_until = db, True, 0.0
        self._recount()
        logger.warning("inbox.writable_again path=%s", self.path)
        return True

    def _write_failed(self, exc: sqlite3.Error, what: str) -> None:
        """Called with the lock held after a failed write."""
        self._storage_errors += 1
        self._blocked_until = self._monotonic() + WRITE_RETRY_S
        with contextlib.suppress(sqlite3.Error):
            db = self._conn()
            if db.in_transaction:
                db.execute("ROLLBACK")
        logger.warning("inbox.write_failed op=%s reason=%s", what, exc)
        if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL and self.path is not None:
            # an I/O error may leave the connection unusable: start again, read-only if need be
            with contextlib.suppress(sqlite3.Error):
                self._conn().close()
            self._db = self._open()
            self._recount()

    def _recount(self) -> None:
        try:
            rows = (
                self._conn()
                .execute("SELECT sender, COUNT(*), SUM(LENGTH(body)) FROM inbox GROUP BY sender")
                .fetchall()
            )
        except sqlite3.Error as exc:
            logger.warning("inbox.count_failed reason=%s", exc)
            return
        self._per_sender = {str(s): [int(n), int(b or 0)] for s, n, b in rows}
        self._notes = sum(v[0] for v in self._per_sender.values())
        self._bytes = sum(v[1] for v in self._per_sender.values())

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            if self._db is not None:
                self._db.close()

    # -- state ----------------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return not self._writable

    def usage(self) -> InboxUsage:
        return InboxUsage(notes=self._notes, bytes=self._bytes, senders=len(self._per_sender),
                          read_only=not self._writable, storage_errors=self._storage_errors,
                          freed=self._freed)  # fmt: skip

    def _free_disk(self) -> int | None:
        if self.path is None:
            return None
        import shutil  # (it loads bz2 and lzma) only for an inbox on disk

        try:
            return shutil.disk_usage(self.path.parent).free
        except OSError:
            return None

    # -- notes ----------------------------------------------------------------------------

    def add(self, note: Note) -> AddResult:
        """Store a note in its own committed transaction, within the quotas.

        Never raises for storage trouble: a failed write is :attr:`AddResult.DISK_FULL`."""
        sender, size = str(note.sender), len(note.body)
        lim = self.limits
        with self._lock:
            try:
                if self._has(note.recipient, note.msg_id):
                    return AddResult.DUPLICATE
            except sqlite3.Error as exc:
                self._write_failed(exc, "lookup")
                return AddResult.DISK_FULL
            over = self._over_quota(sender, size)
            if over is not None:
                return over
            free = self._free_disk()
            if free is not None and free < lim.mailbox_min_free_disk_bytes:
                return AddResult.DISK_LOW
            if not self._writable:
                if not self._reopen_writable():
                    return AddResult.DISK_FULL
            elif self._monotonic() < self._blocked_until:
                return AddResult.DISK_FULL
            try:
                cur = self._conn().execute(
                    "INSERT OR IGNORE INTO inbox (recipient, msg_id, sender, msg_type, body,"
                    " sent_at, received_at, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (str(note.recipient), note.msg_id, sender, note.msg_type, note.body,
                     note.sent_at, note.received_at, note.via),
                )  # fmt: skip
            except sqlite3.Error as exc:
                self._write_failed(exc, "insert")
                return AddResult.DISK_FULL
            if cur.rowcount != 1:
                return AddResult.DUPLICATE
            counts = self._per_sender.setdefault(sender, [0, 0])
            counts[0] += 1
            counts[1] += size
            self._notes += 1
            self._bytes += size
            return AddResult.STORED

    def precheck(self, sender: Aid) -> AddResult | None:
        """The quota that would refuse any new note from ``sender`` now, or None: lets the
        mailbox refuse before the work of verifying and decrypting. :meth:`add` decides."""
        with self._lock:
            return self._over_quota(str(sender), 0)

    def _over_quota(self, sender: str, size: int) -> AddResult | None:
        lim = self.limits
        n, b = self._per_sender.get(sender, (0, 0))
        if n + 1 > lim.mailbox_notes_per_sender:
            return AddResult.SENDER_NOTES
        if b + size > lim.mailbox_bytes_per_sender:
            return AddResult.SENDER_BYTES
        if self._notes + 1 > lim.mailbox_notes_total:
            return AddResult.TOTAL_NOTES
        if self._bytes + size > lim.mailbox_bytes_total:
            return AddResult.TOTAL_BYTES
        return None

    def _has(self, recipient: Aid, msg_id: bytes) -> bool:
        row = (
            self._conn()
            .execute(
                "SELECT 1 FROM inbox WHERE recipient = ? AND msg_id = ?", (str(recipient), msg_id)
            )
            .fetchone()
        )
        return row is not None

    def has(self, recipient: Aid, msg_id: bytes) -> bool:
        with self._lock:
            return self._has(recipient, msg_id)

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
        ``include_read``); unless ``peek``, the returned unread notes are marked read (not
        while the inbox is read-only: they stay unread)."""
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
            db = self._conn()
            if peek or not self._writable:
                rows = db.execute(sql, args).fetchall()
                return [_note(r) for r in rows]
            try:
                db.execute("BEGIN IMMEDIATE")
                rows = db.execute(sql, args).fetchall()
                db.executemany(
                    "UPDATE inbox SET read_at = ? WHERE recipient = ? AND msg_id = ?"
                    " AND read_at IS NULL",
                    [(now, r[0], r[1]) for r in rows],
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:  # the disk filled up: read without marking
                self._write_failed(exc, "mark_read")
                rows = self._conn().execute(sql, args).fetchall()
        return [_note(r) for r in rows]

    def delete(self, recipient: Aid, msg_ids: Sequence[bytes]) -> int:
        """Remove notes; returns how many were there.

        Raises:
            LimitExceeded: the inbox cannot be written (disk full); nothing was removed.
        """
        with self._lock:
            if not self._writable:
                raise LimitExceeded(
                    "the inbox is read-only because its disk is full; free space and retry"
                )
            try:
                cur = self._conn().executemany(
                    "DELETE FROM inbox WHERE recipient = ? AND msg_id = ?",
                    [(str(recipient), m) for m in msg_ids],
                )
            except sqlite3.Error as exc:
                self._write_failed(exc, "delete")
                raise LimitExceeded(
                    f"the inbox could not be changed ({exc}); free disk space and retry"
                ) from None
            if cur.rowcount > 0:
                self._freed += 1
                self._recount()
            return cur.rowcount

    def purge(
        self, now: float, retention_s: float, unread_retention_s: float | None = None
    ) -> tuple[int, int]:
        """Remove notes read more than ``retention_s`` ago and unread notes received more
        than ``unread_retention_s`` (default: the limit) ago. Returns (read, unread) removed;
        (0, 0) when the inbox cannot be written."""
        unread_s = self.unread_retention_s if unread_retention_s is None else unread_retention_s
        with self._lock:
            db = self._db
            if not self._writable or db is None:  # None: in memory, never held a note
                return 0, 0
            try:
                read = db.execute(
                    "DELETE FROM inbox WHERE read_at IS NOT NULL AND read_at < ?",
                    (now - retention_s,),
                ).rowcount
                unread = db.execute(
                    "DELETE FROM inbox WHERE read_at IS NULL AND received_at < ?",
                    (now - unread_s,),
                ).rowcount
            except sqlite3.Error as exc:
                self._write_failed(exc, "purge")
                return 0, 0
            if read or unread:
                self._freed += 1
                self._recount()
            return read, unread

    def count(self, recipient: Aid, *, unread_only: bool = True) -> int:
        sql = "SELECT COUNT(*) FROM inbox WHERE recipient = ?"
        if unread_only:
            sql += " AND read_at IS NULL"
        with self._lock:
            (n,) = self._conn().execute(sql, (str(recipient),)).fetchone()
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
