"""Warm start from the peer cache; the public network is looked up only on opt-in."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from a2al_mcp import NodeConfig
from a2al_mcp.config import NatConfig
from a2al_mcp.node import Node, joining
from a2al_mcp.node.seeds import load_peer_cache, parse_txt_seeds, save_peer_cache

pytestmark = pytest.mark.anyio


def test_parse_txt_seeds() -> None:
    got = parse_txt_seeds(
        ["1.2.3.4:4121, 5.6.7.8:4121;[2001:db8::1]:4121", "  bad  x:y 1.2.3.4:4121"]
    )
    assert got == ["1.2.3.4:4121", "5.6.7.8:4121", "[2001:db8::1]:4121"]


def test_peer_cache_round_trip_and_damage(tmp_path: Path) -> None:
    save_peer_cache(tmp_path, ["127.0.0.1:1", "127.0.0.1:2"])
    assert load_peer_cache(tmp_path) == ["127.0.0.1:1", "127.0.0.1:2"]
    assert json.loads((tmp_path / "peers.cache").read_text()) == {
        "peers": ["127.0.0.1:1", "127.0.0.1:2"]
    }
    assert (tmp_path / "peers.cache").stat().st_mode & 0o777 == 0o600
    (tmp_path / "peers.cache").write_text("{not json")
    assert load_peer_cache(tmp_path) == []
    assert load_peer_cache(tmp_path / "missing") == []


async def test_warm_start_from_peer_cache(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed:
            seed_addr = "{}:{}".format(*seed.local_addr)
            first = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed_addr,), data_dir=tmp_path)
            async with Node(first) as node:
                assert node.status().peers == 1
            assert load_peer_cache(tmp_path) == [seed_addr]
            # restarted with no bootstrap configured: joins through the cache
            async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path)) as again:
                assert again.status().ready  # the seed answered (it may also name old peers)


async def test_unreachable_seed_does_not_stop_start(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a port nobody answers on
        s.bind(("127.0.0.1", 0))
        dead = "{}:{}".format(*s.getsockname())
        cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(dead,))
        cfg = cfg.__class__(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__},
                               "dht": cfg.dht.__class__(lookup_rpc_timeout_s=0.2)})  # fmt: skip
        with anyio.fail_after(20):
            async with Node(cfg) as node:
                assert node.status().peers == 0 and not node.status().ready


async def test_public_network_only_on_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def fake_lookup() -> list[str]:
        calls.append("looked up")
        return []

    monkeypatch.setattr(joining, "lookup_public_seeds", fake_lookup)
    async with Node(NodeConfig(listen_addr="127.0.0.1:0")):
        pass
    assert calls == []
    # a loopback STUN server named: the public opt-in would otherwise derive public ones
    # (tests/node/test_stun_servers.py), and nothing may leave this machine
    stun = NatConfig(stun_servers=("127.0.0.1:3478",))
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", network="public", nat=stun)):
        pass
    assert calls == ["looked up"]
