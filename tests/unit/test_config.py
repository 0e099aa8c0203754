from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from a2al_mcp import ConfigError, NodeConfig, load_config
from a2al_mcp.config import DhtConfig, parse_host_port


def test_defaults_send_nothing_anywhere() -> None:
    cfg = NodeConfig()
    assert cfg.bootstrap == ()
    assert cfg.network == "private"
    assert cfg.nat.stun_servers == () and not cfg.nat.upnp
    assert cfg.listen == ("127.0.0.1", 0)


def test_toml_env_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'listen_addr = "127.0.0.1:4000"\nbootstrap = ["127.0.0.1:4121"]\n'
        "[dht]\nreplicas = 4\n[nat]\nmin_observed_peers = 1\n"
    )
    cfg = load_config(f, env={})
    assert cfg.listen == ("127.0.0.1", 4000)
    assert cfg.bootstrap == ("127.0.0.1:4121",)
    assert cfg.dht.replicas == 4 and cfg.nat.min_observed_peers == 1
    env = {"A2AL_MCP_LISTEN": "[::1]:5000", "A2AL_MCP_BOOTSTRAP": "127.0.0.1:1, 127.0.0.1:2",
           "A2AL_MCP_HOME": str(tmp_path / "home")}  # fmt: skip
    cfg = load_config(f, env=env)
    assert cfg.listen == ("::1", 5000)
    assert cfg.bootstrap == ("127.0.0.1:1", "127.0.0.1:2")
    assert cfg.data_dir == tmp_path / "home"
    cfg = load_config(f, env=env, listen_addr="127.0.0.1:6000", advertise_host="127.0.0.1")
    assert cfg.listen == ("127.0.0.1", 6000) and cfg.advertise_host == "127.0.0.1"
    assert dataclasses.replace(cfg.dht, replicas=2).replicas == 2


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('listn_addr = "x"', "unknown configuration key 'listn_addr'"),
        ("[dht]\nreplica = 1", "unknown configuration key dht.'replica'"),
        ('listen_addr = "nohost"', "HOST:PORT"),
        ('listen_addr = "127.0.0.1:99999"', "0-65535"),
        ('bootstrap = ["::1:4"]', "IPv6"),
        ('network = "tangled"', "'private' or 'public'"),
        ("[dht]\nlookup_rpc_timeout_s = 0", "positive"),
        ("[dht]\nrpc_attempts = 3", "unknown configuration key dht.'rpc_attempts'"),
        ("[quic]\nkeepalive_s = 90", "shorter than quic.idle_timeout_s"),
        ("[nat]\nstun_servers = ['stun']", "HOST:PORT"),
        ("dht = 3", "must be a table"),
        ("listen_addr = [", "not valid TOML"),
        ("listen_addr = 5", "must be strings"),
        ('bootstrap = "127.0.0.1:1"', "list of"),
        ("data_dir = 5", "must be a path"),
    ],
)
def test_errors_are_sentences(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(f, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml", env={})


def test_parse_host_port() -> None:
    assert parse_host_port("[2001:db8::1]:80") == ("2001:db8::1", 80)
    assert parse_host_port("example.org:4121") == ("example.org", 4121)
    with pytest.raises(ConfigError, match="not a number"):
        parse_host_port("h:x")
    with pytest.raises(ConfigError, match="at least 1"):
        DhtConfig(replicas=0)


def test_ice_table_reads_a2alds_names_and_builds_the_ice_config(tmp_path: Path) -> None:
    from a2al_mcp.ice import ice_config

    f = tmp_path / "c.toml"
    f.write_text(
        '[ice]\nstun_urls = ["stun:198.51.100.7:3478"]\nmax_remote_candidates = 16\n'
        '[[ice.turn_servers]]\nurl = "turn:198.51.100.8:3478?transport=udp"\n'
        'username = "u"\ncredential = "secret"\n'
    )
    cfg = load_config(f, env={})
    assert cfg.ice.stun_urls == ("stun:198.51.100.7:3478",)
    (turn,) = cfg.ice.turn_servers
    assert (turn.url, turn.username, turn.credential) == (
        "turn:198.51.100.8:3478?transport=udp", "u", "secret")  # fmt: skip
    assert "secret" not in repr(cfg.ice)
    built = ice_config(cfg.ice, nat_stun=(("192.0.2.1", 3478),))
    assert built.stun_servers == (("198.51.100.7", 3478),)  # the table wins over [nat]
    assert built.turn_server is not None and built.turn_server.addr == ("198.51.100.8", 3478)
    assert built.turn_server.username == "u" and built.max_remote_candidates == 16


def test_ice_table_empty_uses_the_nats_stun_servers_and_no_turn() -> None:
    from a2al_mcp.ice import ice_config

    assert NodeConfig().ice.stun_urls == () and NodeConfig().ice.turn_servers == ()
    built = ice_config(NodeConfig().ice, nat_stun=(("192.0.2.1", 3478),))
    assert built.stun_servers == (("192.0.2.1", 3478),) and built.turn_servers == ()
    assert ice_config(NodeConfig().ice).stun_servers == ()  # nothing named: nothing asked


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[ice]\nstun_urls = ["198.51.100.7:3478"]', "stun:host:port"),
        ('[ice]\nstun_urls = "stun:a:1"', "list of"),
        ("[ice]\nturn_servers = [1]", "must be tables"),
        ('[[ice.turn_servers]]\nurl = "stun:a:1"\nusername = "u"\ncredential = "p"',
         "turn: or turns:"),
        ('[[ice.turn_servers]]\nurl = "turn:a:1"\nusername = "u"\ncredential = ""',
         "non-empty string credential"),
        ('[[ice.turn_servers]]\nurl = "turn:a:1"\nusername = "u"', "bad configuration"),
        ('[[ice.turn_servers]]\nurl = "turn:a:1"\nuser = "u"\ncredential = "p"',
         "unknown configuration key ice.turn_servers.'user'"),
        ("[ice]\nconnect_timeout_s = 0", "positive"),
        ('[ice]\ngather_timeout_s = "8"', "must be a number"),
        ("[ice]\nmax_candidate_chars = 10", "64-4096"),
        ("[ice]\nmax_remote_candidates = 0", "1-4096"),
        ('[ice]\nenabled = "yes"', "true or false"),
        ("[ice]\nturn_url = 1", "unknown configuration key ice.'turn_url'"),
    ],
)  # fmt: skip
def test_ice_table_errors_are_sentences(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(f, env={})
