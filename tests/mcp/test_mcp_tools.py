"""Every MCP tool, in memory (the official mcp client against our server), on a loopback
network of real nodes: success and error paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from a2al_mcp._random import SystemRng
from a2al_mcp.identity import Aid, Identity
from a2al_mcp.mcp_server import build_server
from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.toolspec import TOOLS
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover - the mcp 1.x run uses its own client helper
    pytest.skip("in-memory client helper below is for mcp 2.x", allow_module_level=True)

from mcp import Client  # noqa: E402


async def call(client: Any, name: str, args: dict[str, Any] | None = None) -> tuple[bool, Any]:
    res = await client.call_tool(name, args or {})
    text = res.content[0].text if res.content else ""
    if res.is_error:
        return False, text
    return True, res.structured_content if res.structured_content is not None else json.loads(text)


async def hello(req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("content-type", "text/plain"),), f"hi {req.caller}".encode())


async def test_tool_list_matches_the_catalogue() -> None:
    async with network(1) as (node,), Client(build_server(node)) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert (
            set(listed)
            == {s.name for s in TOOLS}
            >= {
                "publish",
                "discover",
                "resolve",
                "connect",
                "send_mailbox",
                "read_mailbox",
                "status",
            }
        )
        for spec in TOOLS:
            assert listed[spec.name].description == spec.description
            props = listed[spec.name].input_schema.get("properties", {})
            assert set(props) == set(spec.input_model.model_fields)


async def test_every_tool_succeeds_on_a_three_node_network() -> None:
    with anyio.fail_after(60):
        async with network(3, publish=True) as (_seed, me, other), Client(build_server(me)) as c:
            other.serve(http=hello)
            await other.register_service("demo.echo", name="other", protocols=["http"])
            ok, st = await call(c, "status")
            assert ok and st["aid"] == str(me.aid) and st["ready"] and st["peers"] >= 2
            ok, pub = await call(c, "publish", {"services": ["demo.mine"], "name": "me",
                                                "tags": ["t"], "protocols": ["mcp"]})  # fmt: skip
            assert ok and pub["aid"] == str(me.aid) and pub["endpoints"]
            ok, st = await call(c, "status")  # what a record would carry is what was published
            assert ok and st["nat"]["published_endpoints"] == pub["endpoints"]
            assert st["nat"]["nat_type_words"] and 0 <= st["nat"]["nat_type"] <= 4
            ok, disc = await call(c, "discover", {"service": "demo.echo"})
            assert ok and [a["aid"] for a in disc["agents"]] == [str(other.aid)]
            ok, disc = await call(c, "discover", {"service": "demo.echo", "protocols": ["a2a"]})
            assert ok and disc["count"] == 0
            ok, res = await call(c, "resolve", {"aid": str(other.aid)})
            assert ok and res["aid"] == str(other.aid) and res["endpoints"]
            ok, got = await call(c, "fetch", {"aid": str(other.aid), "path": "/x"})
            assert ok and got["status"] == 200 and got["body"] == f"hi {me.aid}"
            ok, con = await call(c, "connect", {"aid": str(other.aid)})
            assert ok and con["connected"] and con["tunnel"].startswith("127.0.0.1:")
            ok, tl = await call(c, "tunnel_list")
            assert ok and [t["tunnel"] for t in tl["tunnels"]] == [con["tunnel"]]
            ok, _ = await call(c, "tunnel_close", {"tunnel": con["tunnel"]})
            assert ok
            ok, sent = await call(c, "send_mailbox", {"to": str(other.aid), "text": "hi other"})
            assert ok and sent["delivered"] in ("direct", "stored", "both")
            arrived = anyio.Event()
            stop = me.on_mail(lambda note: arrived.set() if note.text == "hi me" else None)
            await other.send_mailbox(me.aid, "hi me")
            await arrived.wait()
            stop()
            ok, inbox = await call(c, "read_mailbox", {"peek": True})
            assert inbox["messages"][0]["from"] == str(other.aid)
            assert inbox["messages"][0]["text"] == "hi me" and inbox["messages"][0]["id"]
            ok, inbox = await call(c, "read_mailbox")
            assert inbox["count"] == 1
            ok, inbox = await call(c, "read_mailbox")
            assert inbox["count"] == 0  # read notes are marked


async def test_errors_are_codes_and_sentences_never_tracebacks() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (seed, me), Client(build_server(me)) as c:
            stranger = str(Identity.generate(SystemRng()).aid)
            cases = [
                ("resolve", {"aid": "not-an-aid"}, "BAD_AID"),
                ("resolve", {"aid": stranger}, "NOT_FOUND"),
                ("fetch", {"aid": stranger}, "NOT_FOUND"),
                ("connect", {"aid": stranger}, "NOT_FOUND"),
                ("send_mailbox", {"to": str(seed.aid), "text": "x" * 400}, "BAD_ARGUMENTS"),
                ("send_mailbox", {"to": str(seed.aid), "text": "é" * 200}, "BAD_ARGUMENTS"),
                ("send_mailbox", {"to": stranger, "text": "hi"}, "NOT_FOUND"),
                ("discover", {"service": "x", "limit": 0}, ""),
                ("tunnel_close", {"tunnel": "127.0.0.1:1"}, "NOT_FOUND"),
                ("publish", {"ttl_s": 5}, ""),
                ("call_agent", {"to": stranger, "text": "hi"}, "NOT_FOUND"),
                ("call_agent", {"text": "hi"}, ""),
                ("call_agent", {"skill": "nobody.here", "text": "hi"}, "NOT_FOUND"),
                ("call_agent", {"to": str(seed.aid), "text": "hi"}, "ACCESS_DENIED"),
                ("get_agent_task", {"aid": stranger, "task_id": "t"}, "NOT_FOUND"),
                ("cancel_agent_task", {"aid": "zz", "task_id": "t"}, "BAD_AID"),
            ]
            for name, args, code in cases:
                ok, text = await call(c, name, args)
                assert not ok, (name, args)
                assert "Traceback" not in text and text, (name, text)
                if code:
                    assert text.startswith(f"{code}: "), (name, text)  # no SDK prefix
            ok, text = await call(c, "fetch", {"aid": str(seed.aid)})  # seed serves nothing
            assert not ok and "ACCESS_DENIED: " in text and "no service" in text


async def test_resources_subscription_and_progress() -> None:
    from a2al_mcp.mcp_server.app import INBOX_URI, STATUS_URI

    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me), Client(build_server(me)) as c:
            uris = {str(r.uri) for r in (await c.list_resources()).resources}
            assert {INBOX_URI, STATUS_URI} <= uris
            status = json.loads((await c.read_resource(STATUS_URI)).contents[0].text)
            assert status["aid"] == str(me.aid)
            progress: list[tuple[float, float | None, str | None]] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                progress.append((p, total, message))

            res = await c.call_tool("resolve", {"aid": str(other.aid)},
                                    progress_callback=on_progress)  # fmt: skip
            assert not res.is_error
            assert progress and progress[0][2] and progress[-1][0] == 1
            async with c.listen(resource_subscriptions=[INBOX_URI]) as sub:
                await other.send_mailbox(me.aid, "ping via resource")
                with anyio.fail_after(10):
                    event = await sub.__anext__()
                assert str(getattr(event, "uri", "")) == INBOX_URI
            inbox = json.loads((await c.read_resource(INBOX_URI)).contents[0].text)
            assert inbox["unread"] == 1 and inbox["messages"][0]["text"] == "ping via resource"


def owner_key(path: Path) -> tuple[str, str]:
    """The permissions of an owner key file and the key in it (hex)."""
    return oct(path.stat().st_mode & 0o777), path.read_text().split()[-1]


async def test_identity_create_persists_the_agent_and_shows_the_owner_key_once(
    tmp_path: Any,
) -> None:
    from a2al_mcp import NodeConfig
    from a2al_mcp.node import Node

    with anyio.fail_after(60):
        async with network(1) as (seed,):
            cfg = NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path,
                             bootstrap=("{}:{}".format(*seed.local_addr),))  # fmt: skip
            async with Node(cfg) as node, Client(build_server(node)) as c:
                ok, made = await call(c, "identity_create")
                assert ok and made["warning"] and "master_private_key_hex" not in made
                key_file = Path(made["owner_key_file"])
                assert key_file.parent == tmp_path / "owner-keys"
                mode, seed_hex = owner_key(key_file)
                assert mode == "0o600"
                assert len(seed_hex) == 64 and seed_hex not in json.dumps(made)
                ok, listed = await call(c, "identity_list")
                kinds = {i["aid"]: (i["kind"], i["published"]) for i in listed["identities"]}
                assert kinds[made["aid"]] == ("delegated", True)
                files = list((tmp_path / "agents").glob("*.json"))
                assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
                assert seed_hex not in files[0].read_text()
            async with Node(cfg) as node, Client(build_server(node)) as c:  # restart
                ok, listed = await call(c, "identity_list")
                assert made["aid"] in {i["aid"] for i in listed["identities"]}
            resolved = await seed.resolve(__import__("a2al_mcp").Aid.from_str(made["aid"]))
            assert resolved.record.delegation_proof() is not None


def passphrase_answers(*answers: str | None) -> Any:
    """An elicitation callback that answers each request with the next passphrase (None:
    the user declines), recording what it was asked."""
    from mcp import types

    asked: list[str] = []
    queue = list(answers)

    async def elicit(context: Any, params: Any) -> Any:
        asked.append(params.message)
        answer = queue.pop(0)
        if answer is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"passphrase": answer})

    elicit.asked = asked  # type: ignore[attr-defined]
    return elicit


async def test_identity_export_import_and_unpublish(tmp_path: Any) -> None:
    good = "correct horse"
    ask = passphrase_answers(good, "short", None)
    async with (
        network(3, publish=True) as (_seed, a, b),
        Client(build_server(a), elicitation_callback=ask) as ca,
        Client(build_server(b)) as cb,
    ):
        ok, made = await call(ca, "identity_create")
        assert ok
        ok, exp = await call(ca, "identity_export", {"aid": made["aid"]})
        assert ok and ask.asked and made["aid"] in ask.asked[0], exp  # the user was asked
        bad = {"export": exp["export"], "passphrase": "wrong pass"}
        ok, text = await call(cb, "identity_import", bad)
        assert not ok and "VERIFY: " in text
        ok, text = await call(ca, "identity_export", {})
        assert not ok and text.startswith("BAD_ARGUMENTS: ")  # at least 8 characters
        ok, text = await call(ca, "identity_export", {})
        assert not ok and text.startswith("USAGE: ") and "declined" in text
        ok, imp = await call(cb, "identity_import", {"export": exp["export"], "passphrase": good})
        assert ok and imp["aid"] == made["aid"]
        found = await a.resolve(Aid.from_str(made["aid"]))
        assert found.endpoints == (f"quic://127.0.0.1:{b.local_addr[1]}",)  # b serves it now
        ok, un = await call(ca, "unpublish")
        assert ok and un["stopped"] and a.aid not in a.status().published


async def test_legacy_subscribers_are_told_and_server_info_names_us() -> None:
    """Issue 16 items 6 and 8: a client on the initialize handshake (protocol ≤ 2025-11-25,
    today's desktop apps) can ``resources/subscribe`` to the inbox and is told when a note
    arrives (mcp 2 answered -32601); ``serverInfo`` carries our name, title and version
    (the version was ``""``)."""
    from a2al_mcp import __version__
    from a2al_mcp.mcp_server.app import INBOX_URI, TITLE

    told: list[str] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", "") == "notifications/resources/updated":
            told.append(str(message.params.uri))
            arrived.set()

    with anyio.fail_after(60):
        async with (
            network(2, publish=True) as (other, me),
            Client(build_server(me), mode="legacy", message_handler=on_message) as c,
        ):
            info = c.server_info
            assert (info.name, info.title, info.version) == ("a2al", TITLE, __version__)
            assert c.server_capabilities.resources.subscribe
            with pytest.warns(Warning, match="resources/(un)?subscribe is removed"):
                await c.subscribe_resource(INBOX_URI)
            await other.send_mailbox(me.aid, "for a legacy subscriber")
            with anyio.fail_after(10):
                await arrived.wait()
            assert told == [INBOX_URI]
            with pytest.warns(Warning, match="resources/(un)?subscribe is removed"):
                await c.unsubscribe_resource(INBOX_URI)
            arrived = anyio.Event()
            await other.send_mailbox(me.aid, "nobody is told of this one")
            assert len(await me.read_mailbox(peek=True)) == 2  # it is in
            with anyio.move_on_after(1):  # a notification would come within this
                await arrived.wait()
            assert told == [INBOX_URI]
