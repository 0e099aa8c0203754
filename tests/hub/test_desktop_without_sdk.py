"""Issue 16, the idle node's memory: a desktop client's whole session through the shared
node never imports the ``mcp`` SDK in the node process (about 22 MiB of it).

The real thing: ``a2al-mcp serve --stdio`` (the proxy a desktop app starts) in a subprocess,
which starts the data directory's node; the official mcp client speaks the handshake era to
it, as desktop apps do (``mode="legacy"``: ``initialize`` first). The node says whether it
has loaded the SDK in ``node status`` (``mcp_sdk_loaded``, :meth:`NodeHub.describe`): a
process fact read from outside, no test hook in the node.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from a2al_mcp import Aid
from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.toolspec import TOOLS
from tests.hub.test_shared_node import node_status, serve_args, stop_node
from tests.mcp.toolcall import call
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover
    pytest.skip("mcp 2.x client", allow_module_level=True)

from mcp import Client, StdioServerParameters  # noqa: E402

from a2al_mcp.mcp_server.app import INBOX_URI, STATUS_URI  # noqa: E402
from tests.mcp.test_mcp_tools import passphrase_answers  # noqa: E402


async def test_a_desktop_session_leaves_the_sdk_unloaded_in_the_node(tmp_path: Path) -> None:
    home = tmp_path / "home"
    told: list[str] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", "") == "notifications/resources/updated":
            told.append(str(message.params.uri))
            arrived.set()

    user = passphrase_answers("desktop passphrase")
    try:
        with anyio.fail_after(120):
            async with network(1) as (seed,):
                params = StdioServerParameters(command=sys.executable,
                                               args=serve_args(home, seed))  # fmt: skip
                async with Client(params, mode="legacy", message_handler=on_message,
                                  elicitation_callback=user) as c:  # fmt: skip
                    assert c.server_info is not None and c.server_info.name == "a2al"
                    assert c.server_capabilities.resources.subscribe
                    listed = (await c.list_tools()).tools
                    assert {t.name for t in listed} == {s.name for s in TOOLS}
                    assert all(t.input_schema["additionalProperties"] is False for t in listed)
                    uris = {str(r.uri) for r in (await c.list_resources()).resources}
                    assert uris == {INBOX_URI, STATUS_URI}
                    read = await c.read_resource(STATUS_URI)
                    status = json.loads(read.contents[0].text)  # type: ignore[union-attr]
                    assert Aid.from_str(status["aid"])
                    with pytest.warns(Warning, match="resources/subscribe is removed"):
                        await c.subscribe_resource(INBOX_URI)
                    me = (await call(c, "publish"))["aid"]
                    assert me == status["aid"]
                    await seed.send_mailbox(Aid.from_str(me), "to the desktop")
                    await arrived.wait()
                    assert told == [INBOX_URI]
                    inbox = await call(c, "read_mailbox", {"peek": True})
                    assert inbox["messages"][0]["text"] == "to the desktop"
                    exported = await call(c, "identity_export")  # asks the user: elicitation
                    assert user.asked and json.loads(exported["export"])["aid"] == me
                    shown = await anyio.to_thread.run_sync(node_status, home)
                    assert shown["clients"] == 1
                    assert shown["mcp_sdk_loaded"] is False
    finally:
        stop_node(home)
