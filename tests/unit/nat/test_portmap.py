"""PortMapMachine on a virtual clock: mapping, renewal, conflicts, back-off, gateway changes,
close. Times are plain numbers passed in; nothing sleeps."""

from __future__ import annotations

import pytest

from a2al_mcp.errors import ConfigError, UsageError
from a2al_mcp.nat.portmap import (
    AddMapping,
    Close,
    Deleted,
    DeleteMapping,
    Discover,
    GatewayFound,
    GatewayMissing,
    Lost,
    Mapped,
    MappingConflict,
    MappingFailed,
    MappingGranted,
    NetworkChanged,
    PortMapConfig,
    PortMapMachine,
    PortMapState,
    SleepUntil,
    Start,
    Tick,
)

PORT = 4121
EXT_IP = "198.51.99.41"
GW = "upnp:http://10.7.0.1:5000/ctl/IPConn"


def mapped_machine(now: float = 0.0, **config: float) -> PortMapMachine:
    m = PortMapMachine(PortMapConfig(**config), PORT)  # type: ignore[arg-type]
    assert m.handle(Start(), now) == [Discover()]
    assert m.handle(GatewayFound(GW), now) == [AddMapping(PORT, PORT, 3600)]
    m.handle(MappingGranted(PORT, 3600, EXT_IP), now)
    assert m.state is PortMapState.MAPPED
    return m


def test_first_mapping_asks_for_the_same_port_and_renews_at_half_the_lease() -> None:
    m = PortMapMachine(PortMapConfig(), PORT)
    assert m.handle(Start(), 10.0) == [Discover()]
    assert m.handle(GatewayFound(GW), 10.5) == [AddMapping(PORT, PORT, 3600)]
    effects = m.handle(MappingGranted(PORT, 3600, EXT_IP), 11.0)
    assert effects == [Mapped((EXT_IP, PORT), GW), SleepUntil(11.0 + 1800)]
    assert m.address == (EXT_IP, PORT)
    assert m.deadline == 1811.0


def test_renewal_at_half_the_granted_lease_keeps_the_port_and_announces_nothing_new() -> None:
    m = mapped_machine()
    assert m.handle(Tick(), 1000.0) == [SleepUntil(1800.0)]  # early wake: wait on
    assert m.handle(Tick(), 1800.0) == [Discover()]
    assert m.handle(GatewayFound(GW), 1800.0) == [AddMapping(PORT, PORT, 3600)]
    # The gateway grants less this time: renew at half of that.
    assert m.handle(MappingGranted(PORT, 600, EXT_IP), 1801.0) == [SleepUntil(2101.0)]
    stats = m.statistics()
    assert (stats.grants, stats.renewals, stats.losses) == (2, 1, 0)
    assert m.address == (EXT_IP, PORT)


def test_tiny_leases_are_not_renewed_sooner_than_min_renew() -> None:
    m = mapped_machine(min_renew_s=30.0)
    m.handle(Tick(), 1800.0)
    m.handle(GatewayFound(GW), 1800.0)
    assert m.handle(MappingGranted(PORT, 4, EXT_IP), 1800.0) == [SleepUntil(1830.0)]


def test_lease_zero_granted_means_renew_at_half_the_lease_asked_for() -> None:
    m = PortMapMachine(PortMapConfig(lease_s=1000), PORT)
    m.handle(Start(), 0.0)
    m.handle(GatewayFound(GW), 0.0)
    assert m.handle(MappingGranted(PORT, 0, EXT_IP), 0.0)[-1] == SleepUntil(500.0)


def test_conflicts_walk_plus_one_to_plus_nine_then_back_off() -> None:
    m = PortMapMachine(PortMapConfig(), PORT)
    m.handle(Start(), 0.0)
    asked = [m.handle(GatewayFound(GW), 0.0)[0]]
    for _ in range(9):
        last = asked[-1]
        assert isinstance(last, AddMapping)
        asked.append(m.handle(MappingConflict(last.external_port), 0.0)[0])
    assert asked == [AddMapping(PORT + i, PORT, 3600) for i in range(10)]
    assert m.handle(MappingConflict(PORT + 9), 5.0) == [SleepUntil(65.0)]
    stats = m.statistics()
    assert (stats.conflicts, stats.failures, stats.state) == (10, 1, "backoff")
    assert "4121-4130" in stats.last_error


