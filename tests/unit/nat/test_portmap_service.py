"""PortMapper with a scripted in-memory gateway: the service maps, renews, deletes on close
and on cancellation, contains every failure, and sends nothing unless nat.upnp is on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import anyio
import pytest

from a2al_mcp.config import NatConfig
from a2al_mcp.errors import Unreachable
from a2al_mcp.nat.portmap import PortMapConfig
from a2al_mcp.nat.portmap_client import Conflict, FirstGateway, Granted
from a2al_mcp.nat.portmap_service import PortMapper, portmap_config

pytestmark = pytest.mark.anyio

FAST = PortMapConfig(
    lease_s=3600,
    min_renew_s=0.01,
    backoff_initial_s=0.02,
    backoff_max_s=0.05,
    close_timeout_s=2.0,
)


@dataclasses.dataclass
class ScriptedGateway:
    protocol: str = "upnp"
    lease_s: float = 3600.0
    present: bool = True
    name: str = "gw1"
    crash: bool = False
    taken: frozenset[int] = frozenset()
    log: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    discoveries: int = 0
    table: set[int] = dataclasses.field(default_factory=set)

    async def discover(self) -> str:
        self.discoveries += 1
        if self.crash:
            raise RuntimeError("driver bug")
        if not self.present:
            raise Unreachable("no UPnP device answered")
        return self.name

    async def add(self, external_port: int, internal_port: int, lease_s: int) -> Granted | Conflict:
        self.log.append(("add", external_port))
        if external_port in self.taken:
            return Conflict(external_port)
        self.table.add(external_port)
        return Granted(external_port, self.lease_s, "198.51.99.41")

    async def delete(self, external_port: int) -> None:
        self.log.append(("delete", external_port))
        self.table.discard(external_port)


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 (polls counters; no event per condition)
            await anyio.sleep(0.005)


async def test_maps_reports_and_deletes_on_close() -> None:
    gw = ScriptedGateway(taken=frozenset({4121}))
    seen: list[tuple[str, int] | None] = []
    mapper = PortMapper(FAST, 4121, gw, on_change=seen.append)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: mapper.current() is not None)
        assert mapper.current() == ("198.51.99.41", 4122)
        assert mapper.statistics().running
        await mapper.aclose()
    assert gw.log == [("add", 4121), ("add", 4122), ("delete", 4122)]
    assert gw.table == set()
    assert seen == [("198.51.99.41", 4122), None]
    stats = mapper.statistics()
    assert not stats.running
    assert (stats.mapping.state, stats.mapping.conflicts, stats.protocol) == ("closed", 1, "upnp")


async def test_renews_at_half_the_granted_lease() -> None:
    gw = ScriptedGateway(lease_s=0.05)
    mapper = PortMapper(FAST, 4121, gw)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: mapper.statistics().mapping.renewals >= 3)
        await mapper.aclose()
    adds = [entry for entry in gw.log if entry[0] == "add"]
    assert set(adds) == {("add", 4121)}  # always the same port
    assert gw.log[-1] == ("delete", 4121)


async def test_no_gateway_backs_off_and_never_ends_the_caller() -> None:
    gw = ScriptedGateway(present=False)
    mapper = PortMapper(FAST, 4121, gw)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: gw.discoveries >= 4)
        stats = mapper.statistics()
        assert stats.driver_errors >= 3
        assert stats.mapping.failure_streak >= 3
        assert stats.mapping.last_error == "no UPnP device answered"
        assert mapper.current() is None
        await mapper.aclose()
    assert gw.log == []


async def test_a_driver_bug_is_contained_like_a_failure() -> None:
    gw = ScriptedGateway(crash=True)
    mapper = PortMapper(FAST, 4121, gw)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: mapper.statistics().driver_errors >= 2)
        assert mapper.statistics().mapping.last_error == "driver bug"
        await mapper.aclose()


async def test_cancellation_still_deletes_the_mapping() -> None:
    gw = ScriptedGateway()
    mapper = PortMapper(FAST, 4121, gw)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: mapper.current() is not None)
        tg.cancel_scope.cancel()
    assert gw.log == [("add", 4121), ("delete", 4121)]
    assert mapper.statistics().mapping.state == "closed"


async def test_a_failing_callback_is_counted_not_raised() -> None:
    def boom(_address: object) -> None:
        raise ValueError("consumer bug")

    gw = ScriptedGateway()
    mapper = PortMapper(FAST, 4121, gw, on_change=boom)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: mapper.statistics().callback_errors == 1)
        await mapper.aclose()
    assert mapper.statistics().callback_errors == 2  # Mapped, then Lost on close
    assert gw.log[-1] == ("delete", 4121)


async def test_network_change_moves_to_a_new_gateway_at_once() -> None:
    gw = ScriptedGateway()
    seen: list[tuple[str, int] | None] = []
    mapper = PortMapper(FAST, 4121, gw, on_change=seen.append)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: mapper.current() is not None)
        gw.name = "gw2"
        mapper.network_changed()
        await until(lambda: mapper.statistics().mapping.gateway == "gw2" and len(seen) == 3)
        await mapper.aclose()
    assert seen == [("198.51.99.41", 4121), None, ("198.51.99.41", 4121), None]
    assert gw.discoveries == 2


async def test_close_cuts_a_slow_discovery_short() -> None:
    class Slow(ScriptedGateway):
        async def discover(self) -> str:
            self.discoveries += 1
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    gw = Slow()
    mapper = PortMapper(FAST, 4121, gw)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: gw.discoveries == 1)
        with anyio.fail_after(5):
            await mapper.aclose()
    assert mapper.statistics().mapping.state == "closed"
    assert gw.log == []


async def test_close_before_run_and_twice_is_harmless() -> None:
    mapper = PortMapper(FAST, 4121, ScriptedGateway())
    await mapper.aclose()
    await mapper.aclose()
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)  # returns at once: closing was asked for
    assert mapper.statistics().mapping.state == "idle"


async def test_first_gateway_falls_back_to_the_next_protocol() -> None:
    upnp = ScriptedGateway(present=False)
    pcp = ScriptedGateway(protocol="pcp", name="10.7.0.1")
    both = FirstGateway([upnp, pcp])
    assert await both.discover() == "pcp:10.7.0.1"
    assert both.protocol == "pcp"
    await both.add(4121, 4121, 3600)
    assert pcp.log == [("add", 4121)]
    pcp.present = False
    with pytest.raises(Unreachable, match="no UPnP device answered"):
        await both.discover()


def test_nothing_is_built_unless_upnp_is_on() -> None:
    assert PortMapper.from_config(NatConfig(), listen=("0.0.0.0", 4121)) is None
    on = NatConfig(upnp=True)
    assert PortMapper.from_config(on, listen=("127.0.0.1", 4121)) is None  # loopback
    mapper = PortMapper.from_config(on, listen=("0.0.0.0", 4121))
    assert mapper is not None
    assert mapper.current() is None
    assert mapper.statistics().mapping.state == "idle"


def test_nat_settings_choose_the_limits() -> None:
    nat = NatConfig(upnp=True, upnp_lease_s=600, upnp_backoff_initial_s=5, upnp_backoff_max_s=80)
    c = portmap_config(nat)
    assert (c.lease_s, c.backoff_initial_s, c.backoff_max_s) == (600, 5, 80)


@dataclasses.dataclass
class GatedGateway(ScriptedGateway):
    """A gateway whose discovery and first mapping request wait for the test."""

    found: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    granted: anyio.Event = dataclasses.field(default_factory=anyio.Event)

    async def discover(self) -> str:
        await self.found.wait()
        return await super().discover()

    async def add(self, external_port: int, internal_port: int, lease_s: int) -> Granted | Conflict:
        await self.granted.wait()
        return await super().add(external_port, internal_port, lease_s)


async def test_settling_while_the_first_mapping_request_is_under_way_only() -> None:
    """The node's first record may wait for a mapping a found gateway is about to grant
    (settling), not for a discovery that may wait seconds for no gateway at all."""
    gw = GatedGateway()
    mapper = PortMapper(FAST, 4121, gw)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        assert not mapper.settling  # discovering
        gw.found.set()
        await until(lambda: mapper.statistics().mapping.state == "adding")
        assert mapper.settling
        gw.granted.set()
        await until(lambda: mapper.current() is not None)
        assert not mapper.settling
        await mapper.aclose()


async def test_no_settling_after_a_first_attempt_that_failed() -> None:
    gw = ScriptedGateway(present=False)
    mapper = PortMapper(FAST, 4121, gw)
    async with anyio.create_task_group() as tg:
        await tg.start(mapper.run)
        await until(lambda: gw.discoveries >= 2)  # failed, backed off, tried again
        assert not mapper.settling
        await mapper.aclose()
