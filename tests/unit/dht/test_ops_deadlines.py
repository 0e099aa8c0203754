"""DhtCore's operation kinds that tests/unit/dht/test_core.py does not drive to an exact
deadline: bucket refresh, path-cache STORE (with and without a publisher check), and the
cancel of a ping and of a bootstrap that already handed its self-lookup on.

Sans-I/O on a virtual clock, remote peers played by hand; constants come from where they
live, never re-typed.
"""

from __future__ import annotations

from a2al_mcp._random import SeededRng
from a2al_mcp.config import DhtConfig
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.core import HEARSAY_PROBE_MIN_BUCKET, DhtCore
from a2al_mcp.dht.lookup import LookupKind
from a2al_mcp.identity import Identity, NodeId
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.limits import K
from a2al_mcp.protocol.payloads import EndpointPayload, TopicPayload, topic_key
from a2al_mcp.protocol.records import RecType, SignedRecord
from a2al_mcp.protocol.timers import REFRESH_COOLDOWNS_S
from a2al_mcp.testing.clock import FakeClock
from tests.unit.dht.test_core import Remote as CoreRemote
from tests.unit.dht.test_core import events, make_core, sent
from tests.unit.dht.test_core import remotes as core_remotes

_Addr = tuple[str, int]
RPC = DhtConfig().lookup_rpc_timeout_s
T0 = FakeClock().monotonic()
WALL_OFFSET = FakeClock().wall_offset
EPS = 0.001
TOPIC = "lang.translate"
TOPIC_KEY = NodeId(topic_key(TOPIC))
SEEN_AT = ("10.9.9.9", 1)


class Remote(CoreRemote):
    def pong(self, core: DhtCore, request: dm.Message, now: float) -> None:
        self.answer(core, request, dm.Pong(address=self.ident.aid, observed_addr=SEEN_AT), now)


def remotes(n: int, start: int = 100) -> list[Remote]:
    return [Remote(p.ident, p.addr) for p in core_remotes(n, start)]


def far(core: DhtCore, peers: list[Remote]) -> list[Remote]:
    """Peers that draw no opportunistic PING when heard of second-hand."""
    return [
        p
        for p in peers
        if core.routing.bucket_index(p.ident.aid.node_id) < HEARSAY_PROBE_MIN_BUCKET
    ]


def topic_record(seed: int) -> SignedRecord:
    ident = Identity.generate(SeededRng(seed))
    payload = TopicPayload(topic=TOPIC, name=f"agent-{seed}", brief="x")
    return SignedRecord.sign(ident, RecType.TOPIC, payload.to_bytes(), seq=1,
                             timestamp=int(T0 + WALL_OFFSET), ttl=3600)  # fmt: skip


def endpoint_record(publisher: Remote) -> SignedRecord:
    host, port = publisher.addr
    payload = EndpointPayload(endpoints=(f"quic://{host}:{port}",)).to_bytes()
    return SignedRecord.sign(publisher.ident, RecType.ENDPOINT, payload, seq=1,
                             timestamp=int(T0 + WALL_OFFSET))  # fmt: skip


# -- bucket refresh ------------------------------------------------------------------------


def start_refresh(core: DhtCore, peer: Remote, now: float) -> dm.Message:
    assert core.refresh_buckets(now, 4) == 1  # the one non-empty bucket
    [(msg, addr)] = sent(core, now)
    assert addr == peer.addr and isinstance(msg.body, dm.FindNode)
    assert core.get_timer() == now + RPC
    assert core.refresh_buckets(now, 4) == 0  # already being refreshed
    return msg


def test_a_futile_refresh_backs_its_bucket_off_from_the_answer() -> None:
    core = make_core()
    (peer,) = remotes(1)
    core.routing.observe_direct(peer.ident.aid, peer.addr, T0)
    msg = start_refresh(core, peer, T0)
    peer.answer(core, msg, dm.FindNodeResp(nodes=(), observed_addr=SEEN_AT), T0 + 0.1)
    assert events(core) == [] and sent(core, T0 + 0.1) == []  # internal: no event
    again = T0 + 0.1 + REFRESH_COOLDOWNS_S[1]  # one futile refresh
    assert core.refresh_buckets(again - EPS, 4) == 0
    msg = start_refresh(core, peer, again)
    peer.answer(core, msg, dm.FindNodeResp(nodes=(), observed_addr=SEEN_AT), again)
    later = again + REFRESH_COOLDOWNS_S[2]  # two in a row
    assert core.refresh_buckets(later - EPS, 4) == 0
    assert core.refresh_buckets(later, 4) == 1


