"""Issue 14, finding 3: a mailbox flood and a full disk, against real nodes on loopback.

Self-made identities flood one node over ``a2mb`` and the DHT; the per-sender and total
quotas bound what it stores, an honest sender gets through while there is room and gets a
clear refusal when there is none; unread notes past retention are purged. A full disk (a real
tmpfs in a private mount namespace, and SQLite's ``max_page_count`` in-process) refuses notes
without an acknowledgement, stops nothing, loses no acknowledged note, and a node starts on
it (read-only) and takes notes again once space returns.

The attack runs against the old code too: where ``LimitsConfig`` does not exist (45ad18d) the
same nodes are built without limits, and the assertions about what they stored fail there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from a2al_mcp import Identity, NodeConfig, SigningKey, SystemRng
from a2al_mcp.errors import ConnectionClosed, RequestTimeout
from a2al_mcp.identity.aid import Aid
from a2al_mcp.identity.keys import VerifyKey
from a2al_mcp.node import Node
from a2al_mcp.protocol.mailbox_crypto import seal_note
from a2al_mcp.protocol.records import SignedRecord
from a2al_mcp.protocol.session_frames import MailboxFrame
from a2al_mcp.transport.peer import PeerConnection
from tests.node.loopnet import quic_url

pytestmark = pytest.mark.anyio


def _limits(**limits: Any) -> dict[str, Any]:
    """``{"limits": LimitsConfig(...)}`` — or nothing on the old code, which has no limits
    (the flood then runs against an unbounded inbox and the test's assertions fail)."""
    try:
        from a2al_mcp.config import LimitsConfig
    except ImportError:  # 45ad18d
        return {}
    return {"limits": LimitsConfig(**limits)}


def _note(sender: Identity, to: Aid, key: VerifyKey, body: bytes, wall: float) -> SignedRecord:
    payload = seal_note(sender=sender.aid, recipient=to, recipient_key=key, body=body,
                        rng=SystemRng())  # fmt: skip
    return SignedRecord.sign(sender, 0x80, payload.to_bytes(), seq=math.floor(wall * 1e9),
                             timestamp=int(wall), ttl=3600)  # fmt: skip


async def _deliver(pc: PeerConnection, rec: SignedRecord) -> bool:
    """True if the recipient acknowledged the note (``01``), False if it refused it (reset
    the stream); no answer at all means the node is no longer serving: a failure."""
    try:
        await pc.send_mailbox(MailboxFrame(rec.msg_id, rec.to_bytes()))
    except RequestTimeout:
        raise AssertionError("the recipient did not answer: its node is down") from None
    except ConnectionClosed:
        return False
    return True


async def _until_taken(attempt: Callable[[], Awaitable[bool]]) -> None:
    """Space is back: the inbox tries writing again after a short pause (``WRITE_RETRY_S``).
    Nothing tells a sender when, so it tries again, within a bound."""
    for _ in range(50):
        if await attempt():
            return
        await anyio.sleep(0.2)
    raise AssertionError("notes are still refused after space returned")


async def _stored(node: Node) -> int:
    return len(await node.read_mailbox(peek=True, include_read=True, limit=100_000))


@contextlib.asynccontextmanager
async def _net(**limits: Any) -> AsyncIterator[tuple[Node, Node, Node, Node]]:
    """A seed, an attacker, an honest sender and the target (with ``limits``), published."""
    async with contextlib.AsyncExitStack() as stack:
        seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        boot = ("{}:{}".format(*seed.local_addr),)
        nodes = [seed]
        for extra in ({}, {}, _limits(**limits)):
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=boot, **extra)
            nodes.append(await stack.enter_async_context(Node(cfg)))
        for n in nodes:
            await n.publish()
        yield seed, nodes[1], nodes[2], nodes[3]


