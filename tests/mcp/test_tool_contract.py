"""The MCP tool contract as a strict client sees it (issue 16, "strict, honest tool
contract"): closed input schemas, one error format, protocol lengths, titles and hints,
typed output schemas, 64-bit numbers as text, publish without services, one time format,
secrets kept from the model, and the unread-mail count in every result."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from a2al_mcp.identity import Aid
from a2al_mcp.mcp_server import build_server
from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.toolspec import TOOLS
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover - the mcp 1.x run has its own tests
    pytest.skip("in-memory client for mcp 2.x", allow_module_level=True)

from mcp import Client  # noqa: E402


async def call(client: Any, name: str, args: Any = None) -> tuple[bool, Any]:
    res = await client.call_tool(name, {} if args is None else args)
    text = res.content[0].text if res.content else ""
    if res.is_error:
        return False, text
    return True, res.structured_content


async def send_notes(sender: Any, to: Any, *texts: str) -> None:
    """Send ``texts`` from ``sender`` to ``to`` and wait until ``to`` has them all."""
    arrived = anyio.Event()
    seen: list[Any] = []

    def on_note(note: Any) -> None:
        seen.append(note)
        if len(seen) >= len(texts):
            arrived.set()

    stop = to.on_mail(on_note)
    try:
        for text in texts:
            await sender.send_mailbox(to.aid, text)
        with anyio.fail_after(10):
            await arrived.wait()
    finally:
        stop()


def refused(text: str, code: str = "BAD_ARGUMENTS") -> bool:
    """``CODE: sentence`` and nothing the SDK or pydantic would add."""
    return (
        text.startswith(f"{code}: ")
        and "Error executing tool" not in text
        and "validation error" not in text
        and "pydantic" not in text
        and len(text) < 600
    )


async def test_input_schemas_are_closed_and_unknown_arguments_are_refused() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me), Client(build_server(me)) as c:
            for t in (await c.list_tools()).tools:
                assert t.input_schema.get("additionalProperties") is False, t.name
            await send_notes(other, me, "still unread")
            ok, text = await call(c, "read_mailbox", {"peak": True})
            assert not ok and refused(text)
            assert "unknown argument 'peak' (did you mean 'peek'?)" in text
            assert len(await me.read_mailbox(peek=True)) == 1  # nothing was marked read
            ok, text = await call(c, "publish", {"service": ["demo.x"]})
            assert not ok and "did you mean 'services'?" in text
            ok, text = await call(c, "discover", {"service": "demo.x", "tag": ["a"]})
            assert not ok and "did you mean 'tags'?" in text


async def test_every_failure_is_a_code_and_a_sentence() -> None:
    async with network(1) as (me,), Client(build_server(me)) as c:
        cases: list[tuple[str, Any, str]] = [
            ("discover", {"limit": "x"}, "BAD_ARGUMENTS"),  # and service missing
            ("discover", {"service": "a", "limit": 0}, "BAD_ARGUMENTS"),
            ("read_mailbox", {"peek": "sometimes"}, "BAD_ARGUMENTS"),
            ("call_agent", {"text": "hi"}, "BAD_ARGUMENTS"),
            ("fetch", {"aid": str(me.aid), "method": "BREW"}, "BAD_ARGUMENTS"),
            ("no_such_tool", {}, "UNKNOWN_TOOL"),
        ]
        for name, args, code in cases:
            ok, text = await call(c, name, args)
            assert not ok and refused(text, code), (name, text)


async def test_lengths_are_checked_against_the_protocol_and_never_echoed() -> None:
    huge = "a0" + "b" * 1_000_000
    async with network(1) as (me,), Client(build_server(me)) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        props = {n: t.input_schema["properties"] for n, t in tools.items()}
        assert props["resolve"]["aid"]["maxLength"] <= 64
        assert props["discover"]["service"]["maxLength"] <= 512
        assert props["send_mailbox"]["text"]["maxLength"] == 389
        assert props["publish"]["brief"]["maxLength"] == 140
        assert props["publish"]["name"]["maxLength"]
        assert props["publish"]["tags"]["items"]["maxLength"]
        for name, args in [
            ("resolve", {"aid": huge}),
            ("discover", {"service": huge}),
            ("publish", {"services": [huge]}),
            ("send_mailbox", {"to": str(me.aid), "text": "é" * 200}),  # 400 bytes
            ("call_agent", {"to": huge, "text": "x"}),
        ]:
            ok, text = await call(c, name, args)
            assert not ok and refused(text), (name, text[:200])
        ok, text = await call(c, "publish", {"services": ["a.b"], "meta": {"k": "x" * 600}})
        assert not ok and refused(text, "LIMIT") and "512" in text  # a registration's limit
        ok, text = await call(c, "publish", {"name": "n", "meta": {"k": "x" * 800}})
        assert not ok and refused(text, "LIMIT") and "700" in text  # the profile's limit
        assert not me.status().published  # refused before anything was published
        ok, text = await call(c, "resolve", {"aid": "z" * 60})  # within the length: BAD_AID
        assert not ok and text.startswith("BAD_AID: ") and len(text) < 300


async def test_titles_and_all_four_hints_are_set_truthfully() -> None:
    async with network(1) as (me,), Client(build_server(me)) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        for t in tools.values():
            a = t.annotations
            assert t.title and a is not None and a.title == t.title, t.name
            hints = (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)
            assert None not in hints, t.name

        def hints(name: str) -> tuple[bool | None, ...]:
            a = tools[name].annotations
            assert a is not None
            return (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)

        assert hints("status") == (True, False, True, False)
        assert hints("send_mailbox") == (False, False, False, True)
        assert hints("read_mailbox") == (False, False, False, False)
        assert hints("publish") == (False, False, True, True)
        assert hints("unpublish")[:2] == (False, True)
        assert hints("tunnel_close")[1] is True
        for name in ("connect", "fetch", "call_agent"):
            assert hints(name)[0:2] == (False, False) and hints(name)[3], name
        assert hints("resolve")[0] and hints("discover")[0] and hints("identity_list") == (
            True, False, True, False)  # fmt: skip


async def test_output_schemas_list_the_fields() -> None:
    async with network(1) as (me,), Client(build_server(me)) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        for spec in TOOLS:
            schema = tools[spec.name].output_schema
            assert schema and "unread_mail" in schema["properties"], spec.name
            assert len(schema["properties"]) >= 2, spec.name
        assert tools["resolve"].output_schema["properties"]["seq"]["type"] == "string"
        assert {"endpoints", "profile", "services"} <= set(
            tools["publish"].output_schema["properties"])  # fmt: skip


async def test_resolve_gives_the_64_bit_seq_as_text() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me), Client(build_server(me)) as c:
            ok, res = await call(c, "resolve", {"aid": str(other.aid)})
            found = await me.resolve(other.aid)
            assert ok and res["seq"] == str(found.seq) and found.seq > 2**53


async def test_publish_without_services_keeps_name_brief_and_meta() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me), Client(build_server(me)) as c:
            ok, pub = await call(c, "publish", {"name": "solo", "brief": "no services",
                                                "meta": {"k": 1}})  # fmt: skip
            assert ok and pub["profile"] and pub["services"] == []
            profile = await other.profile(me.aid)
            assert (profile.name, profile.brief, dict(profile.meta)) == (
                "solo", "no services", {"k": 1})  # fmt: skip
            ok, text = await call(c, "publish", {"tags": ["fr"]})
            assert not ok and refused(text) and "services" in text


async def test_read_mailbox_and_the_inbox_resource_share_one_time_format() -> None:
    from a2al_mcp.mcp_server.app import INBOX_URI

    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me), Client(build_server(me)) as c:
            await send_notes(other, me, "when?")
            inbox = json.loads((await c.read_resource(INBOX_URI)).contents[0].text)
            ok, read = await call(c, "read_mailbox", {"peek": True})
            assert ok
            seen, listed = inbox["messages"][0], read["messages"][0]
            for key in ("received_at", "received_at_epoch"):
                assert seen[key] == listed[key], key
            assert isinstance(seen["received_at"], str) and seen["received_at"].endswith("Z")
            assert isinstance(seen["received_at_epoch"], int)


async def test_results_carry_the_unread_mail_count() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me), Client(build_server(me)) as c:
            ok, st = await call(c, "status")
            assert ok and st["unread_mail"] == 0
            await send_notes(other, me, "one", "two")
            ok, ids = await call(c, "identity_list")
            assert ok and ids["unread_mail"] == 2
            ok, read = await call(c, "read_mailbox", {"limit": 1})
            assert ok and read["count"] == 1 and read["unread_mail"] == 1
            ok, st = await call(c, "status")
            assert ok and st["unread_mail"] == 1


async def test_secrets_never_pass_through_the_model(tmp_path: Any) -> None:
    async with network(1) as (me,), Client(build_server(me)) as c:  # no elicitation
        ok, made = await call(c, "identity_create")
        assert ok and "owner_key_file" in made
        assert not any(len(str(v)) == 64 for v in made.values())  # no hex key anywhere
        ok, text = await call(c, "identity_export", {"aid": made["aid"]})
        assert not ok and refused(text, "USAGE") and "a2al-mcp identity export" in text
        ok, text = await call(c, "identity_export", {"passphrase": "from the model"})
        assert not ok and refused(text) and "passphrase" in text
        schema = {t.name: t for t in (await c.list_tools()).tools}["identity_export"]
        assert "passphrase" not in schema.input_schema["properties"]
    assert Aid.from_str(made["aid"])
