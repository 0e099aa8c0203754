"""Which STUN servers a node asks (issue 17): only what configuration names, or, once the
user opted into the public network, what a2ald derives (its hubs' hosts at 3478, then its
compiled-in public servers). Never a public host in private mode."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from a2al_mcp.config import NatConfig, NodeConfig, SignalConfig
from a2al_mcp.errors import ConfigError
from a2al_mcp.node.nat_service import (
    HUB_STUN_PORT,
    PUBLIC_STUN_SERVERS,
    resolve_stun_servers,
    stun_entries,
)

HUBS = SignalConfig(hubs=("ws://198.51.100.7:8080", "ws://hub.example:9000/"))


def test_private_mode_asks_only_what_configuration_names() -> None:
    assert stun_entries(NodeConfig()) == ((), True)
    assert stun_entries(NodeConfig(signal=HUBS)) == ((), True)  # hubs alone derive nothing
    named = NodeConfig(nat=NatConfig(stun_servers=("203.0.113.3:3478",)))
    assert stun_entries(named) == (("203.0.113.3:3478",), True)


def test_public_mode_derives_as_a2ald_unless_configuration_names_servers() -> None:
    entries, named = stun_entries(NodeConfig(network="public", signal=HUBS))
    assert not named
    assert entries == (f"198.51.100.7:{HUB_STUN_PORT}", f"hub.example:{HUB_STUN_PORT}",
                       *PUBLIC_STUN_SERVERS)  # fmt: skip
    assert stun_entries(NodeConfig(network="public")) == (PUBLIC_STUN_SERVERS, False)
    own = NodeConfig(network="public", nat=NatConfig(stun_servers=("192.0.2.9:3478",)))
    assert stun_entries(own) == (("192.0.2.9:3478",), True)


@pytest.mark.anyio
async def test_derived_names_that_do_not_resolve_are_skipped_named_ones_fail(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[str] = []

    async def no_dns(host: str, port: int, **kw: Any) -> Any:  # nothing leaves this machine
        asked.append(host)
        raise OSError("no resolver in this test")

    monkeypatch.setattr(anyio, "getaddrinfo", no_dns)
    caplog.set_level(logging.WARNING, logger="a2al_mcp.node.nat_service")
    entries = ("203.0.113.3:3478", "stun.example:3478", "[2001:db8::1]:3478")
    got = await resolve_stun_servers(entries, named=False)
    assert got == (("203.0.113.3", 3478), ("2001:db8::1", 3478))
    assert asked == ["stun.example"] and "nat.stun_unresolved" in caplog.text
    with pytest.raises(ConfigError, match="does not resolve"):
        await resolve_stun_servers(entries, named=True)