async def test_flood_from_ten_identities_is_capped_and_honest_sender_told() -> None:
    per_sender, total = 5, 60
    with anyio.fail_after(60):
        async with _net(mailbox_notes_per_sender=per_sender, mailbox_notes_total=total) as (
            _seed,
            attacker,
            honest,
            target,
        ):
            key = target.identity.key.public
            pc = await attacker.connect(target.aid, endpoints=[quic_url(target)])
            rng = SystemRng()
            flooders = [Identity.generate(rng) for _ in range(12)]

            taken: list[SignedRecord] = []

            async def flood(idents: list[Identity], per: int) -> tuple[int, int]:
                acked = refused = 0
                for ident in idents:
                    for i in range(per):
                        rec = _note(ident, target.aid, key, b"flood %d" % i,
                                    target._clock.wall())  # fmt: skip
                        if await _deliver(pc, rec):
                            acked += 1
                            taken.append(rec)
                        else:
                            refused += 1
                return acked, refused

            # ten identities, eight notes each: five per sender are stored, the rest refused
            acked, refused = await flood(flooders[:10], 8)
            assert await _stored(target) == 10 * per_sender, "per-sender cap did not hold"
            assert (acked, refused) == (50, 30)
            # an honest sender under the total cap still gets through
            res = await honest.send_mailbox(target.aid, "hello, despite the flood")
            assert res.delivered in ("direct", "both")
            assert await _stored(target) == 51
            # two more flooders fill the inbox up to the total cap, and no further
            await flood(flooders[10:], 8)
            assert await _stored(target) == total, "total cap did not hold"
            # the DHT STORE path is capped too
            for i in range(5):
                rec = _note(Identity.generate(rng), target.aid, key, b"via store %d" % i,
                            target._clock.wall())  # fmt: skip
                await attacker._publish_record(rec, target.aid.node_id)
            await target.check_mailbox()  # and so is polling the copies on other replicas
            assert await _stored(target) == total
            # over the total cap, the honest sender is told: refused, not "delivered"
            res = await honest.send_mailbox(target.aid, "and now?")
            assert res.refused and res.delivered == "stored", res
            assert "refused" in res.direct_error
            assert await _stored(target) == total
            st = target.status().mailbox
            assert st is not None
            assert st.stored_notes == total and st.refused_sender_notes >= 33
            assert st.refused_total_notes >= 4 + 5 + 1
            assert st.refused >= st.refused_sender_notes + st.refused_total_notes
            # refused copies found again by later polls are skipped, not refused again
            before = (st.refused_total_notes, st.refused_sender_notes)
            await target.check_mailbox()
            await target.check_mailbox()
            st = target.status().mailbox
            assert st is not None and st.refused_known > 0
            assert (st.refused_total_notes, st.refused_sender_notes) == before
            # a replay of a stored note is still acknowledged at quota (idempotent)
            assert await _deliver(pc, taken[0]) and await _deliver(pc, taken[-1])
            assert await _stored(target) == total


async def test_duplicates_are_acked_at_quota_and_bytes_capped() -> None:
    with anyio.fail_after(60):
        async with _net(mailbox_bytes_per_sender=1000, mailbox_bytes_total=3000) as (
            _seed,
            attacker,
            _honest,
            target,
        ):
            key = target.identity.key.public
            pc = await attacker.connect(target.aid, endpoints=[quic_url(target)])
            rng = SystemRng()
            body = b"x" * 389
            sent: list[SignedRecord] = []
            acked = 0
            for _ in range(5):
                ident = Identity.generate(rng)
                for _ in range(3):
                    rec = _note(ident, target.aid, key, body, target._clock.wall())
                    sent.append(rec)
                    acked += await _deliver(pc, rec)
            # 389-byte bodies: two per sender (778 ≤ 1000), seven in all (2723 ≤ 3000)
            assert await _stored(target) == 7, "byte quotas did not hold"
            assert acked == 7
            stored = {n.msg_id for n in await target.read_mailbox(peek=True, limit=100)}
            again = [r for r in sent if r.msg_id in stored]
            assert all([await _deliver(pc, r) for r in again]), "a duplicate was refused"
            st = target.status().mailbox
            assert st is not None
            # senders 1-3: third note over 1000 bytes; sender 4: two over 3000; sender 5: all
            assert (st.refused_sender_bytes, st.refused_total_bytes) == (3, 5)
            assert st.duplicates >= 7 and st.stored_bytes == 7 * 389


async def test_unread_notes_past_retention_are_purged() -> None:
    with anyio.fail_after(60):
        async with _net(mailbox_unread_retention_s=3600.0) as (_seed, _attacker, honest, target):
            for i in range(3):
                await honest.send_mailbox(target.aid, f"note {i}")
            assert await _stored(target) == 3
            (kept,) = await target.read_mailbox(limit=1)  # read now: kept for 30 days
            mb = target._mailbox
            assert mb is not None
            later = target._clock.wall() + 2 * 3600
            purge = getattr(mb, "purge", None)
            if purge is not None:
                purge(now=later)
            else:  # 45ad18d: what its poll loop does
                mb.inbox.purge(later, target.config.mailbox.retention_s)
            left = await target.read_mailbox(peek=True, include_read=True)
            assert [n.msg_id for n in left] == [kept.msg_id], "unread notes were not purged"
            st = target.status().mailbox
            assert st is not None and (st.purged_unread, st.purged_read) == (2, 0)