def test_a_refresh_whose_peer_is_silent_ends_at_the_rpc_deadline() -> None:
    core = make_core()
    (peer,) = remotes(1)
    core.routing.observe_direct(peer.ident.aid, peer.addr, T0)
    start_refresh(core, peer, T0)
    core.handle_timer(T0 + RPC - EPS)
    assert core.statistics().rpc_timeouts == 0 and core.get_timer() == T0 + RPC
    core.handle_timer(T0 + RPC)  # one attempt, no resend
    assert sent(core, T0 + RPC) == [] and events(core) == []
    assert core.statistics().rpc_timeouts == 1 and core.get_timer() is None
    again = T0 + RPC + REFRESH_COOLDOWNS_S[1]
    assert core.refresh_buckets(again - EPS, 4) == 0
    assert core.refresh_buckets(again, 4) == 1


# -- path cache ----------------------------------------------------------------------------


def find_through(
    core: DhtCore, near: Remote, holder: Remote, key: NodeId, record: SignedRecord, now: float
) -> list[tuple[dm.Message, _Addr]]:
    """A FIRST lookup: ``near`` (known) names ``holder``, which returns ``record``; returns
    what the core sends once the lookup ended."""
    core.routing.observe_direct(near.ident.aid, near.addr, T0)
    op = core.lookup(key, LookupKind.FIRST, now, rec_type=record.rec_type)
    [(ask, _)] = sent(core, now)
    info = dm.NodeInfo.of(holder.ident.aid, holder.addr)
    near.answer(core, ask, dm.FindValueResp(nodes=(info,), observed_addr=SEEN_AT), now)
    [(ask, addr)] = sent(core, now)
    assert addr == holder.addr
    holder.answer(core, ask, dm.FindValueResp(nodes=(), observed_addr=SEEN_AT, records=(record,)),
                  now)  # fmt: skip
    [done] = events(core)
    assert isinstance(done, ev.LookupFinished) and done.op_id == op and done.records == (record,)
    return sent(core, now)


def test_a_found_topic_record_is_stored_one_hop_back_and_times_out_silently() -> None:
    core = make_core()
    near, holder = far(core, remotes(12))[:2]
    rec = topic_record(7)
    now = T0 + 1
    [(store, addr)] = find_through(core, near, holder, TOPIC_KEY, rec, now)
    assert addr == near.addr and store.body == dm.Store(record=rec, key=TOPIC_KEY)
    assert core.get_timer() == now + RPC
    core.handle_timer(now + RPC - EPS)
    assert core.statistics().rpc_timeouts == 0
    core.handle_timer(now + RPC)
    assert sent(core, now + RPC) == [] and events(core) == []  # one attempt, internal
    assert core.statistics().rpc_timeouts == 1 and core.get_timer() is None


def test_a_sovereign_record_is_path_cached_only_after_its_publisher_pongs() -> None:
    core = make_core()
    near, holder, publisher = far(core, remotes(16))[:3]
    rec = endpoint_record(publisher)
    key = publisher.ident.aid.node_id
    now = T0 + 1
    [(ping, addr)] = find_through(core, near, holder, key, rec, now)
    assert addr == publisher.addr and isinstance(ping.body, dm.Ping)
    impostor = Remote(holder.ident, publisher.addr)  # someone else answers at that address
    impostor.pong(core, ping, now + 0.1)
    assert sent(core, now + 0.1) == [] and core.get_timer() is None  # no STORE
    assert core.statistics().responses_matched == 3

    core = make_core()
    [(ping, _)] = find_through(core, near, holder, key, rec, now)
    publisher.pong(core, ping, now + 0.1)
    [(store, addr)] = sent(core, now + 0.1)
    assert addr == near.addr and store.body == dm.Store(record=rec, key=key)
    near.answer(core, store, dm.StoreResp(stored=True), now + 0.2)
    assert events(core) == [] and core.get_timer() is None


