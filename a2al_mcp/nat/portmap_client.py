"""What a port-mapping driver offers (:class:`GatewayClient`), and :class:`FirstGateway`,
which tries several drivers (UPnP, then PCP/NAT-PMP) and keeps the first that finds a gateway.

A driver answers three questions, each bounded in time by the driver itself:

* ``discover()`` → a name for the gateway it found (protocol and address: a new name is a new
  gateway), or :class:`~a2al_mcp.errors.NetworkError` when none answers;
* ``add(external_port, internal_port, lease_s)`` → :class:`Granted` or :class:`Conflict`, or
  ``NetworkError`` when the gateway refuses or does not answer;
* ``delete(external_port)`` → ``None``, or ``NetworkError``.

:mod:`a2al_mcp.nat.portmap_service` turns these answers into the events of
:class:`~a2al_mcp.nat.portmap.PortMapMachine`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from ..errors import NetworkError, Unreachable, UsageError

__all__ = ["Conflict", "FirstGateway", "GatewayClient", "Granted"]


@dataclasses.dataclass(frozen=True, slots=True)
class Granted:
    """The gateway maps ``external_ip:external_port`` to us for ``lease_s`` (0: no expiry)."""

    external_port: int
    lease_s: float
    external_ip: str


@dataclasses.dataclass(frozen=True, slots=True)
class Conflict:
    """The external port belongs to another host."""

    external_port: int


class GatewayClient(Protocol):
    """One way of asking the LAN gateway for a port mapping (see the module docstring)."""

    @property
    def protocol(self) -> str:
        """``"upnp"``, ``"pcp"`` or ``"nat-pmp"`` (after discovery: what the gateway spoke)."""
        ...

    async def discover(self) -> str: ...

    async def add(
        self, external_port: int, internal_port: int, lease_s: int
    ) -> Granted | Conflict: ...

    async def delete(self, external_port: int) -> None: ...


class FirstGateway:
    """Several drivers in order of preference; ``discover`` keeps the first that answers and
    ``add``/``delete`` go to it. The gateway names are prefixed with the driver's protocol, so
    a switch from one protocol to another reads as a new gateway."""

    def __init__(self, clients: Sequence[GatewayClient]) -> None:
        if not clients:
            raise UsageError("port mapping: no gateway client to try")
        self._clients = tuple(clients)
        self._active: GatewayClient | None = None

    @property
    def protocol(self) -> str:
        return self._active.protocol if self._active is not None else ""

    async def discover(self) -> str:
        self._active = None
        reasons = []
        for client in self._clients:
            try:
                name = await client.discover()
            except NetworkError as exc:
                reasons.append(str(exc))
                continue
            self._active = client
            return f"{client.protocol}:{name}"
        raise Unreachable("; ".join(reasons) or "no gateway", operation="port mapping discovery")

    def _client(self) -> GatewayClient:
        if self._active is None:
            raise UsageError("port mapping: no gateway discovered")
        return self._active

    async def add(self, external_port: int, internal_port: int, lease_s: int) -> Granted | Conflict:
        return await self._client().add(external_port, internal_port, lease_s)

    async def delete(self, external_port: int) -> None:
        await self._client().delete(external_port)
