"""MCP tools against hostile input from a client, a pasted file and a peer (issue 14).

At 45ad18d: a hostile identity export made identity_import fail INTERNAL (and its scrypt
parameters were not bounded), both identity tools ran scrypt on the event loop (0.4 s per
call, every peer stalled), a lone surrogate in a text argument (fetch's body…) failed
INTERNAL, and one peer's topic registration with binary meta made discover fail for every
MCP caller of that topic. Also shown: send_mailbox tells the caller when the recipient
refused the note, and status carries the DHT counters.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import cbor2
import pydantic_core
import pytest

from a2al_mcp import NodeConfig
from a2al_mcp.identity import keyfile
from a2al_mcp.node import Node
from a2al_mcp.toolspec import ToolFailure, call_tool
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def _call(
    node: Node, name: str, args: dict[str, Any], **kwargs: Any
) -> dict[str, Any] | ToolFailure:
    with anyio.fail_after(30):
        try:
            return await call_tool(node, name, args, **kwargs)
        except ToolFailure as exc:
            return exc


def _export(**fields: Any) -> str:
    doc = {"format": "a2al-mcp-identity-1", "kdf": "scrypt", "n": 2, "r": 1, "p": 1,
           "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "nonce": "AAAAAAAAAAAAAAAA",
           "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}  # fmt: skip
    doc.update(fields)
    return json.dumps(doc)


async def test_identity_import_of_hostile_exports_is_a_decode_failure(tmp_path: Path) -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path)) as node:
        for blob in ("[]", "1", "[" * 100_000, _export(n=math.inf), _export(n=3),
                     _export(nonce=""), _export(n=2**20, r=32, p=16)):  # fmt: skip
            got = await _call(node, "identity_import", {"export": blob, "passphrase": "p" * 8})
            assert isinstance(got, ToolFailure) and got.code == "DECODE", (blob[:60], got)
        st = await _call(node, "status", {})
        assert isinstance(st, dict) and st["aid"] == str(node.aid)


async def test_identity_kdf_runs_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    kdf_threads: list[int] = []
    real = keyfile._key

    def recording(*args: Any) -> bytes:
        kdf_threads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(keyfile, "_key", recording)
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path / "a")) as a:
        created = await _call(a, "identity_create", {})
        assert isinstance(created, dict)

        async def passphrase(prompt: str) -> str:  # the user, asked by the client
            return "p" * 8

        out = await _call(a, "identity_export", {"aid": created["aid"]}, ask_secret=passphrase)
        assert isinstance(out, dict), out
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path / "b")) as b:
        got = await _call(b, "identity_import", {"export": out["export"], "passphrase": "p" * 8})
        assert isinstance(got, dict) and got["aid"] == created["aid"], got
        assert created["aid"] in {str(i.aid) for i in b.identities()}
    assert len(kdf_threads) == 2
    assert loop_thread not in kdf_threads, "scrypt ran on the event loop"


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("fetch", {"aid": "a0" + "11" * 20, "body": "\ud800"}, "body"),
        ("fetch", {"aid": "a0" + "11" * 20, "headers": {"x": "a\udfffb"}}, "headers"),
        ("send_mailbox", {"to": "a0" + "11" * 20, "text": "hi \udc80"}, "text"),
        ("discover", {"service": "x", "tags": ["ok", "\ud800"]}, "tags"),
        ("publish", {"services": ["x"], "meta": {"a": [{"\ud800": 1}]}}, "meta"),
        ("identity_import", {"export": "{}", "passphrase": "\ud800" * 8}, "passphrase"),
        ("call_agent", {"skill": "x", "text": "\ud800"}, "text"),
    ],
)
async def test_a_lone_surrogate_in_any_argument_is_a_usage_failure_naming_the_field(
    tool: str, args: dict[str, Any], field: str, tmp_path: Path
) -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path)) as node:
        got = await _call(node, tool, args)
        assert isinstance(got, ToolFailure), got
        assert got.code == "USAGE" and got.message.startswith(field + ":"), got
        assert "lone surrogate" in got.message


async def test_discover_renders_a_peers_binary_meta_and_still_lists_everyone() -> None:
    with anyio.fail_after(60):
        async with network(3, publish=True) as (me, evil, honest):
            hostile = {"x": b"\x00\xff", "f": [math.nan, -math.inf, 1.5], "n": {"k": None}}
            await evil.register_service("hostile.meta", name="evil", meta=hostile)
            await honest.register_service("hostile.meta", name="honest", meta={"v": 1})
            got = await _call(me, "discover", {"service": "hostile.meta"})
            assert isinstance(got, dict) and got["count"] == 2, got
            json.loads(pydantic_core.to_json(got))  # strict JSON: no NaN, no bytes
            metas = {a["name"]: a["meta"] for a in got["agents"]}
            assert metas["honest"] == {"v": 1}
            assert metas["evil"] == {
                "x": {"$base64": "AP8="},
                "f": [{"$float": "NaN"}, {"$float": "-Infinity"}, 1.5],
                "n": {"k": None},
            }


def test_json_safe_renders_what_cbor_can_carry_and_json_cannot() -> None:
    from a2al_mcp.toolspec import RESULT_DEPTH_MAX, json_safe

    decoded = cbor2.loads(cbor2.dumps({"a": [1, b"\x01"], "t": "é"}))
    assert json_safe(decoded) == {"a": [1, {"$base64": "AQ=="}], "t": "é"}
    weird = {1: "int key", b"\xff": "bytes key", (1, 2): "array key", "u": cbor2.undefined,
             "s": "x\ud800y", "i": math.inf}  # fmt: skip
    assert json_safe(weird) == {"1": "int key", "$base64:/w==": "bytes key",
                                "[1, 2]": "array key", "u": {"$cbor": "UndefinedType"},
                                "s": "x?y", "i": {"$float": "Infinity"}}  # fmt: skip
    deep: Any = 0
    for _ in range(RESULT_DEPTH_MAX + 5):
        deep = [deep]
    pydantic_core.to_json(json_safe(deep))


@contextlib.asynccontextmanager
async def _sender_and_strict_recipient() -> AsyncIterator[tuple[Node, Node]]:
    from a2al_mcp.config import LimitsConfig

    async with contextlib.AsyncExitStack() as stack:
        seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        boot = ("{}:{}".format(*seed.local_addr),)
        sender = await stack.enter_async_context(
            Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=boot))
        )
        strict = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=boot,
                            limits=LimitsConfig(mailbox_notes_per_sender=1))  # fmt: skip
        recipient = await stack.enter_async_context(Node(strict))
        for n in (seed, sender, recipient):
            await n.publish()
        yield sender, recipient


async def test_send_mailbox_shows_a_refusal_and_status_shows_the_dht() -> None:
    with anyio.fail_after(60):
        async with _sender_and_strict_recipient() as (sender, recipient):
            to = str(recipient.aid)
            first = await _call(sender, "send_mailbox", {"to": to, "text": "one"})
            assert isinstance(first, dict) and first["refused"] is False, first
            assert first["delivered"] in ("direct", "both") and "direct_error" not in first
            second = await _call(sender, "send_mailbox", {"to": to, "text": "two"})
            assert isinstance(second, dict) and second["refused"] is True, second
            assert "refused" in second["direct_error"] and second["delivered"] == "stored"
            st = await _call(recipient, "status", {})
            assert isinstance(st, dict)
            assert st["dht"]["stored_records"] >= 1 and "dropped_oversize" in st["dht"]
            assert st["quic"]["connections"] >= 1
            pydantic_core.to_json(st)
