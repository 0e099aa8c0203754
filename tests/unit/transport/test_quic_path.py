"""QUIC connections of a node's one QuicService over another datagram path than its socket
(issue 18: an ICE pair; here an in-memory link), next to a connection on the shared socket:
real handshakes with the nodes' identities, served by their handlers, and kept apart."""

from __future__ import annotations

import socket

import anyio
import anyio.abc
import pytest

from a2al_mcp.config import LimitsConfig
from a2al_mcp.errors import UsageError
from a2al_mcp.transport.budget import TransportCounters
from a2al_mcp.transport.peer import PeerConnection, QuicPath
from a2al_mcp.transport.quic_paths import PathTable, is_path_addr
from a2al_mcp.transport.udp_addr import SendTargets
from tests.unit.ice.quic_over_link import MemoryLink, QuicNode, echo, link_pair, quic_node

pytestmark = pytest.mark.anyio

A_SEEN_AT = ("203.0.113.1", 4000)
"""A's address as B's path reaches it (an ICE pair's remote address)."""
B_SEEN_AT = ("203.0.113.2", 5000)


async def _both_ways(
    a: QuicNode, b: QuicNode, la: MemoryLink, lb: MemoryLink
) -> tuple[PeerConnection, PeerConnection, PeerConnection, QuicPath]:
    """A dials B over the link and over the socket; both are ready. Returns A's path
    connection, A's socket connection, B's path connection and B's path."""
    b_path = b.service.accept_path(lb, remote=A_SEEN_AT, label="memory", on_close=lb.aclose)
    over_path = a.service.dial(a.cert(), b.aid, B_SEEN_AT, path=la, path_label="memory",
                               on_path_close=la.aclose)  # fmt: skip
    over_socket = a.service.dial(a.cert(), b.aid, b.addr)
    await over_path.wait_ready()
    await over_socket.wait_ready()
    accepted = await b_path.wait_connection()
    await accepted.wait_ready()
    return over_path, over_socket, accepted, b_path


async def test_one_service_runs_a_connection_over_a_path_and_one_on_its_socket() -> None:
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as a, quic_node() as b:
            over_path, over_socket, accepted, b_path = await _both_ways(a, b, la, lb)
            async with anyio.create_task_group() as tg:
                replies: dict[str, bytes] = {}

                async def ask(name: str, pc: PeerConnection) -> None:
                    replies[name] = await echo(pc, name.encode())

                tg.start_soon(ask, "path", over_path)
                tg.start_soon(ask, "socket", over_socket)
            assert replies == {"path": b"echo:path", "socket": b"echo:socket"}

            # the same identities both ways, on both paths
            assert over_path.peer_aid == over_socket.peer_aid == b.aid
            assert accepted.peer_aid == a.aid and accepted.local_aid == b.aid
            # the path connections are bound to their paths, known by synthetic addresses
            a_path = over_path.path
            assert a_path is not None and a_path.remote == B_SEEN_AT
            assert a_path.label == "memory"
            assert accepted.path is b_path and b_path.remote == A_SEEN_AT
            assert is_path_addr(over_path.addr) and is_path_addr(accepted.addr)
            assert over_socket.path is None and over_socket.addr == b.addr
            [on_socket] = [pc for pc in b.service.connections() if pc.path is None]
            assert on_socket.addr == a.addr
            # the acceptor reported the path's remote address, never a synthetic one
            assert over_path.peer_control is not None
            assert over_path.peer_control.observed_addr == A_SEEN_AT
            assert over_socket.peer_control is not None
            assert over_socket.peer_control.observed_addr == a.addr

            a_stats, b_stats = a.service.statistics(), b.service.statistics()
            assert (a_stats.paths, b_stats.paths) == (1, 1)
            assert a_stats.connections == b_stats.connections == 2
            assert b_stats.inbound == 2 and b_stats.accepted == 2
            assert a_stats.counters.path_misrouted == b_stats.counters.path_misrouted == 0
            assert la.sent and lb.sent  # the path connection's datagrams went by the link
            path_stats = a_path.statistics()
            assert path_stats.sent == len(la.sent) and path_stats.received > 0
            assert not path_stats.failed and path_stats.core_errors == 0

    # no datagram of the path connection left on a socket: every socket send went to the
    # other node's socket address, and no send was refused (a synthetic address would be)
    for node, other in ((a, b), (b, a)):
        [sock] = node.sockets
        assert sock.sent and {target for _, target in sock.sent} == {other.addr}
        assert node.endpoint.statistics().send_errors == 0
    assert la.released and lb.released  # the paths ended with the services, links released


