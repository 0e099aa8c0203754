"""Room ids and request targets, against what a2ald 0.3.5 sent in the NAT testbed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a2al_mcp.errors import DecodeError
from a2al_mcp.signal.rooms import IceRequest, SignalRequest, ice_target, parse_target, room_id

CAPTURED = json.loads((Path(__file__).parent / "captured_frames.json").read_text("utf-8"))

# request targets a2ald 0.3.5 sent (nat-testbed samples, run5)
CALLER_TARGET = ("/ice?caller=a054336E70B363CeC179Fd0e764B69E402CFb7CF0E"
                 "&room=3aa2217d9c7502910bac6dd1349b7d15"
                 "&target=a0B8D5A52405CeBa48A0a3C8b68B29A205b0c78Ac8")  # fmt: skip
CALLEE_TARGET = "/ice?room=3aa2217d9c7502910bac6dd1349b7d15"


def test_room_id_matches_every_captured_incoming() -> None:
    incoming = [i["cbor"] for i in CAPTURED["frames"] if i["cbor"]["t"] == "incoming"]
    assert len(incoming) == 4
    for frame in incoming:
        assert room_id(frame["f"], frame["g"]) == frame["r"]
        assert room_id(frame["g"], frame["f"]) == frame["r"]


def test_ice_targets_are_a2ald_s() -> None:
    caller = "a054336E70B363CeC179Fd0e764B69E402CFb7CF0E"
    target = "a0B8D5A52405CeBa48A0a3C8b68B29A205b0c78Ac8"
    room = room_id(caller, target)
    assert ice_target(room, caller=caller, target=target) == CALLER_TARGET
    assert ice_target(room) == CALLEE_TARGET
    assert parse_target(CALLER_TARGET) == IceRequest(room, caller, target)
    assert parse_target(CALLEE_TARGET) == IceRequest(room)
    assert parse_target("/signal") == SignalRequest()
    with pytest.raises(ValueError):
        ice_target(room, caller=caller)


@pytest.mark.parametrize("bad", ["/", "/ice", "/ice?caller=x&room=r&target=", "/ice?room=\x00",
                                 "/ice?room=r&target=t", "/x" * 600])  # fmt: skip
def test_bad_targets(bad: str) -> None:
    if bad == "/ice?caller=x&room=r&target=":  # empty target: a plain join, as Go reads it
        assert parse_target(bad) == IceRequest("r")
        return
    with pytest.raises(DecodeError):
        parse_target(bad)
