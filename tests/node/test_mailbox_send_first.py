"""``send_mailbox`` returns once one path holds the note; the other runs on in the background.

Real Nodes on loopback, plus one scripted DHT peer (:class:`Gate`) that answers PING,
FIND_NODE and FIND_VALUE at once but answers STOREs by a policy: held until the test releases
them (a replica that is slow, deterministically: the sender's STORE cannot finish before the
release), or refused (no replica takes the note).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import pytest

from a2al_mcp import DhtConfig, Identity, LimitsConfig, NodeConfig, QuicConfig, SystemRng
from a2al_mcp.errors import AccessDenied, Unreachable
from a2al_mcp.identity import NodeId
from a2al_mcp.node import Node
from a2al_mcp.node import mailbox as mailbox_module
from a2al_mcp.node.mailbox import DIRECT_GRACE_S
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.records import SignedRecord

pytestmark = pytest.mark.anyio

MAILBOX = 0x80


@dataclasses.dataclass
class Gate:
    """A scripted DHT peer. ``hold``: STOREs are answered (stored) only after
    :meth:`release`; otherwise they are refused. FIND_VALUE answers with ``records``."""

    ident: Identity
    sock: anyio.abc.UDPSocket
    hold: bool
    records: dict[NodeId, list[SignedRecord]] = dataclasses.field(default_factory=dict)
    stores: list[SignedRecord] = dataclasses.field(default_factory=list)
    released: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    sending: anyio.Lock = dataclasses.field(default_factory=anyio.Lock)
    """Held answers and the serve loop share the socket: one writer at a time."""

    @property
    def seed(self) -> str:
        host, port = self.sock.extra(anyio.abc.SocketAttribute.local_address)[:2]
        return f"{host}:{port}"

    def release(self) -> None:
        self.released.set()

    def stored(self, msg_id: bytes) -> bool:
        return any(r.msg_id == msg_id for r in self.stores)

    async def _send(self, body: dm.Body, tx_id: bytes, addr: tuple[str, int]) -> None:
        async with self.sending:
            await self.sock.sendto(dm.encode_message(body, tx_id=tx_id, key=self.ident.key), *addr)

    async def _answer_store(self, tx_id: bytes, addr: tuple[str, int]) -> None:
        await self.released.wait()
        await self._send(dm.StoreResp(stored=True), tx_id, addr)

    async def serve(self, tg: anyio.abc.TaskGroup) -> None:
        async for data, addr in self.sock:
            try:
                msg = dm.decode_message(data)
            except Exception:  # not a DHT message (QUIC, STUN...): not for us
                continue
            body: dm.Body
            match msg.body:
                case dm.Ping():
                    body = dm.Pong(address=self.ident.aid, observed_addr=addr)
                case dm.FindNode():
                    body = dm.FindNodeResp(nodes=(), observed_addr=addr)
                case dm.FindValue(target=target, rec_type=rec_type):
                    recs = tuple(r for r in self.records.get(target, ())
                                 if rec_type in (0, r.rec_type))  # fmt: skip
                    body = dm.FindValueResp(nodes=(), observed_addr=addr, records=recs)
                case dm.Store(record=record):
                    self.stores.append(record)
                    if self.hold:
                        tg.start_soon(self._answer_store, msg.tx_id, addr)
                        continue
                    body = dm.StoreResp(stored=False, reason=dm.StoreReason.POLICY)
                case _:
                    continue
            await self._send(body, msg.tx_id, addr)


@contextlib.asynccontextmanager
async def gate(*, hold: bool) -> AsyncIterator[Gate]:
    async with (
        await anyio.create_udp_socket(local_host="127.0.0.1") as sock,
        anyio.create_task_group() as tg,
    ):
        g = Gate(Identity.generate(SystemRng()), sock, hold)
        tg.start_soon(g.serve, tg)
        yield g
        g.release()  # no held answer outlives the test
        tg.cancel_scope.cancel()


def _config(*seeds: str, rpc_s: float = 60.0, dial_s: float = 0.5, **extra: Any) -> NodeConfig:
    """A node joined through ``seeds``; its DHT RPCs wait ``rpc_s`` (long by default: a held
    STORE is not given up during the test) and its dials give up after ``dial_s`` (soon by
    default: an absent recipient fails quickly)."""
    return NodeConfig(listen_addr="127.0.0.1:0", bootstrap=seeds,
                      dht=DhtConfig(lookup_rpc_timeout_s=rpc_s),
                      quic=QuicConfig(handshake_timeout_s=dial_s), **extra)  # fmt: skip


def _seed(node: Node) -> str:
    return "{}:{}".format(*node.local_addr)


async def _until(cond: Callable[[], bool]) -> None:
    """Wait for ``cond`` (the caller bounds the wait)."""
    while not cond():  # noqa: ASYNC110 (polls counters and the gate; no event per condition)
        await anyio.sleep(0.01)


async def test_the_recipients_ack_returns_at_once_and_stops_the_store() -> None:
    with anyio.fail_after(30):
        async with (
            gate(hold=True) as g,
            Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed,
            Node(_config(_seed(seed))) as b,
        ):
            await b.publish()
            async with Node(_config(_seed(seed), g.seed)) as a:
                res = await a.send_mailbox(b.aid, "before the replicas answer")
                # the STORE cannot have finished (the gate holds its answer): it is stopped,
                # since b committed the note to its inbox before acknowledging it
                assert (res.delivered, res.pending, res.replicas) == ("direct", "", 0), res
                assert not res.refused and not res.direct_error
                (note,) = await b.read_mailbox()
                assert note.msg_id == res.msg_id
                st = a.mailbox_statistics()
                assert st.sent == 1 and st.stores_skipped == 1
                assert (st.background_ok, st.background_failed) == (0, 0)
                await _until(lambda: a._tasks.tasks == 0)  # the delivery ended, nothing left
                assert a._tasks.last == ""  # and nothing escaped it
                g.release()  # a held answer for a stopped STORE is ignored
                assert a.is_connected(b.aid)
                res2 = await a.send_mailbox(b.aid, "and again, over the pooled connection")
                assert (res2.delivered, res2.pending) == ("direct", ""), res2
                assert a.mailbox_statistics().stores_skipped == 2
                # warm: the direct path went first and was acknowledged; no STORE was started
                assert not g.stored(res2.msg_id)


async def test_closing_the_node_ends_the_background_dial_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="a2al_mcp.node.mailbox")
    with anyio.fail_after(30):
        async with (
            Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed,
            Node(_config(_seed(seed), rpc_s=0.5, dial_s=10.0)) as keep,  # a replica
        ):
            async with Node(_config(_seed(seed))) as b:
                await b.publish()
            a = Node(_config(_seed(seed), rpc_s=0.5, dial_s=10.0))
            async with a:
                res = await a.send_mailbox(b.aid, "then the sender closes")
                # b is gone: stored, and the dial to it goes on past DIRECT_GRACE_S
                assert (res.delivered, res.pending) == ("stored", "direct"), res
                mailbox = a._mailbox
                assert mailbox is not None
            # closed while the dial ran: stopped, neither a failure nor an escaped error
            st = mailbox.stats
            assert (st.background_ok, st.background_failed) == (0, 0)
            assert a._tasks.tasks == 0 and a._tasks.last == ""
            assert "mailbox.background_stopped" in caplog.text and "pending=direct" in caplog.text
            assert keep.local_addr  # the replica outlived the sender


@pytest.mark.parametrize("dial_s", [0.5, 10.0])
async def test_unreachable_recipient_returns_once_stored(dial_s: float) -> None:
    """A dial that fails within ``DIRECT_GRACE_S`` of the STORE is reported; one that goes on
    longer (a dial up to the 4 s ``DIRECT_TIMEOUT_S``) is left to the background."""
    with anyio.fail_after(30):
        async with (
            Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed,
            Node(_config(_seed(seed), rpc_s=0.5, dial_s=dial_s)) as a,  # b is a DHT peer too
        ):
            async with Node(_config(_seed(seed))) as b:
                await b.publish()
            res = await a.send_mailbox(b.aid, "while you were out")
            assert res.delivered == "stored" and res.replicas >= 1 and not res.refused, res
            if dial_s < DIRECT_GRACE_S:
                assert res.pending == "" and res.direct_error, res
            else:
                assert res.pending == "direct" and not res.direct_error, res
                await _until(lambda: a.mailbox_statistics().background_failed == 1)
            st = a.mailbox_statistics()
            assert st.sent == 1 and st.background_ok == 0 and st.background_refused == 0


async def test_both_paths_failing_raise_unreachable() -> None:
    with anyio.fail_after(30):
        async with (
            gate(hold=False) as g,
            Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed,
        ):
            async with Node(_config(_seed(seed))) as b:
                await b.publish()
                record = (await seed.resolve(b.aid)).record
            g.records[b.aid.node_id] = [record]  # the gate serves b's record, refuses STOREs
            async with Node(_config(g.seed)) as a:
                with pytest.raises(Unreachable, match="no DHT node accepted it") as info:
                    await a.send_mailbox(b.aid, "nobody takes this")
                assert "could not be delivered: direct: " in str(info.value)
                assert g.stores and a.mailbox_statistics().sent == 0


async def test_refused_and_not_stored_raises_access_denied() -> None:
    with anyio.fail_after(30):
        limits = LimitsConfig(mailbox_notes_per_sender=1)
        async with (
            gate(hold=False) as g,
            Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed,
            Node(_config(_seed(seed), limits=limits)) as b,
        ):
            await b.publish()
            g.records[b.aid.node_id] = [(await seed.resolve(b.aid)).record]
            async with Node(_config(g.seed)) as a:
                first = await a.send_mailbox(b.aid, "the one b takes from a")
                assert (first.delivered, first.replicas) == ("direct", 0), first
                if first.pending:  # the gate refuses the STORE: a background failure
                    await _until(lambda: a.mailbox_statistics().background_failed == 1)
                with pytest.raises(AccessDenied, match=r"refused the note.*no DHT node stored"):
                    await a.send_mailbox(b.aid, "one too many")
                assert a.mailbox_statistics().sent == 1
                assert b.mailbox_statistics().refused_sender_notes == 1


async def test_with_the_background_full_send_waits_for_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Back-pressure: with no room for a background path, a send whose recipient does not
    answer within ``DIRECT_GRACE_S`` waits for the dial to end, as before."""
    monkeypatch.setattr(mailbox_module, "BACKGROUND_MAX", 0)  # no room: back-pressure
    monkeypatch.setattr(mailbox_module, "DIRECT_TIMEOUT_S", 2.0)
    with anyio.fail_after(30):
        async with (
            Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed,
            Node(_config(_seed(seed), rpc_s=0.5, dial_s=10.0)) as a,  # b is a DHT peer too
        ):
            async with Node(_config(_seed(seed))) as b:
                await b.publish()
            res = await a.send_mailbox(b.aid, "the slow way, as before")
            assert (res.delivered, res.pending) == ("stored", ""), res
            assert res.replicas >= 1 and "no acknowledgement within 2 s" in res.direct_error
            st = a.mailbox_statistics()
            assert (st.background_ok, st.background_failed) == (0, 0)