async def test_sqlite_full_refuses_without_ack_and_node_carries_on(tmp_path: Path) -> None:
    """In-process: SQLite's max_page_count makes every insert fail with SQLITE_FULL."""
    with anyio.fail_after(60):
        async with contextlib.AsyncExitStack() as stack:
            sender = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
            cfg = NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path,
                             **_limits(mailbox_min_free_disk_bytes=1))  # fmt: skip
            target = await stack.enter_async_context(Node(cfg))
            key = target.identity.key.public
            pc = await sender.connect(target.aid, endpoints=[quic_url(target)])

            def note(i: int) -> SignedRecord:
                return _note(sender.identity, target.aid, key, b"n%d" % i, target._clock.wall())

            first = note(0)
            acked = [r.msg_id for r in [first, note(1), note(2)] if await _deliver(pc, r)]
            assert len(acked) == 3
            mb = target._mailbox
            assert mb is not None
            db = mb.inbox._db
            (pages,) = db.execute("PRAGMA page_count").fetchone()
            db.execute(f"PRAGMA max_page_count = {pages}")
            results = []
            for i in range(3, 40):
                rec = note(i)
                ok = await _deliver(pc, rec)
                results.append(ok)
                if ok:
                    acked.append(rec.msg_id)
            assert not all(results), "no note was refused on a full database"
            # the node is alive and serves: a fresh connection, a replay (a duplicate: acked)
            pc.close()
            pc = await sender.connect(target.aid, endpoints=[quic_url(target)])
            assert await _deliver(pc, first), "the node is down after its database filled up"
            st = target.status().mailbox
            assert st is not None and st.refused_disk_full >= 1 and st.storage_errors >= 1
            have = {n.msg_id for n in await target.read_mailbox(peek=True, limit=1000)}
            assert set(acked) <= have and len(have) == len(acked)
            # room again: notes are taken again (after the short retry pause)
            db.execute("PRAGMA max_page_count = 1000000")
            await _until_taken(lambda: _deliver(pc, note(1000)))


# -- a real full disk: a small tmpfs in a private mount namespace ------------------------

HARNESS = r"""
import json, os, sys, anyio
from pathlib import Path
from a2al_mcp import Identity, NodeConfig, SigningKey
from a2al_mcp.node import Node

seed, data = bytes.fromhex(sys.argv[1]), Path(sys.argv[2])
ident = Identity.from_key(SigningKey(seed))

def config(min_free: int) -> NodeConfig:
    try:
        from a2al_mcp.config import LimitsConfig
        extra = {"limits": LimitsConfig(mailbox_min_free_disk_bytes=min_free)}
    except ImportError:  # 45ad18d: no limits
        extra = {}
    return NodeConfig(listen_addr="127.0.0.1:0", data_dir=data / "home", **extra)

filler = data / "filler"

def fill(leave: int) -> None:
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (65536, 4096, 512, 1):
            try:
                while os.statvfs(data).f_bavail * os.statvfs(data).f_frsize - chunk >= leave:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)

def say(**kw) -> None:
    print(json.dumps(kw), flush=True)

async def main() -> None:
    node = None
    stack = None
    async for line in anyio.wrap_file(sys.stdin):
        cmd, *args = line.split()
        if cmd == "start":
            import contextlib
            stack = contextlib.AsyncExitStack()
            node = await stack.enter_async_context(Node(config(int(args[0])), ident))
            say(port=node.local_addr[1])
        elif cmd == "stop":
            await stack.aclose()
            node = None
            say(ok=True)
        elif cmd == "fill":
            fill(int(args[0]))
            say(free=os.statvfs(data).f_bavail * os.statvfs(data).f_frsize)
        elif cmd == "free":
            filler.unlink()
            say(free=os.statvfs(data).f_bavail * os.statvfs(data).f_frsize)
        elif cmd == "read":
            notes = await node.read_mailbox(peek=True, limit=10000)
            say(ids=[n.msg_id.hex() for n in notes])
        elif cmd == "status":
            st = node.status().mailbox
            say(**{k: getattr(st, k, None) for k in ("received", "refused", "refused_disk_low",
                "refused_disk_full", "read_only", "storage_errors")})

anyio.run(main)
"""