def test_a_conflict_then_a_grant_maps_the_next_port() -> None:
    m = PortMapMachine(PortMapConfig(), PORT)
    m.handle(Start(), 0.0)
    m.handle(GatewayFound(GW), 0.0)
    assert m.handle(MappingConflict(PORT), 0.0) == [AddMapping(PORT + 1, PORT, 3600)]
    effects = m.handle(MappingGranted(PORT + 1, 3600, EXT_IP), 0.0)
    assert effects[0] == Mapped((EXT_IP, PORT + 1), GW)


def test_candidates_stop_at_65535() -> None:
    m = PortMapMachine(PortMapConfig(), 65534)
    m.handle(Start(), 0.0)
    assert m.handle(GatewayFound(GW), 0.0) == [AddMapping(65534, 65534, 3600)]
    assert m.handle(MappingConflict(65534), 0.0) == [AddMapping(65535, 65534, 3600)]
    assert isinstance(m.handle(MappingConflict(65535), 0.0)[0], SleepUntil)


def test_back_off_doubles_from_60_s_up_to_the_cap_and_resets_on_success() -> None:
    m = PortMapMachine(PortMapConfig(backoff_initial_s=60, backoff_max_s=300), PORT)
    now = 0.0
    assert m.handle(Start(), now) == [Discover()]
    waits = []
    for _ in range(5):
        (sleep,) = m.handle(GatewayMissing("no UPnP device answered"), now)
        assert isinstance(sleep, SleepUntil)
        waits.append(sleep.deadline - now)
        now = sleep.deadline
        assert m.handle(Tick(), now) == [Discover()]
    assert waits == [60, 120, 240, 300, 300]
    assert m.statistics().failure_streak == 5
    m.handle(GatewayFound(GW), now)
    m.handle(MappingGranted(PORT, 3600, EXT_IP), now)
    assert m.statistics().failure_streak == 0
    # The next failure starts from 60 s again.
    m.handle(Tick(), now + 1800)
    (lost, sleep) = m.handle(GatewayMissing("gone"), now + 1800)
    assert isinstance(lost, Lost)
    assert sleep == SleepUntil(now + 1800 + 60)


def test_renewal_failure_loses_the_address_and_backs_off() -> None:
    m = mapped_machine()
    m.handle(Tick(), 1800.0)
    m.handle(GatewayFound(GW), 1800.0)
    effects = m.handle(MappingFailed("SOAP timeout"), 1801.0)
    assert effects == [Lost((EXT_IP, PORT), "SOAP timeout"), SleepUntil(1861.0)]
    assert m.address is None
    # Nothing held any more: closing sends no deletion.
    assert m.handle(Close(), 1802.0) == []
    assert m.closed


def test_a_changed_gateway_loses_the_old_address_and_maps_afresh() -> None:
    m = mapped_machine()
    m.handle(Tick(), 1800.0)
    other = "pcp:192.168.1.1"
    effects = m.handle(GatewayFound(other), 1800.0)
    assert effects[0] == Lost((EXT_IP, PORT), f"gateway changed from {GW} to {other}")
    assert effects[1] == AddMapping(PORT, PORT, 3600)
    effects = m.handle(MappingGranted(PORT, 7200, "203.0.113.99"), 1800.0)
    assert effects == [Mapped(("203.0.113.99", PORT), other), SleepUntil(1800.0 + 3600)]


def test_a_new_external_ip_on_renewal_is_lost_then_mapped() -> None:
    m = mapped_machine()
    m.handle(Tick(), 1800.0)
    m.handle(GatewayFound(GW), 1800.0)
    effects = m.handle(MappingGranted(PORT, 3600, "198.51.99.77"), 1800.0)
    assert [type(e) for e in effects] == [Lost, Mapped, SleepUntil]
    assert m.address == ("198.51.99.77", PORT)


def test_our_port_taken_at_renewal_moves_to_the_next_one() -> None:
    m = mapped_machine()
    m.handle(Tick(), 1800.0)
    m.handle(GatewayFound(GW), 1800.0)
    effects = m.handle(MappingConflict(PORT), 1800.0)
    assert effects == [
        Lost((EXT_IP, PORT), f"external port {PORT} taken by another host"),
        AddMapping(PORT + 1, PORT, 3600),
    ]


