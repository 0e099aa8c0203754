"""ICE credentials, configuration and pair kinds (pure parts of a2al_mcp.ice)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from a2al_mcp import SeededRng
from a2al_mcp.errors import ConfigError, DecodeError
from a2al_mcp.ice import (
    IceConfig,
    IceCredentials,
    TurnServer,
    pair_kind,
    parse_stun_url,
    parse_turn_url,
)

CAPTURED = json.loads((Path(__file__).parent / "captured_ice_frames.json").read_text())


@pytest.mark.parametrize("cred", CAPTURED["cred"], ids=lambda c: c["u"])
def test_every_captured_cred_frame_is_accepted(cred: dict[str, str]) -> None:
    parsed = IceCredentials.parse(cred["u"], cred["p"])
    assert (parsed.ufrag, parsed.pwd) == (cred["u"], cred["p"])


def test_ours_have_pions_shape_and_hide_the_password() -> None:
    ours = IceCredentials.generate(SeededRng(1))
    assert re.fullmatch(r"[A-Za-z]{16}", ours.ufrag)
    assert re.fullmatch(r"[A-Za-z]{32}", ours.pwd)
    assert ours.pwd not in repr(ours)
    assert IceCredentials.parse(ours.ufrag, ours.pwd) == ours
    assert IceCredentials.generate(SeededRng(2)) != ours


@pytest.mark.parametrize(
    ("ufrag", "pwd"),
    [
        ("abc", "a" * 22),
        ("abcd", "a" * 21),
        ("ab:d", "a" * 22),
        ("abcd", "a" * 21 + " "),
        ("a" * 257, "a" * 22),
        ("abcd", "a" * 257),
        (None, "a" * 22),
        ("abcd", b"a" * 22),
        ("abcd\u00e9", "a" * 22),
    ],
)
def test_malformed_remote_credentials_raise_decode_error(ufrag: object, pwd: object) -> None:
    with pytest.raises(DecodeError):
        IceCredentials.parse(ufrag, pwd)


def test_the_testbeds_turn_server_and_a2alds_url_forms() -> None:
    turn = parse_turn_url("turn:203.0.113.3:3478?transport=udp", "a2al", "testbed")
    assert turn == TurnServer(addr=("203.0.113.3", 3478), username="a2al", password="testbed")
    assert "testbed" not in repr(turn)
    tcp = parse_turn_url("turn:[2001:db8::3]?transport=tcp", "u", "p")
    assert (tcp.addr, tcp.transport, tcp.tls) == (("2001:db8::3", 3478), "tcp", False)
    tls = parse_turn_url("turns:turn.example:443", "u", "p")
    assert (tls.addr, tls.transport, tls.tls) == (("turn.example", 443), "tcp", True)
    assert parse_turn_url("turns:turn.example", "u", "p").addr == ("turn.example", 5349)
    assert parse_stun_url("stun:203.0.113.3:3478") == ("203.0.113.3", 3478)
    assert parse_stun_url("stun:stun.example") == ("stun.example", 3478)
    assert parse_stun_url("STUN:[::1]:19302") == ("::1", 19302)


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_stun_url("turn:1.2.3.4:3478"),
        lambda: parse_stun_url("stun:"),
        lambda: parse_stun_url("stun:1.2.3.4:0"),
        lambda: parse_stun_url("stun:1.2.3.4:x"),
        lambda: parse_stun_url("stun:::1:3478"),
        lambda: parse_stun_url("stun:[::1"),
        lambda: parse_turn_url("turn:1.2.3.4?transport=sctp", "u", "p"),
        lambda: parse_turn_url("turn:1.2.3.4", "", "p"),
        lambda: parse_turn_url("turn:1.2.3.4", "u", ""),
        lambda: parse_turn_url("http://1.2.3.4", "u", "p"),
        lambda: TurnServer(addr=("1.2.3.4", 3478), username="u", password="p", tls=True),
        lambda: IceConfig(connect_timeout_s=0),
        lambda: IceConfig(max_remote_candidates=0),
        lambda: IceConfig(max_candidate_chars=10),
        lambda: IceConfig(use_ipv4=False, use_ipv6=False),
        lambda: IceConfig(stun_servers=(("1.2.3.4", 0),)),
    ],
)
def test_bad_configuration_raises_config_error(call: object) -> None:
    with pytest.raises(ConfigError):
        call()  # type: ignore[operator]


def test_a_session_uses_the_first_server_of_each_list() -> None:
    turn = parse_turn_url("turn:203.0.113.3:3478", "a2al", "testbed")
    config = IceConfig(stun_servers=(("203.0.113.3", 3478), ("203.0.113.4", 3479)),
                       turn_servers=(turn,))  # fmt: skip
    assert config.stun_server == ("203.0.113.3", 3478)
    assert config.turn_server is turn
    assert IceConfig().stun_server is None and IceConfig().turn_server is None


@pytest.mark.parametrize(
    ("local", "remote", "kind"),
    [
        ("host", "host", "host"),
        ("host", "srflx", "srflx"),
        ("prflx", "host", "srflx"),
        ("srflx", "relay", "relay"),
        ("relay", "host", "relay"),
    ],
)
def test_pair_kind(local: str, remote: str, kind: str) -> None:
    assert pair_kind(local, remote) == kind
