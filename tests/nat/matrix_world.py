"""The 5×5 NAT matrix world (issue 18): our node and a2ald 0.3.5 in two hosts of every kind.

One NAT testbed with two hosts per kind -- ``pub1``/``pub2`` public, ``cone1``/``cone2`` full
cone (EIM + EIF), ``prc1``/``prc2`` port-restricted (EIM + APDF), ``sym1``/``sym2`` symmetric
(EDM), ``upnp1``/``upnp2`` behind two UPnP IGDv1 routers -- plus ``pub3`` (a third seed, so
natsense sees three reporters on three addresses) and coturn. A cell ``X→Y`` dials from the
first host of kind X to the second of kind Y (diagonal: X1→X2, two routers of one kind; as
the shared testbed's README §3.3 does).

In every one of those ten hosts run, side by side behind the same router, one node of ours
(UDP/QUIC :data:`OURS_PORT`; in-process, on an event loop in a thread inside the host, see
:class:`~tests.nat.interop_hosts.HostLoop`) and one a2ald (:data:`A2ALD_PORT`, started only
through ``NatTestbed.a2ald_launch``). Ours on ``pub1``/``pub2`` serve a hub (``/signal``,
``/ice``) on TCP :data:`OURS_PORT`, a2ald there embeds its own on :data:`A2ALD_PORT`; ours
behind a NAT register with our two hubs (``[signal] hubs``), use coturn for STUN and as ICE's
STUN/TURN server (``[ice]``) and UPnP behind the UPnP routers; a2ald uses the testbed's
config (coturn for ICE and TURN, its derived hubs) and its compiled-in STUN names resolve to
coturn inside the testbed (:meth:`NatTestbed.resolve_a2ald_stun_names`; without that a2ald
behind the symmetric NAT cannot publish, README D8).

Every node of ours serves HTTP on its node AID (``GET /big``: :data:`BIG_BYTES` bytes, else a
line naming the host) and has a delegated agent registered under a topic; every a2ald has an
agent registered under a topic whose ``service_tcp`` is a small HTTP server on the host's
loopback. A cold fetch (:meth:`World.cold_fetch`) reads the target's record first (DHT
traffic), then flushes the UDP conntrack state between the two hosts on both routers (the
testbed's ``--flush-ct``), then times the fetch to its response (time-to-first-byte: the
record is cached, the body is small), then a warm fetch on the pooled connection.

Used by tests/nat/test_nat_matrix.py and benchmarks/bench_nat_matrix.py.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import re
import statistics
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import anyio

from a2al_mcp import Aid, DelegatedIdentity, Identity, NodeConfig, SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import NotFound
from a2al_mcp.node import Node
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.node.status import ResolvedEndpoint
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.testing.a2ald import A2aldApiError, A2aldPeer
from a2al_mcp.testing.nat_testbed import NatTestbed
from tests.nat.interop_a2ald import A2aldAgent, make_agent, stopping
from tests.nat.interop_hosts import HostLoop, HttpBackend
from tests.nat.test_nat_interop import publish_when_known

__all__ = [
    "CELLS",
    "HOSTS",
    "KINDS",
    "PAIRS",
    "CellResult",
    "World",
    "cell_hosts",
    "cell_id",
    "matrix_world",
]

CLOCK: Final = SystemClock()
OURS_PORT: Final = 4121
A2ALD_PORT: Final = 4122
API_PORT: Final = 2121
BACKEND_PORT: Final = 8080
BIG_BYTES: Final = 3 * 1024 * 1024
"""The body of ``GET /big`` (under the fetch's 4 MiB limit): the throughput fetch."""
FETCH_S: Final = 15.0
"""Deadline of one fetch (a2ald's slowest cell in the shared testbed: 4.0 s, TURN)."""
READY_S: Final = 60.0
A2ALD_RECORD_S: Final = 300.0
RECORD_RETRY_S: Final = 30.0
"""However late in the run a cell comes, the dialer looks for the target's record this long."""
"""a2ald names its hubs in its records only at a later republish (its node record at its 60 s
endpoint watch, README §3.1; its agents' records took 150-300 s here): a dial of ours into
a2ald behind a NAT waits up to this long after the world started for that record."""

KINDS: Final = ("public", "cone", "prc", "sym", "upnp")
PAIRS: Final = {
    "public": ("pub1", "pub2"),
    "cone": ("cone1", "cone2"),
    "prc": ("prc1", "prc2"),
    "sym": ("sym1", "sym2"),
    "upnp": ("upnp1", "upnp2"),
}
"""Kind -> (its dialer host, its target host)."""
TESTBED_KIND: Final = {"public": "public", "cone": "cone", "prc": "prc", "sym": "sym",
                       "upnp": "upnp-igdv1"}  # fmt: skip
HOSTS: Final = {
    **{h: TESTBED_KIND[k] for k, pair in PAIRS.items() for h in pair},
    "pub3": "public",
}
MATRIX_HOSTS: Final = tuple(h for pair in PAIRS.values() for h in pair)
HUB_HOSTS: Final = ("pub1", "pub2")
SEED_HOSTS: Final = ("pub1", "pub2", "pub3")
OURS_NAT_TYPE: Final = {"public": 1, "cone": 1, "prc": 3, "sym": 4, "upnp": 1}
"""What our node publishes behind each kind (issue 17; the UPnP host holds a mapping)."""
CELLS: Final = tuple((a, b) for a in KINDS for b in KINDS)


def cell_hosts(dialer_kind: str, target_kind: str) -> tuple[str, str]:
    """The two hosts of a cell: the first host of the dialer's kind, the second of the
    target's (X→X is X1→X2)."""
    return PAIRS[dialer_kind][0], PAIRS[target_kind][1]


def cell_id(cell: tuple[str, str]) -> str:
    return f"{cell[0]}-{cell[1]}"


def kind_of(host: str) -> str:
    return next(k for k, pair in PAIRS.items() if host in pair)


def topic(impl: str, host: str) -> str:
    return f"nat.matrix.{impl}.{host}"


def body_of(impl: str, host: str) -> bytes:
    return f"hello from {impl} on {host}".encode()


def hubs_of(rec: ResolvedEndpoint) -> tuple[str, ...]:
    """The hubs an endpoint record names (``signal`` and ``signals``)."""
    payload = EndpointPayload.from_bytes(rec.record.payload)
    return tuple(dict.fromkeys((*((payload.signal,) if payload.signal else ()),
                                *payload.signals)))  # fmt: skip


# -- results


@dataclasses.dataclass
class CellResult:
    """One cold fetch (and the warm one after it)."""

    dialer_impl: str
    target_impl: str
    dialer: str
    target: str
    ok: bool
    cold_s: float | None = None
    warm_s: float | None = None
    path: str = ""
    """ours: the path kind (direct, punched, ice, relay...) and address; a2ald: from its log."""
    tries: str = ""
    target_nat_type: int | None = None
    target_hubs: int | None = None
    """Hubs the target's record names as the dialer read it (None: a2ald does not say)."""
    error: str = ""
    bytes_per_s: float | None = None

    @property
    def cell(self) -> str:
        return f"{kind_of(self.dialer)}→{kind_of(self.target)}"

    def describe(self) -> str:
        times = (f"cold {self.cold_s * 1000:.0f} ms" if self.cold_s is not None else "no cold") + (
            f", warm {self.warm_s * 1000:.0f} ms" if self.warm_s is not None else ""
        )
        return (f"{self.dialer_impl}({self.dialer}) -> {self.target_impl}({self.target}): "
                f"{'ok' if self.ok else 'FAILED'} {times}; path {self.path or '?'}; target "
                f"record nat_type {self.target_nat_type}, hubs {self.target_hubs}; tried "
                f"{self.tries or '-'}{'; error: ' + self.error if self.error else ''}")  # fmt: skip


# -- a2ald's path, from its debug log (the lines the shared testbed's measure.py classifies by)

_A2ALD_PATHS: Final = (  # its text log: msg="..." key=value ...
    (re.compile(r'msg="ice pair selected".*\brelayed=true'), "relay"),
    (re.compile(r'msg="connpool: connection cached".*\bis_relayed=true'), "relay"),
    (re.compile(r'msg="(quic dial over punch ok|punch: connection established)'), "punched"),
    (re.compile(r'msg="quic dial over ice ok"'), "ice"),
    (re.compile(r'msg="connpool: connection cached"'), "direct"),
)


def a2ald_path(log: str) -> str:
    """The path of a2ald's dial from its log lines in the fetch's window (as the shared
    testbed's measure.py classifies them)."""
    for pattern, kind in _A2ALD_PATHS:
        if pattern.search(log):
            return kind
    return "?"


# -- the world


@dataclasses.dataclass
class World:
    tb: NatTestbed
    loops: dict[str, HostLoop]
    ours: dict[str, Node]
    ours_agents: dict[str, Identity]
    a2ald: dict[str, A2aldPeer]
    a2ald_agents: dict[str, A2aldAgent]
    hubs: tuple[str, ...]
    started: float
    notes: list[str]
    """What was not as expected when the world came up (printed with the results)."""
    results: list[CellResult] = dataclasses.field(default_factory=list)

    def on(self, host: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run ``fn`` on the event loop of our node in ``host``."""
        return self.loops[host].call(functools.partial(fn, *args, **kw))

    def target_aid(self, impl: str, host: str) -> Aid:
        """What a fetch addresses: our node's AID, or a2ald's agent (its service_tcp)."""
        if impl == "ours":
            return self.ours[host].aid
        return Aid.from_str(self.a2ald_agents[host].aid)

    # ---- a cold fetch, then a warm one

    def cold_fetch(
        self, dialer_impl: str, target_impl: str, dialer: str, target: str, *, warm: int = 1,
        republish: bool = False,
    ) -> CellResult:  # fmt: skip
        """The cold fetch, then ``warm`` fetches on the pooled connection (``warm_s``: their
        median). ``republish``: an a2ald target publishes its agent's record again first
        (the benchmark times dials, not how long a2ald's records stay findable)."""
        aid = self.target_aid(target_impl, target)
        result = CellResult(dialer_impl, target_impl, dialer, target, ok=False)
        try:
            if republish and target_impl == "a2ald":
                self.a2ald[target].publish_agent(str(aid))
            if dialer_impl == "ours":
                self._ours_cold(result, aid, warm)
            else:
                self._a2ald_cold(result, aid, warm)
        except Exception as exc:  # recorded: the cell fails with it, the matrix goes on
            result.error = _exc_text(exc)
        self.results.append(result)
        return result

    def _target_record(self, result: CellResult, rec: ResolvedEndpoint | dict[str, Any]) -> None:
        if isinstance(rec, dict):
            result.target_nat_type = int(rec.get("nat_type") or 0)  # its resolve names no hubs
        else:
            result.target_nat_type = rec.nat_type
            result.target_hubs = len(hubs_of(rec))

    def _ours_cold(self, result: CellResult, aid: Aid, warm: int) -> None:
        node = self.ours[result.dialer]
        rec = self.on(result.dialer, self._record_for_dial, node, aid, result.target_impl)
        self._target_record(result, rec)
        self.tb.conntrack_flush_between(result.dialer, result.target)
        if self.on(result.dialer, node.connection_path, aid) is not None:
            result.tries = "a connection was pooled before the cold dial"
        started = CLOCK.monotonic()
        try:
            response: HttpResponse = self.on(result.dialer, node.fetch, aid, "GET", "/",
                                             timeout_s=FETCH_S)  # fmt: skip
        finally:
            tries = self.on(result.dialer, node.dial_tries, aid)
            result.tries = ", ".join(t.describe() for t in tries) or result.tries
        result.cold_s = CLOCK.monotonic() - started
        used = self.on(result.dialer, node.connection_path, aid)
        result.path = f"{used.kind} {used.addr[0]}:{used.addr[1]}" if used else "?"
        self._check(result, response.status, response.body)
        times = []
        for _ in range(warm):
            started = CLOCK.monotonic()
            again: HttpResponse = self.on(result.dialer, node.fetch, aid, "GET", "/",
                                          timeout_s=FETCH_S)  # fmt: skip
            times.append(CLOCK.monotonic() - started)
            self._check(result, again.status, again.body)
        result.warm_s = statistics.median(times) if times else None

    async def _record_for_dial(self, node: Node, aid: Aid, target_impl: str) -> ResolvedEndpoint:
        """The target's record, read before the flush (it is DHT traffic, README P6); for a2ald
        behind a NAT, once it names its hubs (its 60 s republish)."""
        deadline = self.started + A2ALD_RECORD_S if target_impl == "a2ald" else 0.0
        # a record may be missing for a moment whenever asked (a replica behind a NAT whose
        # pinhole the last flush closed): every cell gets RECORD_RETRY_S to find it
        floor = CLOCK.monotonic() + RECORD_RETRY_S
        last: ResolvedEndpoint | None = None
        while True:
            with contextlib.suppress(NotFound):
                last = await node.resolve(aid)
                if hubs_of(last) or last.nat_type == 1 or CLOCK.monotonic() >= deadline:
                    return last
            if CLOCK.monotonic() >= max(deadline, self.started + READY_S, floor):
                if last is None:
                    raise NotFound(f"no record of {aid}")
                return last
            await anyio.sleep(0.5)

    def _a2ald_cold(self, result: CellResult, aid: Aid, warm: int) -> None:
        peer = self.a2ald[result.dialer]
        with contextlib.suppress(A2aldApiError):
            self._target_record(result, peer.resolve(str(aid)))
        self.tb.conntrack_flush_between(result.dialer, result.target)
        log_from = _size(peer.log_path)
        started = CLOCK.monotonic()
        got = self._a2ald_fetch(peer, aid)
        result.cold_s = CLOCK.monotonic() - started
        result.path = a2ald_path(_read_from(peer.log_path, log_from))
        self._check(result, int(got.get("status") or 0), base64.b64decode(got.get("body") or ""))
        times = []
        for _ in range(warm):
            started = CLOCK.monotonic()
            again = self._a2ald_fetch(peer, aid)
            times.append(CLOCK.monotonic() - started)
            body = base64.b64decode(again.get("body") or "")
            self._check(result, int(again.get("status") or 0), body)
        result.warm_s = statistics.median(times) if times else None

    @staticmethod
    def _a2ald_fetch(peer: A2aldPeer, aid: Aid) -> dict[str, Any]:
        got: dict[str, Any] = peer.post(f"/fetch/{aid}", {"method": "GET", "path": "/",
                                                          "body_base64": ""},
                                        timeout=FETCH_S)  # fmt: skip
        return got

    def _check(self, result: CellResult, status: int, body: bytes) -> None:
        want = body_of(result.target_impl, result.target)
        big = result.target_impl == "ours" and len(body) == BIG_BYTES
        if status != 200 or not (body == want or big):
            result.ok = False
            result.error = f"HTTP {status}, body {body[:80]!r} (want {want!r})"
            return
        result.ok = not result.error  # a failed fetch before stays failed

    # ---- throughput of a larger fetch on a pooled connection

    def throughput(self, dialer: str, target: str) -> CellResult:
        """``GET /big`` from ours on ``dialer`` to ours on ``target`` on the connection the
        cell's cold fetch left (bytes per second of the whole exchange)."""
        aid = self.ours[target].aid
        node = self.ours[dialer]
        result = CellResult("ours", "ours", dialer, target, ok=False)
        try:
            started = CLOCK.monotonic()
            response = self.on(dialer, node.fetch, aid, "GET", "/big", timeout_s=60.0)
            took = CLOCK.monotonic() - started
            self._check(result, response.status, response.body)
            result.warm_s = took
            result.bytes_per_s = len(response.body) / took
            used = self.on(dialer, node.connection_path, aid)
            result.path = f"{used.kind} {used.addr[0]}:{used.addr[1]}" if used else "?"
        except Exception as exc:  # recorded, as in cold_fetch
            result.error = _exc_text(exc)
        return result


def _exc_text(exc: BaseException) -> str:
    """An exception and, for a group, its leaves (what a failed dial raised, in one line)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_exc_text(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# -- building it


def our_config(tb: NatTestbed, host: str, seeds: list[str], hubs: tuple[str, ...]) -> NodeConfig:
    """Our node in ``host``: STUN, ICE's STUN/TURN (coturn), UPnP behind a UPnP router, hubs
    (a NATed node registers with ours on pub1/pub2; those two serve them)."""
    plan = tb.host(host)
    stun = "{}:{}".format(*tb.stun)
    public = plan.router is None
    turn = [{"url": url, "username": user, "credential": cred}
            for url, user, cred in tb.turn_servers]  # fmt: skip
    return NodeConfig.from_mapping({
        "listen_addr": f"{plan.addr}:{OURS_PORT}" if public else f"0.0.0.0:{OURS_PORT}",
        "bootstrap": seeds,
        "nat": {"stun_servers": [stun], "upnp": plan.kind.startswith("upnp")},
        "signal": {"hubs": [] if public else list(hubs),
                   "serve_hub": "on" if host in HUB_HOSTS else "off"},
        "ice": {"stun_urls": [f"stun:{stun}"], "turn_servers": turn},
    })  # fmt: skip


def _http(host: str) -> Callable[[HttpRequest], Any]:
    small = body_of("ours", host)
    big = bytes(BIG_BYTES)

    async def handler(req: HttpRequest) -> HttpResponse:
        body = big if req.path == "/big" else small
        return HttpResponse(200, (("content-type", "application/octet-stream"),), body)

    return handler


async def _ready(node: Node, hubs: tuple[str, ...]) -> None:
    """Registered with every hub it was given, and an address known (or symmetric: none)."""
    with anyio.fail_after(READY_S):
        while hubs and set(node.signal_hubs()) != set(hubs):  # noqa: ASYNC110
            await anyio.sleep(0.1)


async def _published(reader: Node, aid: Aid, nat_type: int, hubs: bool) -> str:
    """Wait (at most :data:`READY_S`) until ``aid``'s record, as ``reader`` finds it, says
    ``nat_type`` (and names a hub); "" then, else what was found instead."""
    last = "nothing"
    with anyio.move_on_after(READY_S):
        while True:
            try:
                got = await reader.resolve(aid)
            except NotFound as exc:
                last = repr(exc)
            else:
                if got.nat_type == nat_type and (hubs_of(got) or not hubs):
                    return ""
                last = f"seq {got.seq}, nat_type {got.nat_type}, hubs {hubs_of(got)}"
            await anyio.sleep(0.3)
    return f"its record never said nat_type {nat_type}{' with a hub' if hubs else ''}: {last}"


@contextlib.contextmanager
def matrix_world(tb: NatTestbed, base: Path, *, a2ald_log: str = "debug") -> Iterator[World]:
    """Everything up (ours and a2ald in every matrix host, agents published); torn down on
    exit (a2ald first, then our nodes, then the loops)."""
    tb.prove_sealed()
    tb.resolve_a2ald_stun_names()
    started = CLOCK.monotonic()
    with contextlib.ExitStack() as stack:
        loops = {h: stack.enter_context(HostLoop(tb, h)) for h in HOSTS}
        ours: dict[str, Node] = {}
        seeds: list[str] = []
        for host in SEED_HOSTS:
            ours[host] = loops[host].enter(Node(our_config(tb, host, list(seeds), ()),
                                                auto_publish=True))  # fmt: skip
            seeds.append(f"{tb.addr(host)}:{OURS_PORT}")
        hubs = tuple(f"ws://{tb.addr(h)}:{OURS_PORT}" for h in HUB_HOSTS)
        for host in MATRIX_HOSTS:
            stack.enter_context(HttpBackend(tb, host, BACKEND_PORT, body_of("a2ald", host)))
        a2ald = {h: A2aldPeer(base / h, udp_port=A2ALD_PORT, api_port=API_PORT,
                              bootstrap=[f"{tb.addr(p)}:{A2ALD_PORT}" for p in HUB_HOSTS
                                         if p != h] + seeds,
                              launch=tb.a2ald_launch(h), name=f"a2ald-{h}", log_level=a2ald_log)
                 for h in MATRIX_HOSTS}  # fmt: skip
        stack.enter_context(stopping(list(a2ald.values())))
        for host in HUB_HOSTS:
            a2ald[host].start()
        for host in MATRIX_HOSTS:
            if host not in HUB_HOSTS:
                ours[host] = loops[host].enter(Node(our_config(tb, host, seeds, hubs),
                                                    auto_publish=True))  # fmt: skip
                a2ald[host].start()
        ours_agents: dict[str, Identity] = {}
        for host in MATRIX_HOSTS:
            node = ours[host]
            loops[host].call(functools.partial(node.serve, http=_http(host)))
            ours_agents[host] = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            loops[host].call(node.add_identity, ours_agents[host])
        for peer in a2ald.values():
            peer.wait_ready(READY_S, require_peers=True)
        with ThreadPoolExecutor(len(MATRIX_HOSTS)) as pool:
            jobs = {h: pool.submit(make_agent, a2ald[h], topic("a2ald", h),
                                   service_tcp=f"127.0.0.1:{BACKEND_PORT}", timeout=READY_S)
                    for h in MATRIX_HOSTS}  # fmt: skip
            nat_hosts = [h for h in MATRIX_HOSTS if tb.host(h).router is not None]
            for host in nat_hosts:
                loops[host].call(_ready, ours[host], hubs)
            for host in MATRIX_HOSTS:
                node, aid = ours[host], ours_agents[host].aid
                loops[host].call(publish_when_known, node, aid)
                loops[host].call(functools.partial(node.register_service, topic("ours", host),
                                                   name=f"ours-{host}", protocols=["mcp"],
                                                   aid=aid))  # fmt: skip
            reader = ours["pub3"]
            notes: list[str] = []
            for host in MATRIX_HOSTS:
                want = OURS_NAT_TYPE[kind_of(host)]
                # a node reachable directly (nat_type 1) need not name a hub; not fatal here:
                # the cells into it and test_resolve_from_and_to_every_kind show what follows
                short = loops["pub3"].call(_published, reader, ours[host].aid, want, want != 1)
                if short:
                    view = loops[host].call(ours[host].status).nat
                    notes.append(
                        f"ours on {host} as pub3 reads it after {READY_S:.0f} s: {short}; its "
                        f"own view: nat_type {view.nat_type}, {view.published_endpoints}, "
                        f"mapping {view.upnp_mapping}"
                    )
            a2ald_agents = {h: job.result(timeout=READY_S * 2) for h, job in jobs.items()}
        yield World(tb, loops, ours, ours_agents, a2ald, a2ald_agents, hubs, started, notes)