def _can_mount_tmpfs() -> str:
    if sys.platform != "linux" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root on Linux (a tmpfs in a private mount namespace)"
    if shutil.which("unshare") is None:
        return "needs util-linux unshare"
    return ""


class _Harness:
    """A receiving node in its own process and mount namespace, driven line by line."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        self.proc = proc
        self._buf = b""

    async def ask(self, cmd: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        await self.proc.stdin.send(cmd.encode() + b"\n")
        with anyio.fail_after(20):
            while b"\n" not in self._buf:
                try:
                    chunk = await self.proc.stdout.receive(4096)
                except anyio.EndOfStream:
                    raise AssertionError(f"the node's process ended during {cmd!r}") from None
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply


@pytest.mark.skipif(bool(_can_mount_tmpfs()), reason=_can_mount_tmpfs() or "-")
async def test_real_full_disk_refuses_keeps_acked_and_starts_read_only(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    seed = SystemRng().bytes(32)
    recipient = Identity.from_key(SigningKey(seed))
    script = 'mount -t tmpfs -o size=2m tmpfs "$0" && exec "$1" -c "$2" "$3" "$0"'
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(mnt),
            sys.executable, HARNESS, seed.hex()]  # fmt: skip
    acked: list[bytes] = []
    with anyio.fail_after(120):
        async with (
            await anyio.open_process(argv, stderr=None) as proc,
            Node(NodeConfig(listen_addr="127.0.0.1:0")) as sender,
        ):
            h = _Harness(proc)
            key = recipient.key.public

            port = 0

            async def conn(min_free: int = 1) -> PeerConnection:
                nonlocal port
                port = (await h.ask(f"start {min_free}"))["port"]
                return await sender.connect(recipient.aid, endpoints=[f"quic://127.0.0.1:{port}"])

            taken: list[SignedRecord] = []

            async def send(tag: str) -> bool:
                rec = _note(sender.identity, recipient.aid, key, tag.encode(), sender._clock.wall())
                ok = await _deliver(pc, rec)
                if ok:
                    acked.append(rec.msg_id)
                    taken.append(rec)
                return ok

            async def send_until_taken(tag: str) -> None:
                await _until_taken(lambda: send(tag))

            async def inbox() -> set[bytes]:
                return {bytes.fromhex(i) for i in (await h.ask("read"))["ids"]}

            pc = await conn()
            for i in range(3):
                assert await send(f"before {i}")
            # the disk truly full (one page left: no room for a transaction, but above
            # mailbox_min_free_disk_bytes = 1, so SQLite itself fails): refused, not
            # acknowledged, node up, nothing acknowledged lost
            assert (await h.ask("fill 4096"))["free"] <= 8192
            results = [await send(f"full {i}") for i in range(10)]
            assert not all(results), "every note was acknowledged on a full disk"
            # the node is up: a fresh connection, and a replay is acknowledged (a duplicate)
            pc.close()
            pc = await sender.connect(recipient.aid, endpoints=[f"quic://127.0.0.1:{port}"])
            assert await _deliver(pc, taken[0]), "the node is down after the disk filled up"
            st = await h.ask("status")
            assert st["refused_disk_full"] >= 1, st
            assert set(acked) <= await inbox()
            # restart on the full disk: starts, reads, refuses
            pc.close()
            await h.ask("stop")
            pc = await conn()
            assert set(acked) <= await inbox()
            assert not await send("after restart")
            # space returns: taken again without a restart
            await h.ask("free")
            await send_until_taken("space again")
            # less free space than mailbox_min_free_disk_bytes: refused before trying
            pc.close()
            await h.ask("stop")
            pc = await conn(min_free=200_000)
            assert (await h.ask("fill 100000"))["free"] < 200_000
            assert not await send("low"), "a note was taken with the disk nearly full"
            assert (await h.ask("status"))["refused_disk_low"] >= 1
            await h.ask("free")
            # a clean stop, then the disk fills before the next start (SQLite cannot even
            # create its -shm file): the node starts read-only, reads, refuses, recovers
            pc.close()
            await h.ask("stop")
            await h.ask("fill 4096")
            pc = await conn()
            assert set(acked) <= await inbox()
            assert not await send("read-only")
            st = await h.ask("status")
            assert st["read_only"] is True, st
            await h.ask("free")
            await send_until_taken("writable again")
            assert (await h.ask("status"))["read_only"] is False
            assert set(acked) <= await inbox()
            pc.close()
            await h.ask("stop")
            assert proc.stdin is not None
            await proc.stdin.aclose()
            await proc.wait()