def test_a_silent_publisher_gets_no_path_cached_copy_at_the_ping_deadline() -> None:
    core = make_core()
    near, holder, publisher = far(core, remotes(16))[:3]
    now = T0 + 1
    [(ping, addr)] = find_through(core, near, holder, publisher.ident.aid.node_id,
                                  endpoint_record(publisher), now)  # fmt: skip
    assert addr == publisher.addr and isinstance(ping.body, dm.Ping)
    assert core.get_timer() == now + RPC
    core.handle_timer(now + RPC - EPS)
    assert sent(core, now + RPC - EPS) == []
    core.handle_timer(now + RPC)  # one attempt
    assert sent(core, now + RPC) == [] and events(core) == [] and core.get_timer() is None


# -- cancellation --------------------------------------------------------------------------


def test_cancel_stops_a_ping() -> None:
    core = make_core()
    (peer,) = remotes(1)
    op = core.ping(peer.addr, T0)
    [(msg, _)] = sent(core, T0)
    assert core.cancel(op) and core.get_timer() is None
    peer.pong(core, msg, T0 + 0.1)
    assert events(core) == [] and core.statistics().dropped_unsolicited == 1
    assert core.statistics().cancelled_ops == 1 and not core.cancel(op)


def test_cancel_of_a_joined_bootstrap_leaves_its_self_lookup_running() -> None:
    core = make_core()
    (seed,) = remotes(1)
    boot = core.bootstrap([seed.addr], T0)
    [(ping, _)] = sent(core, T0)
    seed.pong(core, ping, T0 + 0.1)
    assert events(core) == [ev.BootstrapFinished(op_id=boot, ok=True, seeds_answered=1, peers=1)]
    [(find, addr)] = sent(core, T0 + 0.1)  # the self-lookup
    assert addr == seed.addr and find.body == dm.FindNode(target=core.node_id)
    assert not core.cancel(boot) and core.statistics().cancelled_ops == 0
    assert core.get_timer() == T0 + 0.1 + RPC
    core.handle_timer(T0 + 0.1 + RPC)  # the self-lookup ends, then refreshes the bucket
    [(refresh, _)] = sent(core, T0 + 0.1 + RPC)
    assert isinstance(refresh.body, dm.FindNode) and events(core) == []
    assert core.get_timer() == T0 + 0.1 + 2 * RPC


def test_cancel_of_a_bootstrap_retrying_its_seed_stops_the_retry() -> None:
    core = make_core()
    (seed,) = remotes(1)
    boot = core.bootstrap([seed.addr], T0)
    sent(core, T0)
    core.handle_timer(T0 + RPC)
    [(retry, _)] = sent(core, T0 + RPC)  # the second attempt, under a fresh tx_id
    assert core.cancel(boot) and core.get_timer() is None
    seed.pong(core, retry, T0 + RPC + 0.1)
    assert events(core) == [] and core.statistics().dropped_unsolicited == 1
    assert core.get_timer() is None  # (a response does not start maintenance)


def test_a_healthy_bucket_that_declines_is_refreshed_at_once() -> None:
    core = make_core()
    peers = [p for p in remotes(60) if core.routing.bucket_index(p.ident.aid.node_id) == 0]
    half = K // 2
    assert len(peers) > half
    for p in peers[:half]:
        core.routing.observe_direct(p.ident.aid, p.addr, T0)
    assert core.refresh_buckets(T0, 4) == 0  # K/2 verified: healthy
    core.routing.remove(peers[0].ident.aid.node_id)
    assert core.refresh_buckets(T0 + 1, 4) == 1  # declined: due at once, no old backoff
    finds = sent(core, T0 + 1)
    assert finds and all(isinstance(m.body, dm.FindNode) for m, _ in finds)
    assert core.refresh_buckets(T0 + 1, 4) == 0  # being refreshed
