"""a2al_mcp._dataclass builds the classes dataclasses.dataclass builds, with fewer compiled
methods: construction, equality, hashing, repr, frozen-ness and the dataclasses helpers are
the standard ones (issue 15: start-up time)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from a2al_mcp._dataclass import dataclass as fast

OPTIONS: list[dict[str, Any]] = [
    {},
    {"frozen": True},
    {"slots": True},
    {"frozen": True, "slots": True},
    {"frozen": True, "slots": True, "kw_only": True},
    {"slots": True, "kw_only": True},
    {"frozen": True, "eq": False},
    {"slots": True, "repr": False},
]


def _pair(**options: Any) -> tuple[Any, Any]:
    """The same class body under the standard decorator and under ours."""

    def body() -> type:
        class Point:
            """A point."""

            x: int
            y: bytes = b""
            tags: list[str] = dataclasses.field(default_factory=list, compare=False, repr=False)
            weight: float = dataclasses.field(default=1.0, hash=False)

        return Point

    return dataclasses.dataclass(**options)(body()), fast(**options)(body())


def _strip(text: str) -> str:
    return text.replace("_pair.<locals>.body.<locals>.", "")


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_instances_behave_as_the_standard_ones(options: dict[str, Any]) -> None:
    std, ours = _pair(**options)
    a, b = std(x=1, y=b"a", tags=["t"]), ours(x=1, y=b"a", tags=["t"])
    if options.get("repr", True):
        assert _strip(repr(a)) == _strip(repr(b))
    else:
        assert repr(b).startswith("<") and type(b).__repr__ is object.__repr__
    assert (a == std(x=1, y=b"a")) == (b == ours(x=1, y=b"a"))
    assert (a == std(x=2, y=b"a")) == (b == ours(x=2, y=b"a"))
    assert (b == (1, b"a")) is False and (b != object()) is True
    assert (std.__hash__ is None) == (ours.__hash__ is None)
    if std.__hash__ is not None:
        assert (hash(a) == hash(std(x=1, y=b"a", weight=9.0))) == (
            hash(b) == hash(ours(x=1, y=b"a", weight=9.0))
        )
        if options.get("frozen") and options.get("eq", True):
            assert hash(a) == hash(b)  # the hash of the same tuple
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(std)]
    assert ours.__match_args__ == std.__match_args__
    assert dataclasses.asdict(b) == dataclasses.asdict(a)
    assert dataclasses.replace(b, x=5).x == 5
    assert copy.deepcopy(b).y == b.y
    assert hasattr(b, "__dict__") == hasattr(a, "__dict__")
    if options.get("kw_only"):
        with pytest.raises(TypeError):
            ours(1)
    if options.get("frozen"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            b.x = 2
        with pytest.raises(dataclasses.FrozenInstanceError):
            del b.x
    else:
        b.x = 2
        assert b.x == 2


def test_methods_the_class_defines_are_kept() -> None:
    @fast(frozen=True)
    class Own:
        x: int

        def __repr__(self) -> str:
            return "own"

        def __hash__(self) -> int:
            return 7

    @fast(frozen=True)
    class OwnEq:
        x: int

        def __eq__(self, other: object) -> bool:
            return True

    assert repr(Own(1)) == "own" and hash(Own(1)) == 7 and Own(1) == Own(1)
    assert OwnEq(1) == OwnEq(2) and hash(OwnEq(1)) == hash(OwnEq(1))


def test_a_self_containing_instance_reprs_as_the_standard_one() -> None:
    @fast
    class Node:
        next: object = None

    n = Node()
    n.next = n
    assert (
        repr(n)
        == "test_a_self_containing_instance_reprs_as_the_standard_one.<locals>.Node(next=...)"
    )


def test_order_and_unsafe_hash_are_left_to_the_standard_decorator() -> None:
    with pytest.raises(TypeError):
        fast(order=True)(type("A", (), {"__annotations__": {"x": "int"}}))
    with pytest.raises(TypeError):
        fast(unsafe_hash=True)(type("B", (), {"__annotations__": {"x": "int"}}))


def test_wire_values_keep_their_standard_behaviour() -> None:
    """A DHT message body and a record built with it: equal by value, hashable, frozen,
    picklable, and shown as before."""
    from a2al_mcp._random import SeededRng
    from a2al_mcp.identity import Identity
    from a2al_mcp.protocol import dht_messages as dm

    aid = Identity.generate(SeededRng(1)).aid
    ping = dm.Ping(address=aid)
    assert ping == dm.Ping(address=aid) and ping != dm.Pong(address=aid, observed_addr=("::1", 1))
    assert {ping: 1}[dm.Ping(address=aid)] == 1
    assert repr(ping) == f"Ping(address={aid!r})"
    assert pickle.loads(pickle.dumps(ping)) == ping
    with pytest.raises(dataclasses.FrozenInstanceError):
        ping.address = aid  # type: ignore[misc]