def test_network_change_rechecks_at_once_while_mapped_or_backing_off() -> None:
    m = mapped_machine()
    assert m.handle(NetworkChanged(), 5.0) == [Discover()]
    m.handle(GatewayMissing("gone"), 5.0)
    assert m.state is PortMapState.BACKOFF
    assert m.handle(NetworkChanged(), 6.0) == [Discover()]
    assert m.handle(NetworkChanged(), 6.0) == []  # a request is in flight


def test_close_deletes_the_mapping() -> None:
    m = mapped_machine()
    effects = m.handle(Close(), 100.0)
    assert effects == [Lost((EXT_IP, PORT), "closing"), DeleteMapping(PORT)]
    assert m.handle(Close(), 100.0) == []
    assert m.handle(Deleted(ok=True), 100.5) == []
    assert m.closed
    assert m.statistics().deletions == 1


def test_close_during_an_add_deletes_what_was_granted_without_announcing_it() -> None:
    m = PortMapMachine(PortMapConfig(), PORT)
    m.handle(Start(), 0.0)
    m.handle(GatewayFound(GW), 0.0)
    assert m.handle(Close(), 0.1) == []
    assert m.handle(MappingGranted(PORT, 3600, EXT_IP), 0.2) == [DeleteMapping(PORT)]
    m.handle(Deleted(ok=False), 0.3)
    assert m.closed


def test_close_during_discovery_or_back_off_sends_nothing() -> None:
    m = PortMapMachine(PortMapConfig(), PORT)
    m.handle(Start(), 0.0)
    m.handle(Close(), 0.0)
    assert m.handle(GatewayMissing("none"), 0.0) == []
    assert m.closed
    m = PortMapMachine(PortMapConfig(), PORT)
    m.handle(Start(), 0.0)
    m.handle(GatewayMissing("none"), 0.0)
    assert m.handle(Close(), 1.0) == []
    assert m.closed
    m = PortMapMachine(PortMapConfig(), PORT)
    assert m.handle(Close(), 0.0) == []
    assert m.closed


def test_close_during_renewal_deletes_the_held_port_even_if_the_renewal_failed() -> None:
    m = mapped_machine()
    m.handle(Tick(), 1800.0)
    m.handle(GatewayFound(GW), 1800.0)
    assert m.handle(Close(), 1800.0) == []
    effects = m.handle(MappingFailed("stopped"), 1800.0)
    assert effects == [Lost((EXT_IP, PORT), "stopped"), DeleteMapping(PORT)]


def test_answers_out_of_turn_are_local_bugs() -> None:
    m = PortMapMachine(PortMapConfig(), PORT)
    with pytest.raises(UsageError):
        m.handle(MappingGranted(PORT, 3600, EXT_IP), 0.0)
    m.handle(Start(), 0.0)
    with pytest.raises(UsageError):
        m.handle(Start(), 0.0)
    with pytest.raises(UsageError):
        m.handle(Deleted(ok=True), 0.0)
    with pytest.raises(UsageError):
        PortMapMachine(PortMapConfig(), 0)


def test_an_unusable_grant_is_a_failure() -> None:
    m = PortMapMachine(PortMapConfig(), PORT)
    m.handle(Start(), 0.0)
    m.handle(GatewayFound(GW), 0.0)
    assert m.handle(MappingGranted(PORT, 3600, ""), 0.0) == [SleepUntil(60.0)]
    assert m.statistics().failures == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"lease_s": 0},
        {"renew_fraction": 1.0},
        {"port_tries": 0},
        {"backoff_initial_s": 100.0, "backoff_max_s": 50.0},
        {"pmp_tries": 0},
        {"request_timeout_s": 0.0},
    ],
)
def test_config_limits_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        PortMapConfig(**bad)  # type: ignore[arg-type]


def test_backoff_formula_is_capped() -> None:
    c = PortMapConfig(backoff_initial_s=60, backoff_max_s=3600)
    assert [c.backoff(n) for n in (1, 2, 3, 7, 8, 500)] == [60, 120, 240, 3600, 3600, 3600]
