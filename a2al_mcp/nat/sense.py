"""NatSense: where the node stands behind (or without) a NAT, as a sans-I/O state machine.

Shape (as :class:`~a2al_mcp.dht.core.DhtCore`): the node calls an input method with ``now``
(monotonic seconds), then drains :meth:`NatSense.effects` and re-reads :meth:`NatSense.get_timer`;
when that time passes it calls :meth:`NatSense.handle_timer`. Nothing here reads a clock, opens
a socket or draws global randomness (the :class:`~a2al_mcp._random.Rng` is injected).

Inputs:

* :meth:`start` — once, when the socket is up: STUN test I to every configured server now.
* :meth:`set_local` — the addresses our shared socket answers on (bound address; for a wildcard
  bind the interface or outbound-route addresses), with the local port. A change is a network
  change: votes, STUN results and tests are forgotten and rerun.
* :meth:`observe` — a vote: a reporter's node ID (or agent AID) and the address it sees us at
  (PONG / FIND_*_RESP ``observed_addr``, stream-0 ObservedAddr).
* :meth:`stun_datagram` — a datagram the demux classified as STUN.
* :meth:`probe_echoed` / :meth:`probe_requested` — NAT_PROBE_ECHO and NAT_PROBE_REQ arrivals.
* :meth:`offer_peers` — DHT peers (their addresses) the NAT probe may ask.
* :meth:`set_upnp` — the gateway mapping the port-mapping driver holds (or None).

Effects: :class:`SendStun`, :class:`SendProbeRequest`, :class:`SendProbeEcho` and
:class:`ViewChanged` (when the NAT type, external addresses, the public flag or the UPnP
mapping change — republish at once).

Classification (``nat_type``, on IPv4 evidence, IPv6 when there is none):

1. public — a local address is a plausible WAN IP and no peer or STUN server sees another ⇒ 1;
2. the RFC 5780 mapping test (:mod:`a2al_mcp.nat.behaviour`) finds a destination-dependent
   mapping, or two STUN servers on different IPs see different ports ⇒ 4;
3. votes: ≥ 3 ports for one IP and no port held by a majority (:mod:`a2al_mcp.nat.votes`),
   unless the mapping test proved it endpoint-independent ⇒ 4;
4. endpoint-independent mapping proven and the filtering test answered from the other IP ⇒ 1,
   from the other port only ⇒ 2;
5. any other sign of a NAT (an observed or STUN address that is not ours) ⇒ 3: honest, and a
   dialer goes hub + punch at once instead of failing a direct try first;
6. peers see exactly our own (non-WAN) address, a LAN or loopback network ⇒ 1 (not ``public``);
7. no evidence at all ⇒ 0.

``nat_type`` is the NAT's own behaviour: a gateway mapping (:meth:`set_upnp`) does not change
it; it shows in :attr:`NatView.upnp` and :attr:`NatView.direct`, and the node publishes 1 while
it holds one (anyone reaches the mapped port). The NAT probe only sets
:attr:`NatView.reachable` (testbed D5: its echo comes from peers in contact, so it cannot tell
full cone from port-restricted).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._dataclass import dataclass
from .._types import Addr
from .addresses import is_plausible_wan, is_v4, normalise
from .behaviour import Behaviour, BehaviourTest, Filtering, Mapping, StunAsk
from .config import NatSenseConfig
from .effects import NatEffect, SendProbeEcho, SendProbeRequest, SendStun, ViewChanged
from .probe import TOKEN_LEN, ProbeRequester, ProbeResponder, ProbeStats
from .stun import StunAnswer, StunClient, StunStats
from .types import NatType, NatView
from .votes import VoteTable

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["BINDING", "NatSense", "NatStats"]

BINDING = "binding"
"""Purpose label of a plain Binding (test I)."""


@dataclass(frozen=True, slots=True)
class NatStats:
    """Counters of :class:`NatSense`."""

    votes: int
    """Live votes."""
    votes_flooded: int
    """Votes forgotten because the table was full."""
    stun: StunStats
    probe: ProbeStats
    behaviour_runs: int
    network_changes: int


@dataclass(slots=True)
class _Reflected:
    mapped: Addr
    other: Addr | None
    at: float


class NatSense:
    """Votes, STUN and NAT probes in; the node's :class:`NatView` and what to send out."""

    def __init__(self, config: NatSenseConfig | None = None, *, rng: Rng) -> None:
        self.config = cfg = config or NatSenseConfig()
        self._rng = rng
        self._votes = VoteTable(cfg)
        self._stun = StunClient(rng, rto_s=cfg.stun_rto_s, tries=cfg.stun_tries,
                                max_pending=cfg.stun_max_pending)  # fmt: skip
        self._probe_stats = ProbeStats()
        self._requester = ProbeRequester(rng, cfg, self._probe_stats)
        self._responder = ProbeResponder(cfg, self._probe_stats)
        self._local: tuple[Addr, ...] = ()
        self._reflected: dict[Addr, _Reflected] = {}
        """Per STUN server: its last test I answer."""
        self._test: BehaviourTest | None = None
        self._behaviour: Behaviour | None = None
        self._behaviour_wanted = True
        self._candidates: OrderedDict[Addr, None] = OrderedDict()
        self._upnp: Addr | None = None
        self._reachable: bool | None = None
        self._started = False
        self._next_stun: float | None = None
        self._next_behaviour: float | None = None
        self._next_probe: float | None = None
        self._probe_wanted = False
        self._behaviour_runs = 0
        self._network_changes = 0
        self._last_change = float("-inf")
        self._view = NatView()
        self._out: list[NatEffect] = []

    # == inputs ========================================================================

    def start(self, now: float) -> None:
        """Begin: STUN test I to every configured server and a NAT probe as soon as there is
        an address to claim and peers to ask."""
        if self._started:
            return
        self._started = True
        self._probe_wanted = True
        self._binding_round(now)
        self._settle(now)

    def set_local(self, addrs: Iterable[Addr], now: float) -> None:
        """The addresses our socket answers on. A change forgets every result (a new
        network) and reruns STUN, the behaviour tests and the probe."""
        local = tuple(dict.fromkeys(normalise(a) for a in addrs))
        if local == self._local:
            return
        first = not self._local
        self._local = local
        if not first:
            self._network_changed(now)
        self._settle(now)

    def observe(self, reporter: bytes, addr: Addr, now: float) -> None:
        """A peer (``reporter``: its node ID or AID bytes) sees us at ``addr``."""
        expired = self._votes.expire(now)
        if not self._votes.add(bytes(reporter), addr, now) and not expired:
            return  # the steady state: a peer repeats what it said (nothing to recompute)
        before = next((a[0] for a in self._view.observed if is_v4(a[0])), None)
        after = self._primary_ip()
        if (
            before is not None
            and after is not None
            and after != before
            and now >= self._last_change + self.config.rerun_min_interval_s
        ):
            self._network_changed(now, keep_votes=True)
        self._settle(now)

    def stun_datagram(self, data: bytes, source: Addr, now: float) -> None:
        """A datagram the shared socket's demux classified as STUN (a2al-wire §4.1)."""
        answer = self._stun.receive(data, source, now)
        if answer is not None:
            self._on_stun_answer(answer, now)
        self._settle(now)

    def probe_echoed(self, token: bytes, source: Addr, now: float) -> None:
        """A NAT_PROBE_ECHO arrived (``DhtCore``'s ``NatProbeEchoed``)."""
        if self._requester.echo(bytes(token), now):
            self._reachable = True
        self._settle(now)

    def probe_requested(self, source: Addr, token: bytes, claimed: Addr, now: float) -> bool:
        """A peer at ``source`` asks for an echo to ``claimed`` (``NatProbeRequested``).
        Queues :class:`SendProbeEcho` and returns True when allowed; False when refused
        (claimed IP is not the source IP, or a rate limit; counted in :meth:`statistics`)."""
        if len(token) != TOKEN_LEN or not self._responder.allow(source, claimed, now):
            return False
        self._out.append(SendProbeEcho(normalise(claimed), bytes(token)))
        return True

    def offer_peers(self, peers: Iterable[Addr], now: float) -> None:
        """DHT peers the NAT probe may ask (only those with a public IPv4 are used)."""
        for addr in peers:
            a = normalise(addr)
            self._candidates.pop(a, None)
            self._candidates[a] = None
        while len(self._candidates) > self.config.probe_candidates_max:
            self._candidates.popitem(last=False)
        self._settle(now)

    def set_upnp(self, mapping: Addr | None, now: float) -> None:
        """The port mapping the gateway granted (None: none or lost)."""
        self._upnp = normalise(mapping) if mapping is not None else None
        self._settle(now)

    def handle_timer(self, now: float) -> None:
        """Retransmit, time out and rerun whatever is due at ``now``."""
        for t in self._stun.handle_timer(now):
            if t.purpose == BINDING:
                self._reflected.pop(t.server, None)
            elif self._test is not None:
                self._run_asks(self._test.on_timeout(t.purpose), now)
        result = self._requester.handle_timer(now)
        if result is not None:
            self._reachable = result
        if self._next_stun is not None and self._next_stun <= now:
            self._binding_round(now)
        if self._next_behaviour is not None and self._next_behaviour <= now:
            self._next_behaviour = None
            self._behaviour_wanted = True
            self._binding_round(now)
        if self._next_probe is not None and self._next_probe <= now:
            self._next_probe = None
            self._probe_wanted = True
        self._votes.expire(now)
        self._settle(now)

    # == outputs =======================================================================

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next needed (None: nothing scheduled)."""
        times = (self._stun.get_timer(), self._requester.get_timer(), self._next_stun,
                 self._next_behaviour, self._next_probe, self._votes.next_expiry())  # fmt: skip
        return min((t for t in times if t is not None), default=None)

    @property
    def settling(self) -> bool:
        """A STUN test is under way whose answer may change the view (the first publish of
        a node may wait a moment for it rather than carry a type that is about to change)."""
        return self._test is not None or self._stun.pending() > 0

    def effects(self) -> list[NatEffect]:
        """Take the queued effects, in order."""
        out, self._out = self._out, []
        return out

    @property
    def view(self) -> NatView:
        return self._view

    def statistics(self) -> NatStats:
        return NatStats(votes=len(self._votes), votes_flooded=self._votes.flooded,
                        stun=dataclasses.replace(self._stun.stats),
                        probe=dataclasses.replace(self._probe_stats),
                        behaviour_runs=self._behaviour_runs,
                        network_changes=self._network_changes)  # fmt: skip

    # == internals: STUN ===============================================================

    def _binding_round(self, now: float) -> None:
        servers = self.config.stun_servers
        self._next_stun = now + self.config.stun_refresh_s if servers else None
        for server in servers:
            self._stun.request(normalise(server), now, purpose=BINDING)

    def _on_stun_answer(self, answer: StunAnswer, now: float) -> None:
        if answer.purpose == BINDING:
            if answer.mapped is None:
                self._reflected.pop(answer.server, None)
                return
            self._reflected[answer.server] = _Reflected(answer.mapped, answer.other, now)
            if self._behaviour_wanted and self._test is None and answer.other is not None:
                self._behaviour_wanted = False
                self._behaviour_runs += 1
                self._test = BehaviourTest(answer.server, answer.mapped, answer.other)
                self._run_asks(self._test.start(), now)
            return
        if self._test is not None:
            self._run_asks(self._test.on_answer(answer), now)

    def _run_asks(self, asks: list[StunAsk], now: float) -> None:
        test = self._test
        for ask in asks:
            self._stun.request(ask.server, now, purpose=ask.purpose, change=ask.change)
        if test is not None and test.done:
            self._behaviour = test.result
            self._test = None
            self._next_behaviour = now + self.config.behaviour_refresh_s

    # == internals: state ==============================================================

    def _network_changed(self, now: float, *, keep_votes: bool = False) -> None:
        self._network_changes += 1
        self._last_change = now
        if not keep_votes:
            self._votes.clear()
        self._reflected.clear()
        self._stun.cancel_all()
        self._test = None
        self._behaviour = None
        self._behaviour_wanted = True
        self._reachable = None
        self._requester.stop()
        if self._started:
            self._probe_wanted = True
            self._binding_round(now)

    def _primary_ip(self) -> str | None:
        trusted = self._votes.trusted(True, _wan)
        return trusted[0][0][0] if trusted else None

    def _claim(self) -> Addr | None:
        """The IPv4 address a NAT probe claims: trusted consensus, else STUN."""
        if self._view.nat_type is NatType.SYMMETRIC:
            return None
        v4 = self._view.external_v4
        return v4[0] if v4 else None

    def _settle(self, now: float) -> None:
        """After every input: recompute the view, start a due probe, flush the sends."""
        view = self._conclude()
        old = self._view
        self._view = view
        if (view.nat_type, view.external, view.public, view.upnp) != (
            old.nat_type,
            old.external,
            old.public,
            old.upnp,
        ):
            self._out.append(ViewChanged(view, old))
        if self._probe_wanted and not self._requester.running:
            claimed = self._claim()
            if claimed is not None and self._candidates:
                sends = self._requester.start(self._candidates, claimed, now)
                if sends:
                    self._probe_wanted = False
                    self._next_probe = now + self.config.probe_interval_s
                    self._out.extend(SendProbeRequest(peer, token, claimed)
                                     for peer, token in sends)  # fmt: skip
        self._out.extend(SendStun(data, addr) for data, addr in self._stun.datagrams())

    def _conclude(self) -> NatView:
        local = self._local
        evidence: list[str] = []
        reflected = sorted(self._reflected.items(), key=lambda kv: -kv[1].at)
        stun_addrs = tuple(dict.fromkeys(r.mapped for _, r in reflected))
        for server, r in reflected:
            evidence.append(f"STUN {_fmt(server)} sees {_fmt(r.mapped)}")
        families = [self._family(v4, local, evidence) for v4 in (True, False)]
        chosen = next((f for f in families if f[0] is not NatType.UNKNOWN), families[0])
        nat_type, public = chosen[0], chosen[1]
        external: list[Addr] = []
        for _, _, addrs, _ in families:
            external.extend(addrs)
        external_ips = [ip for f in families for ip in f[3]]
        if self._upnp is not None:
            evidence.append(f"UPnP maps {_fmt(self._upnp)}")
        if self._reachable is not None:
            evidence.append("NAT probe: echo from peers in contact" if self._reachable
                            else "NAT probe: no echo")  # fmt: skip
        observed = [a for v4 in (True, False) for a, _ in self._votes.trusted(v4, _wan)]
        return NatView(
            nat_type=nat_type, observed=tuple(observed), external=tuple(dict.fromkeys(external)),
            external_ips=tuple(dict.fromkeys(external_ips)), public=public,
            evidence=tuple(dict.fromkeys(evidence)), stun_reflected=stun_addrs, upnp=self._upnp,
            reachable=self._reachable, local=local,
        )  # fmt: skip

    def _family(self, v4: bool, local: tuple[Addr, ...],
                evidence: list[str]) -> tuple[NatType, bool, list[Addr], list[str]]:  # fmt: skip
        """One address family's type, public flag, external addresses and external IPs."""
        fam_local = [a for a in local if is_v4(a[0]) == v4]
        wan_local = [a for a in fam_local if is_plausible_wan(a[0])]
        trusted = self._votes.trusted(v4, _wan)
        stun = [r.mapped for r in self._reflected.values() if is_v4(r.mapped[0]) == v4
                and is_plausible_wan(r.mapped[0])]  # fmt: skip
        seen = list(dict.fromkeys([a for a, _ in trusted] + stun))
        ips = list(dict.fromkeys(a[0] for a in seen))
        for a, n in trusted:
            evidence.append(f"{n} peer{'s agree' if n > 1 else ' sees us'} on {_fmt(a)}")
        if wan_local and (not seen or any(a in fam_local for a in seen)):
            evidence.append(f"bound on {_fmt(wan_local[0])}")
            return NatType.FULL_CONE, True, wan_local + [a for a in seen if a not in wan_local], ips
        symmetric = self._symmetric(v4, evidence)
        if symmetric is not None:
            return NatType.SYMMETRIC, False, [], list(dict.fromkeys([*ips, symmetric]))
        b = self._behaviour
        if b is not None and b.mapping is Mapping.ENDPOINT_INDEPENDENT and is_v4(b.server[0]) == v4:
            words = b.filtering.value if b.filtering else "unproven"
            evidence.append(f"STUN behaviour test: endpoint-independent mapping, {words} filtering")
            if b.filtering is Filtering.ENDPOINT_INDEPENDENT:
                return NatType.FULL_CONE, False, seen, ips
            if b.filtering is Filtering.ADDRESS_DEPENDENT:
                return NatType.RESTRICTED, False, seen, ips
        if seen:
            evidence.append("behind a NAT whose filtering is not proven open")
            return NatType.PORT_RESTRICTED, False, seen, ips
        wan_votes = self._votes.addresses(v4, _wan)
        if any(not _ours(a, fam_local) for a, _, _ in wan_votes):
            evidence.append("behind a NAT; peers do not agree on our address yet")
            return NatType.PORT_RESTRICTED, False, [], ips
        lan = self._votes.addresses(v4, lambda a: not _wan(a))
        if any(not _ours(a, fam_local) for a, _, _ in lan):
            evidence.append("peers see a translated private address (a NAT inside a NAT)")
            return NatType.PORT_RESTRICTED, False, [], ips
        if lan:
            evidence.append("peers see our own address (no NAT on their path)")
            return NatType.FULL_CONE, False, [], ips
        return NatType.UNKNOWN, False, [], ips

    def _symmetric(self, v4: bool, evidence: list[str]) -> str | None:
        """The external IP of a destination-dependent mapping, if the evidence says so."""
        b = self._behaviour
        if b is not None and is_v4(b.server[0]) == v4:
            if b.mapping is Mapping.DEPENDENT:
                evidence.append("STUN mapping test: mapping depends on the destination")
                return b.mapped[0]
            if b.mapping is Mapping.ENDPOINT_INDEPENDENT:
                return None
        by_ip: dict[str, dict[str, int]] = {}
        for server, r in self._reflected.items():
            if is_v4(r.mapped[0]) == v4:
                by_ip.setdefault(r.mapped[0], {})[server[0]] = r.mapped[1]
        for ip, ports in by_ip.items():
            if len(ports) >= 2 and len(set(ports.values())) > 1:
                evidence.append(f"STUN servers see {len(set(ports.values()))} ports of {ip}")
                return ip
            if len(ports) >= 2:
                return None  # two server IPs, one port: endpoint-independent
        sym = self._votes.symmetric(v4, _wan)
        if sym is not None:
            sym_ip, n_ports, reporters = sym
            evidence.append(f"{reporters} peers see {n_ports} ports of {sym_ip}")
            return sym_ip
        return None


def _wan(addr: Addr) -> bool:
    return is_plausible_wan(addr[0])


def _ours(addr: Addr, local: list[Addr]) -> bool:
    """``addr`` is one of our local addresses, or has the port of a wildcard-bound one."""
    return any(addr == a or (a[1] == addr[1] and a[0] in ("0.0.0.0", "::")) for a in local)


def _fmt(addr: Addr) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