async def test_datagrams_never_cross_between_the_socket_and_a_path() -> None:
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as a, quic_node() as b:
            over_path, over_socket, accepted, _ = await _both_ways(a, b, la, lb)
            assert await echo(over_path, b"one") == b"echo:one"
            assert await echo(over_socket, b"two") == b"echo:two"
            misrouted = b.service.counters.path_misrouted
            short = [d for d in la.sent if not d[0] & 0x80]  # 1-RTT packets A sent on the path
            assert short
            # replayed from a socket to B's socket: it names B's path connection; dropped
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:
                stray.sendto(short[-1], b.addr)
            # B reads its socket in order: once this exchange is done, the stray was read
            assert await echo(over_socket, b"three") == b"echo:three"
            assert b.service.counters.path_misrouted == misrouted + 1
            # a 1-RTT packet of the socket connection arriving on the path: dropped too
            [sock] = a.sockets
            on_socket = [d for d, _ in sock.sent if not d[0] & 0x80]
            await la.send(on_socket[-1])
            assert await echo(over_path, b"four") == b"echo:four"  # in order on the link
            assert b.service.counters.path_misrouted == misrouted + 2
            # and both connections go on
            assert await echo(over_path, b"five") == b"echo:five"
            assert await echo(over_socket, b"six") == b"echo:six"
            assert not accepted.closed and not over_socket.closed
            assert b.service.counters.connections_failed == 0


async def test_closing_the_path_closes_its_connection_on_both_sides() -> None:
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as a, quic_node() as b:
            over_path, over_socket, accepted, b_path = await _both_ways(a, b, la, lb)
            a_path = over_path.path
            assert a_path is not None
            a_path.close("done with ICE")
            assert over_path.closed  # at once
            await a_path.closed.wait()
            assert la.released
            # the CONNECTION_CLOSE went over the link: B's connection and path end too
            await b_path.closed.wait()
            assert accepted.closed
            assert (a.service.statistics().paths, b.service.statistics().paths) == (0, 0)
            assert a.service.counters.paths_failed == b.service.counters.paths_failed == 0
            # the socket connection is untouched
            assert await echo(over_socket, b"still here") == b"echo:still here"


async def test_a_failing_link_closes_its_connection_and_is_counted() -> None:
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as a, quic_node() as b:
            over_path, over_socket, accepted, b_path = await _both_ways(a, b, la, lb)
            await la.cut()  # the link breaks under both ends
            await b_path.closed.wait()
            assert accepted.closed and accepted.close_reason.startswith("path failed")
            assert b_path.statistics().failed
            assert b.service.counters.paths_failed == 1
            a_path = over_path.path
            assert a_path is not None
            await a_path.closed.wait()
            assert over_path.closed and a.service.counters.paths_failed == 1
            # contained: the socket connection and the services go on
            assert await echo(over_socket, b"after") == b"echo:after"
            assert a.tasks.tasks == b.tasks.tasks == 0


async def test_a_path_connection_whose_stack_raises_is_contained() -> None:
    """A bug in the stack of a connection on a path closes that connection (its last words
    go out on the path, not the socket), is counted, and ends the path; nothing else."""
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as a, quic_node() as b:
            over_path, over_socket, accepted, b_path = await _both_ways(a, b, la, lb)
            a_path = over_path.path
            assert a_path is not None

            def broken(data: bytes, addr: object, now: float) -> None:
                raise RuntimeError("a stack bug")

            over_path.conn.receive_datagram = broken  # type: ignore[method-assign]
            over_path.ping()  # B acknowledges: A's stack raises on the answer
            await a_path.closed.wait()
            assert a.service.counters.connections_failed == 1
            assert over_path.closed and la.released
            await b_path.closed.wait()  # A's CONNECTION_CLOSE reached B over the link
            assert accepted.closed
            assert b.service.counters.paths_failed == 0
            [sock] = a.sockets
            assert {target for _, target in sock.sent} == {b.addr}
            assert a.endpoint.statistics().send_errors == 0
            assert await echo(over_socket, b"unharmed") == b"echo:unharmed"


async def test_an_accepting_path_that_ends_before_a_connection() -> None:
    with link_pair() as (la, lb), anyio.fail_after(10):
        async with quic_node() as b:
            path = b.service.accept_path(lb, on_close=lb.aclose)
            await la.cut()
            with pytest.raises(Exception, match="path ended"):
                await path.wait_connection()
            assert b.service.counters.paths_failed == 1
            assert b.service.statistics().connections == 0


async def test_a_path_carries_one_connection() -> None:
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as a, quic_node() as b:
            over_path, *_ = await _both_ways(a, b, la, lb)
            assert over_path.path is not None
            with pytest.raises(UsageError, match="already carried"):
                a.service.dial(a.cert(), b.aid, B_SEEN_AT, path=over_path.path)
            assert await echo(over_path, b"unharmed") == b"echo:unharmed"
            over_path.path.close()
            await over_path.path.closed.wait()
            with pytest.raises(UsageError, match="is gone"):  # never dialled on the socket
                a.service.dial(a.cert(), b.aid, over_path.path.addr)
            assert a.endpoint.statistics().send_errors == 0


