"""Mailbox between real Nodes on loopback: online, offline, hostile input, inbox policy."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import anyio
import pytest

from a2al_mcp import DelegatedIdentity, NodeConfig, SystemRng
from a2al_mcp.errors import LimitExceeded, NotFound
from a2al_mcp.identity import Identity
from a2al_mcp.node import Node
from a2al_mcp.protocol.mailbox_crypto import seal_note
from a2al_mcp.protocol.records import SignedRecord
from a2al_mcp.protocol.session_frames import MailboxFrame
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def _wait_notes(node: Node, n: int, *, local: object = None, limit_s: float = 10) -> list:
    """The first ``n`` unread notes of ``local``, waiting on ``Node.on_mail`` for more."""
    arrived = [anyio.Event()]
    stop = node.on_mail(lambda _note: arrived[0].set())
    try:
        with anyio.fail_after(limit_s):
            while True:
                arrived[0] = anyio.Event()  # armed before reading: no arrival is missed
                notes = await node.read_mailbox(local=local, peek=True)  # type: ignore[arg-type]
                if len(notes) >= n:
                    return notes
                await arrived[0].wait()
    finally:
        stop()


async def _background_done(node: Node, n: int = 1) -> None:
    """Wait until ``n`` paths left running by ``send_mailbox`` have ended (the caller bounds
    the wait)."""
    while (st := node.mailbox_statistics()).background_ok + st.background_failed < n:  # noqa: ASYNC110 (polls counters)
        await anyio.sleep(0.01)


async def test_online_note_goes_direct_and_stored() -> None:
    with anyio.fail_after(30):
        async with network(4, publish=True) as nodes:
            a, b = nodes[1], nodes[2]
            arrived: list = []
            b.on_mail(arrived.append)
            res = await a.send_mailbox(b.aid, "hello b")
            assert len(res.msg_id) == 32 and not res.refused
            # returned on the first path that held it; the other one goes on in the background
            assert (res.delivered, res.pending) in {("direct", "store"), ("stored", "direct"),
                                                    ("both", "")}, res  # fmt: skip
            assert (res.replicas >= 1) == (res.delivered != "direct"), res
            if res.pending:  # both paths hold it in the end
                await _background_done(a)
            st = a.mailbox_statistics()
            assert (st.background_ok, st.background_failed) == (1 if res.pending else 0, 0)
            (note,) = await _wait_notes(b, 1)
            assert (note.sender, note.text, note.msg_id) == (a.aid, "hello b", res.msg_id)
            assert note.via in ("direct", "store") and arrived == [note]  # whichever came first
            # the DHT copy reaches b too (poll): deduplicated
            await b.check_mailbox()
            assert len(await b.read_mailbox(peek=True)) == 1
            assert b.mailbox_statistics().received == 1


async def test_offline_recipient_picks_up_on_start(tmp_path: Path) -> None:
    with anyio.fail_after(40):
        async with network(4, publish=True) as nodes:
            seed = "{}:{}".format(*nodes[0].local_addr)
            ident = Identity.generate(SystemRng())
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,), data_dir=tmp_path)
            async with Node(cfg, ident) as b:
                await b.publish()
            # b is gone; the note is stored on replicas only
            res = await nodes[1].send_mailbox(ident.aid, b"while you were out")
            assert res.delivered == "stored" and res.replicas >= 1, res
            assert res.direct_error or res.pending == "direct", res  # failed, or still dialling
            async with Node(cfg, ident) as b2:  # the start-up poll finds it
                (note,) = await _wait_notes(b2, 1)
                assert note.body == b"while you were out" and note.via == "poll"


async def test_delegated_agents_send_and_receive() -> None:
    with anyio.fail_after(30):
        async with network(3, publish=True) as nodes:
            a, b = nodes[1], nodes[2]
            agent_a = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            agent_b = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            a.add_identity(agent_a)
            b.add_identity(agent_b)
            await b.publish(agent_b.aid)
            await a.send_mailbox(agent_b.aid, "to the agent", local=agent_a.aid)
            (note,) = await _wait_notes(b, 1, local=agent_b.aid)
            assert note.sender == agent_a.aid and note.recipient == agent_b.aid
            assert await b.read_mailbox(peek=True) == []  # the node's own inbox is separate


async def test_inbox_read_marks_and_keeps_until_deleted(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with network(3, publish=True) as nodes:
            a, b = nodes[1], nodes[2]
            for i in range(3):
                await a.send_mailbox(b.aid, f"n{i}")
            await _wait_notes(b, 3)
            first = await b.read_mailbox(limit=2)
            assert [n.text for n in first] == ["n0", "n1"]
            assert [n.text for n in await b.read_mailbox()] == ["n2"]
            assert await b.read_mailbox() == []
            kept = await b.read_mailbox(include_read=True)
            assert len(kept) == 3 and all(n.read_at for n in kept)
            assert b.delete_mailbox([kept[0].msg_id]) == 1
            assert len(await b.read_mailbox(include_read=True)) == 2
            assert len(await b.read_mailbox(include_read=True, sender=a.aid)) == 2
            assert await b.read_mailbox(include_read=True, sender=nodes[0].aid) == []


async def test_clear_errors() -> None:
    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            with pytest.raises(LimitExceeded, match="connect or fetch"):
                await a.send_mailbox(b.aid, b"x" * 390)
            await a.send_mailbox(b.aid, b"x" * 389)  # the largest body that fits
            with pytest.raises(NotFound, match="no endpoint record"):
                await a.send_mailbox(Identity.generate(SystemRng()).aid, "anyone?")


async def test_hostile_notes_are_refused_and_counted() -> None:
    with anyio.fail_after(30):
        async with network(3, publish=True) as (a, b, c):
            mb = b._mailbox
            assert mb is not None
            rng = SystemRng()
            key_b = b.identity.key.public

            def note(
                sender: Identity, recipient: object = None, body: bytes = b"x", ts: int = 0
            ) -> SignedRecord:
                to = recipient or b.aid
                payload = seal_note(sender=sender.aid, recipient=to, recipient_key=key_b,  # type: ignore[arg-type]
                                    body=body, rng=rng)  # fmt: skip
                now = ts or int(b._clock.wall())
                return SignedRecord.sign(sender, 0x80, payload.to_bytes(), seq=now * 10**9,
                                         timestamp=now, ttl=3600)  # fmt: skip

            good = note(a.identity)
            assert mb.accept(good, via="test")
            assert mb.accept(good, via="test")  # a replay: acknowledged, stored once
            assert mb.stats.duplicates == 1 and mb.stats.received == 1
            refused0 = mb.stats.refused
            # forged sender: c signs a record that claims a's AID
            forged = note(a.identity)
            by_c = SignedRecord.sign(c.identity, 0x80, forged.payload, seq=forged.seq,
                                     timestamp=forged.timestamp)  # fmt: skip
            assert not mb.accept(dataclasses.replace(by_c, address=a.aid), via="test")
            # a note for another recipient
            assert not mb.accept(note(a.identity, recipient=c.aid), via="test")
            # on a2mb the recipient must be the routed identity
            assert not mb.accept(note(a.identity), via="direct", routed=c.aid)
            # expired
            assert not mb.accept(note(a.identity, ts=int(b._clock.wall()) - 7200), via="test")
            # garbage ciphertext
            bad = note(a.identity)
            from a2al_mcp.protocol.payloads import MailboxPayload

            p = MailboxPayload.from_bytes(bad.payload)
            p = dataclasses.replace(p, ciphertext=bytes(len(p.ciphertext)))
            bad = SignedRecord.sign(a.identity, 0x80, p.to_bytes(), seq=bad.seq,
                                    timestamp=bad.timestamp)  # fmt: skip
            assert not mb.accept(bad, via="test")
            # a frame whose msg_id does not match, and undecodable record bytes
            assert not await mb.on_frame(b.aid, MailboxFrame(bytes(32), good.to_bytes()))
            assert not await mb.on_frame(b.aid, MailboxFrame(hashlib.sha256(b"").digest(),
                                                             b"\xff\x00"))  # fmt: skip
            assert mb.stats.refused == refused0 + 7
            assert len(await b.read_mailbox(peek=True)) == 1
            status = b.status().mailbox
            assert status is not None and status.refused == refused0 + 7


async def test_persisted_inbox_survives_restart(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with network(2, publish=True) as nodes:
            seed = "{}:{}".format(*nodes[0].local_addr)
            ident = Identity.generate(SystemRng())
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,), data_dir=tmp_path)
            async with Node(cfg, ident) as b:
                await b.publish()
                await nodes[1].send_mailbox(ident.aid, "keep me")
                await _wait_notes(b, 1)
            assert oct((tmp_path / "inbox.db").stat().st_mode & 0o777) == "0o600"
            async with Node(cfg, ident) as b2:
                assert [n.text for n in await b2.read_mailbox(peek=True)] == ["keep me"]
