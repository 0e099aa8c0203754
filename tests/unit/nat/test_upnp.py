"""UpnpClient over a stand-in ``miniupnpc`` module (the real one against miniupnpd is in
tests/nat/test_portmap.py): how miniupnpc's answers and exceptions become Granted, Conflict
and errors, and that a missing extra says how to install it."""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import pytest

from a2al_mcp.errors import ExtraMissing, NetworkError, Unreachable
from a2al_mcp.nat.portmap import PortMapConfig
from a2al_mcp.nat.portmap_client import Conflict, Granted
from a2al_mcp.nat.upnp import UpnpClient

pytestmark = pytest.mark.anyio


class FakeUPnP:
    devices = 1
    igd: str | None = "http://10.7.0.1:5000/ctl/IPConn"
    taken: frozenset[int] = frozenset()
    calls: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self) -> None:
        self.discoverdelay = 0
        self.lanaddr = ""
        self.table: dict[int, tuple[str, int, str, bool, int]] = {}

    def discover(self) -> int:
        FakeUPnP.calls.append(("discover", self.discoverdelay))
        if not self.devices:
            raise Exception("Success")  # what miniupnpc says when nobody answered
        return self.devices

    def selectigd(self) -> str:
        if self.igd is None:
            raise Exception("No UPnP device discovered")
        self.lanaddr = "10.7.0.2"
        return self.igd

    def addportmapping(self, ext: int, proto: str, host: str, port: int, desc: str,
                       remote: str, lease: int) -> bool:  # fmt: skip
        FakeUPnP.calls.append(("add", ext, proto, host, port, desc, lease))
        if ext in self.taken:
            raise Exception("ConflictInMappingEntry")
        self.table[ext] = (host, port, desc, True, lease - 1)
        return True

    def externalipaddress(self) -> str:
        return "198.51.99.41"

    def getspecificportmapping(self, ext: int, proto: str) -> Any:
        return self.table.get(ext)

    def deleteportmapping(self, ext: int, proto: str) -> bool:
        FakeUPnP.calls.append(("delete", ext, proto))
        if self.table.pop(ext, None) is None:
            raise Exception("NoSuchEntryInArray")
        return True


@pytest.fixture(autouse=True)
def fake_miniupnpc(monkeypatch: pytest.MonkeyPatch) -> type[FakeUPnP]:
    module = types.ModuleType("miniupnpc")
    module.UPnP = FakeUPnP  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "miniupnpc", module)
    FakeUPnP.calls = []
    monkeypatch.setattr(FakeUPnP, "devices", 1)
    monkeypatch.setattr(FakeUPnP, "igd", "http://10.7.0.1:5000/ctl/IPConn")
    monkeypatch.setattr(FakeUPnP, "taken", frozenset())
    return FakeUPnP


async def test_map_then_delete_to_the_lan_address_with_a2alds_description() -> None:
    c = UpnpClient(PortMapConfig(discovery_timeout_s=1.5))
    assert await c.discover() == "http://10.7.0.1:5000/ctl/IPConn"
    assert FakeUPnP.calls[0] == ("discover", 1500)
    granted = await c.add(4121, 4121, 3600)
    assert granted == Granted(4121, 3599.0, "198.51.99.41")  # the lease the IGD reports
    assert FakeUPnP.calls[1] == ("add", 4121, "UDP", "10.7.0.2", 4121, "a2al-quic", 3600)
    await c.delete(4121)
    assert FakeUPnP.calls[-1] == ("delete", 4121, "UDP")


async def test_a_configured_internal_host_is_used() -> None:
    c = UpnpClient(PortMapConfig(), internal_host="10.7.0.9")
    await c.discover()
    await c.add(4121, 4121, 3600)
    assert FakeUPnP.calls[-1][3] == "10.7.0.9"


async def test_conflict_is_an_answer_not_an_error(fake_miniupnpc: type[FakeUPnP]) -> None:
    fake_miniupnpc.taken = frozenset({4121})
    c = UpnpClient(PortMapConfig())
    await c.discover()
    assert await c.add(4121, 4121, 3600) == Conflict(4121)


async def test_nobody_answering_ssdp_is_unreachable(fake_miniupnpc: type[FakeUPnP]) -> None:
    fake_miniupnpc.devices = 0
    with pytest.raises(Unreachable, match="no UPnP device answered"):
        await UpnpClient(PortMapConfig()).discover()


async def test_a_device_that_is_no_igd_is_unreachable(fake_miniupnpc: type[FakeUPnP]) -> None:
    fake_miniupnpc.igd = None
    with pytest.raises(Unreachable, match="no usable IGD"):
        await UpnpClient(PortMapConfig()).discover()


async def test_delete_failure_and_use_before_discovery_are_network_errors() -> None:
    c = UpnpClient(PortMapConfig())
    with pytest.raises(NetworkError):
        await c.add(4121, 4121, 3600)
    await c.discover()
    with pytest.raises(NetworkError, match="NoSuchEntryInArray"):
        await c.delete(4999)


async def test_without_the_extra_discovery_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "miniupnpc", None)  # import raises ImportError
    with pytest.raises(ExtraMissing, match="miniupnpc") as info:
        await UpnpClient(PortMapConfig()).discover()
    assert "upnp" in info.value.hint