async def test_admission_limits_count_connections_on_paths_and_on_the_socket() -> None:
    """The node's connection limit holds across the socket and its paths: with one
    connection on the socket, an INITIAL arriving on a path is refused, and counted."""
    limits = LimitsConfig(connections=1, connections_per_ip=1)
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as a, quic_node(limits=limits) as b:
            over_socket = a.service.dial(a.cert(), b.aid, b.addr)
            await over_socket.wait_ready()
            b.service.accept_path(lb, remote=A_SEEN_AT, on_close=lb.aclose)
            a.service.dial(a.cert(), b.aid, B_SEEN_AT, path=la, on_path_close=la.aclose)
            await lb.wait_received(2)  # the INITIAL was handled (a second one came)
            counters = b.service.counters
            assert counters.refused_connections >= 1
            assert b.service.statistics().connections == 1
            assert not lb.sent  # nothing answered the refused INITIAL
            assert await echo(over_socket, b"still") == b"echo:still"


async def test_a_retry_goes_back_over_the_path_and_the_handshake_completes() -> None:
    """With more handshakes in progress than ``retry_above_half_open``, a client must
    prove its address: the Retry for an INITIAL that came over a path goes back over it."""
    limits = LimitsConfig(retry_above_half_open=1)
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as a, quic_node(limits=limits) as b:
            # two half-open handshakes on B: INITIALs A sent into the void, replayed to B
            # from a socket that never answers
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as void:
                void.bind(("127.0.0.1", 0))
                for _ in range(2):
                    a.service.dial(a.cert(), b.aid, void.getsockname())
                [sock] = a.sockets
                initials = {}  # the first datagram of each dial, by its DCID
                for data, target in sock.sent:
                    if target == void.getsockname():
                        initials.setdefault(data[6 : 6 + data[5]], data)
                assert len(initials) == 2
                async with await anyio.create_udp_socket(local_host="127.0.0.1") as stray:
                    stray_addr = stray.extra(anyio.abc.SocketAttribute.local_address)
                    for initial in initials.values():
                        await stray.sendto(initial, *b.addr)
                        await stray.receive()  # B answered it: it is half-open
            assert b.service.statistics().half_open == 2
            b_path = b.service.accept_path(lb, remote=A_SEEN_AT, on_close=lb.aclose)
            over_path = a.service.dial(a.cert(), b.aid, B_SEEN_AT, path=la,
                                       on_path_close=la.aclose)  # fmt: skip
            assert await echo(over_path, b"after a retry") == b"echo:after a retry"
            assert b.service.counters.retries_sent >= 1  # one per datagram of the flight
            assert b.service.counters.retry_tokens_invalid == 0
            accepted = await b_path.wait_connection()
            assert accepted.peer_aid == a.aid
            assert b.endpoint.statistics().send_errors == 0
            [b_sock] = b.sockets  # the Retry and the handshake went by the path
            assert {target for _, target in b_sock.sent} == {stray_addr}


def test_synthetic_addresses_are_never_socket_addresses() -> None:
    table: PathTable[object] = PathTable(TransportCounters())
    one, two = table.attach(accept=False), table.attach(accept=True)
    assert one != two and is_path_addr(one) and is_path_addr(two)
    assert not is_path_addr(("127.0.0.1", 0)) and not is_path_addr(("100::1", 1))
    for family in (socket.AF_INET, socket.AF_INET6):  # the socket's sender refuses them
        assert SendTargets(family).target(one) is None


def test_the_path_table_binds_once_bounds_its_queue_and_counts() -> None:
    counters = TransportCounters()
    table: PathTable[str] = PathTable(counters, queue=2)
    addr = table.attach(accept=True)
    assert table.can_accept(addr)
    table.bind(addr, "conn")
    assert table.bound("conn") == addr and not table.can_accept(addr)
    with pytest.raises(UsageError):
        table.bind(addr, "other")
    assert table.queue(addr, b"1") is True  # the first one wakes the driver
    assert table.queue(addr, b"2") is False
    assert table.queue(addr, b"3") is False  # full: dropped
    assert counters.path_dropped_full == 1
    assert table.take(addr) == [b"1", b"2"] and table.take(addr) == []
    table.unbind("conn")
    assert table.bound("conn") is None and not table.can_accept(addr)  # one in its life
    assert table.queue(addr, b"last words") is True  # queued until the path is detached
    assert table.detach(addr) is None
    assert table.queue(addr, b"late") is False and counters.path_misrouted == 1
    with pytest.raises(UsageError):
        table.bind(addr, "conn")
