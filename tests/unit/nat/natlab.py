"""A tiny NAT lab for the natsense tests: a NAT model, an RFC 5780 STUN server built on
aioice's codec, and a driver that plays the network for a :class:`NatSense` on a virtual
clock. Real STUN bytes both ways; no sockets."""

from __future__ import annotations

import dataclasses
from typing import Literal

from aioice import stun

from a2al_mcp._types import Addr
from a2al_mcp.nat import NatEffect, NatSense, SendStun

MappingKind = Literal["eim", "edm"]
FilterKind = Literal["eif", "adf", "apdf"]


@dataclasses.dataclass
class Nat:
    """One NAT in front of one local socket."""

    wan_ip: str
    local_port: int
    mapping: MappingKind = "eim"
    filtering: FilterKind = "apdf"
    next_port: int = 50000
    ports: dict[Addr, int] = dataclasses.field(default_factory=dict)
    """Destination -> external port (EDM); EIM keeps the local port for all."""
    contacted: set[tuple[int, Addr]] = dataclasses.field(default_factory=set)

    def out(self, dst: Addr) -> Addr:
        """The external source address a datagram to ``dst`` leaves with."""
        if self.mapping == "eim":
            port = self.local_port
        else:
            if dst not in self.ports:
                self.ports[dst] = self.next_port
                self.next_port += 7
            port = self.ports[dst]
        self.contacted.add((port, dst))
        return (self.wan_ip, port)

    def inbound(self, src: Addr, ext_port: int) -> bool:
        """Does a datagram from ``src`` to our external ``ext_port`` get through?"""
        flows = [dst for port, dst in self.contacted if port == ext_port]
        if not flows:
            return False
        if self.filtering == "eif":
            return True
        if self.filtering == "adf":
            return any(dst[0] == src[0] for dst in flows)
        return src in flows


@dataclasses.dataclass
class StunServer:
    """A STUN server with two IPs and two ports (coturn with two addresses)."""

    ip1: str
    ip2: str | None = None
    port1: int = 3478
    port2: int = 3479
    honours_change: bool = True
    requests: list[tuple[stun.Message, Addr]] = dataclasses.field(default_factory=list)

    @property
    def primary(self) -> Addr:
        return (self.ip1, self.port1)

    def owns(self, addr: Addr) -> bool:
        return addr[0] in (self.ip1, self.ip2) and addr[1] in (self.port1, self.port2)

    def answer(self, data: bytes, src: Addr, to: Addr) -> tuple[bytes, Addr]:
        req = stun.parse_message(data)
        self.requests.append((req, to))
        change = req.attributes.get("CHANGE-REQUEST", 0) if self.honours_change else 0
        ip, port = to
        if change & 0x04 and self.ip2:
            ip = self.ip2 if ip == self.ip1 else self.ip1
        if change & 0x02:
            port = self.port2 if port == self.port1 else self.port1
        attrs: dict[str, object] = {"XOR-MAPPED-ADDRESS": src, "RESPONSE-ORIGIN": (ip, port)}
        if self.ip2:
            attrs["OTHER-ADDRESS"] = (self.ip2, self.port2)
        resp = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE,
                            transaction_id=req.transaction_id, attributes=attrs)  # fmt: skip
        return bytes(resp), (ip, port)


@dataclasses.dataclass
class Lab:
    """Plays the network for one NatSense: STUN through the NAT, everything else collected."""

    sense: NatSense
    nat: Nat | None
    servers: list[StunServer]
    now: float = 1000.0
    local: Addr = ("10.1.0.2", 4121)
    other: list[NatEffect] = dataclasses.field(default_factory=list)
    lost: int = 0

    def pump(self) -> None:
        """Carry out the queued effects (STUN is answered at once)."""
        while effects := self.sense.effects():
            for e in effects:
                if isinstance(e, SendStun):
                    self._stun(e)
                else:
                    self.other.append(e)

    def _stun(self, e: SendStun) -> None:
        server = next((s for s in self.servers if s.owns(e.addr)), None)
        if server is None:
            self.lost += 1
            return
        src = self.nat.out(e.addr) if self.nat else self.local
        data, frm = server.answer(e.data, src, e.addr)
        if self.nat is not None and not self.nat.inbound(frm, src[1]):
            self.lost += 1
            return
        self.sense.stun_datagram(data, frm, self.now)

    def run(self, seconds: float) -> None:
        """Pump and fire every timer due within ``seconds`` of virtual time."""
        end = self.now + seconds
        self.pump()
        while (t := self.sense.get_timer()) is not None and t <= end:
            self.now = max(self.now, t)
            self.sense.handle_timer(self.now)
            self.pump()
        self.now = end
