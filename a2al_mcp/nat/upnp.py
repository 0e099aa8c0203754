"""UPnP IGD port mapping through the maintained ``miniupnpc`` module (the ``upnp`` extra).

Thin driver for :class:`~a2al_mcp.nat.portmap_client.GatewayClient`: ``miniupnpc`` is
imported lazily (a node without the extra never loads it) and its blocking calls run in a
worker thread (``anyio.to_thread``), one at a time.

IGDv1 and IGDv2: ``miniupnpc`` discovers with SSDP searches for the IGD:1 types and
``upnp:rootdevice``, which IGDv2 gateways answer too, and its description parser
(``selectigd``) takes any ``WANIPConnection``/``WANPPPConnection`` version, so a gateway whose
description lists only ``WANIPConnection:2`` is used like a v1 one. (a2ald's goupnp client
asks only for ``WANIPConnection:1`` and finds nothing there: testbed README §3.6.) The
requests used (``AddPortMapping`` with a finite lease, ``GetSpecificPortMappingEntry``,
``DeletePortMapping``, ``GetExternalIPAddress``) exist in both versions.

Time bounds: SSDP waits ``discovery_timeout_s`` (at least 1 s) per search target; miniupnpc
stops at the first target that is answered, so with no gateway discovery takes
:data:`SSDP_TARGETS` times that (measured in the testbed with no gateway: 4.0 s for delays of
0.25 s and of 1 s; 8 s with the default 2 s). Every call is abandoned
after its budget (``request_timeout_s``, plus the SSDP waits for discovery; miniupnpc's own
HTTP timeouts normally end it sooner), and the handle is then dropped so no two threads ever
share it.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

import anyio

from ..errors import ExtraMissing, NetworkError, RequestTimeout, Unreachable
from .portmap import PortMapConfig
from .portmap_client import Conflict, Granted

__all__ = ["SSDP_TARGETS", "UpnpClient", "load_miniupnpc"]

T = TypeVar("T")

_CONFLICT_TEXTS: Final = ("ConflictInMappingEntry", "ConflictWithOtherMechanisms")
_PROTOCOL: Final = "UDP"
SSDP_TARGETS: Final = 4
"""Search targets miniupnpc's ``discover()`` tries in turn (IGD:1, WANIPConnection:1,
WANPPPConnection:1, upnp:rootdevice), each waiting ``discoverdelay`` but at least 1 s."""


def load_miniupnpc() -> Any:
    """The ``miniupnpc`` module.

    Raises:
        ExtraMissing: it is not installed.
    """
    try:
        return importlib.import_module("miniupnpc")
    except ImportError as exc:
        raise ExtraMissing(
            "UPnP port mapping needs the miniupnpc module",
            operation="port mapping",
            hint="install the upnp extra: pip install 'a2al-mcp[upnp]'",
        ) from exc


@dataclasses.dataclass(slots=True)
class _Igd:
    handle: Any
    control_url: str
    lan_addr: str


class UpnpClient:
    """Port mapping on a UPnP IGD (v1 or v2). ``internal_host``: the LAN address to map to
    (default: the one miniupnpc reached the gateway from)."""

    def __init__(self, config: PortMapConfig, *, internal_host: str | None = None) -> None:
        self._config = config
        self._internal_host = internal_host
        self._igd: _Igd | None = None
        self._lock = threading.Lock()  # one call on a handle at a time, even if abandoned

    @property
    def protocol(self) -> str:
        return "upnp"

    async def _call(self, what: str, fn: Callable[[], T], budget: float) -> T:
        def locked() -> T:
            with self._lock:
                return fn()

        try:
            with anyio.fail_after(budget):
                return await anyio.to_thread.run_sync(locked, abandon_on_cancel=True)
        except TimeoutError as exc:
            self._igd = None
            raise RequestTimeout(
                f"UPnP {what}: no answer within {budget:g} s", operation=f"upnp {what}"
            ) from exc

    async def discover(self) -> str:
        miniupnpc = load_miniupnpc()
        delay_ms = max(1, int(self._config.discovery_timeout_s * 1000))

        def find() -> _Igd:
            handle = miniupnpc.UPnP()
            handle.discoverdelay = delay_ms
            try:
                found = handle.discover()
            except Exception as exc:  # miniupnpc raises plain Exception
                raise Unreachable(
                    f"no UPnP device answered ({exc})", operation="upnp discovery"
                ) from exc
            if not found:
                raise Unreachable("no UPnP device answered", operation="upnp discovery")
            try:
                url = handle.selectigd()
            except Exception as exc:
                raise Unreachable(
                    f"{found} UPnP device(s), no usable IGD ({exc})", operation="upnp discovery"
                ) from exc
            return _Igd(handle, str(url), str(handle.lanaddr))

        self._igd = None
        ssdp = SSDP_TARGETS * max(1.0, self._config.discovery_timeout_s)
        budget = ssdp + self._config.request_timeout_s
        igd = await self._call("discovery", find, budget)
        self._igd = igd
        return igd.control_url

    def _require(self) -> _Igd:
        if self._igd is None:
            raise NetworkError("UPnP gateway not discovered", operation="upnp")
        return self._igd

    async def add(self, external_port: int, internal_port: int, lease_s: int) -> Granted | Conflict:
        igd = self._require()
        host = self._internal_host or igd.lan_addr
        desc = self._config.description

        def add() -> Granted | Conflict:
            u = igd.handle
            try:
                u.addportmapping(external_port, _PROTOCOL, host, internal_port, desc, "", lease_s)
            except Exception as exc:
                if any(t in str(exc) for t in _CONFLICT_TEXTS):
                    return Conflict(external_port)
                raise NetworkError(
                    f"UPnP AddPortMapping {external_port}->{host}:{internal_port} refused: {exc}",
                    operation="upnp add mapping",
                ) from exc
            try:
                external_ip = str(u.externalipaddress())
            except Exception as exc:
                raise NetworkError(
                    f"UPnP GetExternalIPAddress failed: {exc}", operation="upnp add mapping"
                ) from exc
            if external_ip in ("", "0.0.0.0"):
                raise NetworkError(
                    "UPnP gateway has no external address", operation="upnp add mapping"
                )
            granted: float = lease_s
            try:  # the lease the gateway really gave (IGDv2 may shorten it)
                entry = u.getspecificportmapping(external_port, _PROTOCOL)
            except Exception:
                entry = None
            if entry is not None and entry[0] == host and int(entry[1]) == internal_port:
                granted = float(entry[4]) if int(entry[4]) > 0 else lease_s
            return Granted(external_port, granted, external_ip)

        return await self._call("add mapping", add, self._config.request_timeout_s)

    async def delete(self, external_port: int) -> None:
        igd = self._require()

        def delete() -> None:
            try:
                igd.handle.deleteportmapping(external_port, _PROTOCOL)
            except Exception as exc:
                raise NetworkError(
                    f"UPnP DeletePortMapping {external_port} failed: {exc}",
                    operation="upnp delete mapping",
                ) from exc

        await self._call("delete mapping", delete, self._config.request_timeout_s)
