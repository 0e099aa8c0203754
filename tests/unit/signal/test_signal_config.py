"""The [signal] table: defaults follow a2ald, TOML and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from a2al_mcp.config import NodeConfig, SignalConfig, load_config
from a2al_mcp.errors import ConfigError


def test_defaults_follow_a2ald() -> None:
    cfg = NodeConfig().signal
    assert cfg == SignalConfig()
    assert (cfg.hubs, cfg.max_hubs, cfg.register_interval_s) == ((), 2, 45.0)
    assert (cfg.hub_pair_timeout_s, cfg.hub_idle_timeout_s, cfg.hub_handshake_timeout_s) == (
        30.0, 60.0, 10.0)  # fmt: skip


def test_toml_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[signal]\nhubs = ["ws://127.0.0.1:4121", "ws://[::1]:4122"]\nmax_hubs = 3\n'
        "hub_max_sockets_per_ip = 4\n",
        encoding="utf-8",
    )
    cfg = load_config(path, env={}).signal
    assert cfg.hubs == ("ws://127.0.0.1:4121", "ws://[::1]:4122")
    assert (cfg.max_hubs, cfg.hub_max_sockets_per_ip) == (3, 4)


@pytest.mark.parametrize(
    "kw",
    [
        {"hubs": ("http://127.0.0.1:1",)},
        {"hubs": ("ws://127.0.0.1",)},
        {"hubs": ["ws://127.0.0.1:1"]},
        {"max_hubs": 0},
        {"hub_pair_timeout_s": -1.0},
        {"hub_max_rooms": True},
        {"hub_max_sockets": 4, "hub_max_sockets_per_ip": 8},
        {"reconnect_initial_s": 10.0, "reconnect_max_s": 5.0},
        {"max_frame_bytes": 100},
    ],
)
def test_invalid_values_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SignalConfig(**kw)  # type: ignore[arg-type]


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"signal\.'nope'"):
        NodeConfig.from_mapping({"signal": {"nope": 1}})
