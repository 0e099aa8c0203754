"""The inbox alone: quotas, retention, and what it does when it cannot write (issue 14)."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path

import pytest

from a2al_mcp import Identity, SystemRng
from a2al_mcp.config import LimitsConfig
from a2al_mcp.errors import LimitExceeded
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.inbox import WRITE_RETRY_S, AddResult, Inbox, Note

RNG = SystemRng()
ME = Identity.generate(RNG).aid


@dataclasses.dataclass
class FakeClock:
    t: float = 1000.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t


def note(sender: Aid, body: bytes = b"hi", *, at: float = 0.0) -> Note:
    return Note(msg_id=os.urandom(32), recipient=ME, sender=sender, msg_type=3, body=body,
                sent_at=int(at), received_at=at, via="test")  # fmt: skip


def test_quotas_refuse_by_reason_and_duplicates_stay_accepted() -> None:
    lim = LimitsConfig(mailbox_notes_per_sender=2, mailbox_bytes_per_sender=10,
                       mailbox_notes_total=5, mailbox_bytes_total=24)  # fmt: skip
    inbox = Inbox(None, lim)
    a, b, c, d = (Identity.generate(RNG).aid for _ in range(4))
    first = note(a, b"1234")
    assert inbox.add(first) is AddResult.STORED
    assert inbox.add(note(a, b"1234")) is AddResult.STORED
    assert inbox.add(note(a)) is AddResult.SENDER_NOTES
    assert inbox.add(note(b, b"x" * 11)) is AddResult.SENDER_BYTES
    assert inbox.add(note(b, b"x" * 8)) is AddResult.STORED  # 16 bytes in all
    assert inbox.add(note(c, b"x" * 9)) is AddResult.TOTAL_BYTES
    assert inbox.add(note(c, b"x" * 8)) is AddResult.STORED  # 24
    assert inbox.add(note(d, b"")) is AddResult.STORED  # 5 notes
    assert inbox.add(note(d, b"")) is AddResult.TOTAL_NOTES
    assert inbox.add(first) is AddResult.DUPLICATE and AddResult.DUPLICATE.accepted
    usage = inbox.usage()
    assert (usage.notes, usage.bytes, usage.senders) == (5, 24, 4)
    # room again once notes are removed
    assert inbox.delete(ME, [first.msg_id]) == 1
    assert inbox.usage().freed == 1 and inbox.add(note(c)) is AddResult.STORED


def test_purge_read_and_unread_separately() -> None:
    inbox = Inbox(None, LimitsConfig(mailbox_unread_retention_s=100.0))
    s = Identity.generate(RNG).aid
    for i in range(3):
        assert inbox.add(note(s, at=float(i))).accepted
    inbox.read(ME, limit=1, now=50.0)  # the oldest is read at t=50
    assert inbox.purge(now=101.5, retention_s=1000.0) == (0, 1)  # t=0 and t=1 unread: 0 only
    assert inbox.purge(now=1051.0, retention_s=1000.0) == (1, 1)
    assert inbox.usage().notes == 0


def test_min_free_disk(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.db", LimitsConfig(mailbox_min_free_disk_bytes=1 << 62))
    assert inbox.add(note(Identity.generate(RNG).aid)) is AddResult.DISK_LOW
    assert inbox.usage().notes == 0


def test_full_database_refuses_then_takes_again(tmp_path: Path) -> None:
    clock = FakeClock()
    inbox = Inbox(tmp_path / "inbox.db", LimitsConfig(mailbox_min_free_disk_bytes=1), clock=clock)
    s = Identity.generate(RNG).aid
    kept = [note(s, b"x" * 300) for _ in range(3)]
    assert all(inbox.add(n) is AddResult.STORED for n in kept)
    (pages,) = inbox._db.execute("PRAGMA page_count").fetchone()
    inbox._db.execute(f"PRAGMA max_page_count = {pages}")
    results = [inbox.add(note(s, b"y" * 300)) for _ in range(20)]
    assert AddResult.DISK_FULL in results
    assert inbox.usage().storage_errors == 1  # then refused without trying, for a pause
    assert kept[0] in inbox.read(ME, peek=True, limit=100, now=0)
    inbox._db.execute("PRAGMA max_page_count = 1000000")
    assert inbox.add(note(s)) is AddResult.DISK_FULL  # still pausing
    clock.t += WRITE_RETRY_S
    assert inbox.add(note(s)) is AddResult.STORED


def test_opens_read_only_when_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "inbox.db"
    clock = FakeClock()
    lim = LimitsConfig(mailbox_min_free_disk_bytes=1)
    first = Inbox(path, lim)
    s = Identity.generate(RNG).aid
    stored = note(s)
    assert first.add(stored) is AddResult.STORED
    first.close()

    def full(self: Inbox) -> sqlite3.Connection:
        raise sqlite3.OperationalError("disk I/O error")

    real = Inbox._open_writable
    monkeypatch.setattr(Inbox, "_open_writable", full)
    inbox = Inbox(path, lim, clock=clock)
    assert inbox.read_only and inbox.usage().read_only
    # reads work (and cannot mark: the note stays unread), deletes are refused clearly
    assert [n.msg_id for n in inbox.read(ME, now=1.0)] == [stored.msg_id]
    assert inbox.count(ME) == 1
    with pytest.raises(LimitExceeded, match="read-only"):
        inbox.delete(ME, [stored.msg_id])
    assert inbox.add(stored) is AddResult.DUPLICATE  # still acknowledged
    assert inbox.add(note(s)) is AddResult.DISK_FULL
    clock.t += WRITE_RETRY_S
    assert inbox.add(note(s)) is AddResult.DISK_FULL  # retried, still failing
    monkeypatch.setattr(Inbox, "_open_writable", real)
    assert inbox.add(note(s)) is AddResult.DISK_FULL  # rate-limited: not yet
    clock.t += WRITE_RETRY_S
    assert inbox.add(note(s)) is AddResult.STORED
    assert inbox.usage().read_only is False
    assert inbox.usage().notes == 2
