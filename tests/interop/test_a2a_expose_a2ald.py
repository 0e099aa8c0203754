"""Issue 19 interop: a plain-HTTP a2a-sdk agent (uvicorn on loopback TCP) put on A2AL by our
node (``expose_a2a``, the library side of ``serve --expose a2a=URL``) is reached by a2ald 0.3.5:
its ``POST /fetch/{aid}`` with a JSON-RPC ``SendMessage`` body gets the agent's answer, the
agent reads a2ald's verified node AID in the caller header, and a2ald reads the card it is
served (with the Cache-Control of the exposed card) and the profile record carrying its hash.
Sealed namespace only (``bash .ci/test -q tests/interop/test_a2a_expose_a2ald.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx2")

from a2al_mcp import agentcall
from a2al_mcp.remote_mcp import CALLER_HEADER, ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_a2a
from a2al_mcp.testing.a2ald import A2aldNetwork
from tests.a2a_expose.http_agent import http_a2a_agent
from tests.interop.test_dht_interop import call, poll
from tests.interop.test_quic_interop import _fetch, our_node

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

HEADERS = {"Content-Type": ["application/json"], "A2A-Version": ["1.0"]}


def _send_message(text: str, rpc_id: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rpc_id, "method": "SendMessage", "params": {
        "message": {"messageId": f"m-{rpc_id}", "role": "ROLE_USER",
                    "parts": [{"text": text}]}}}).encode()  # fmt: skip


def _answer(got: dict[str, object]) -> dict[str, object]:
    body = got["body"]
    assert isinstance(body, str), got
    answer = json.loads(base64.b64decode(body))
    assert isinstance(answer, dict), answer
    return answer


async def test_a2ald_fetch_reaches_an_exposed_http_agent(a2ald_net: A2aldNetwork) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    with anyio.fail_after(120):
        async with (
            http_a2a_agent("interop.exposed") as (url, executor),
            our_node(p0.listen_addr) as node,
        ):
            exposed = await expose_a2a(node, ExposeSpec(url=url))
            assert exposed.topics == ("interop.exposed",)
            # a message: a2ald -> our node (QUIC stream) -> the agent's HTTP port
            got = await poll(lambda: _fetch(p1, node.aid, "/", _send_message("hi", 7),
                                            headers=HEADERS),
                             lambda r: r.get("status") == 200, 30,
                             "a2ald fetching the exposed agent")  # fmt: skip
            answer = _answer(got)
            assert answer["jsonrpc"] == "2.0" and answer["id"] == 7, answer
            result = answer["result"]
            assert isinstance(result, dict)
            # the HTTP agent has no A2AL context of its own: it reads the caller from the header
            assert result["message"]["role"] == "ROLE_AGENT"
            assert result["message"]["parts"] == [{"text": "echo hi from None"}]
            assert [h[CALLER_HEADER] for h in executor.headers] == [p1.node_aid]
            # a task: the agent's artifacts and final state come back through a2ald
            got = await call(_fetch, p1, node.aid, "/", _send_message("task x y", 8),
                             headers=HEADERS)  # fmt: skip
            assert got.get("status") == 200, got
            task = _answer(got)["result"]
            assert isinstance(task, dict)
            assert task["task"]["status"]["state"] == "TASK_STATE_COMPLETED", task
            texts = [p["text"] for a in task["task"]["artifacts"] for p in a["parts"]]
            assert texts == ["x", "y"]
            assert [h[CALLER_HEADER] for h in executor.headers] == [p1.node_aid] * 2
            # the card a2ald is served is the exposed one; the profile carries its hash
            raw = await call(_fetch, p1, node.aid, agentcall.CARD_PATH, method="GET")
            assert raw.get("status") == 200, raw
            card_bytes = base64.b64decode(raw["body"])
            card = json.loads(card_bytes)
            assert card["supportedInterfaces"][0]["url"] == f"a2al://{node.aid}"
            recs = await poll(lambda: p1.resolve_records(str(node.aid), 2),
                              lambda r: bool(r.get("records")), 30,
                              "a2ald reading the profile")  # fmt: skip
            profile = recs["records"][0]["profile"]
            assert profile["card_hash"] == hashlib.sha256(card_bytes).hexdigest(), profile
            assert profile["protocols"] == ["a2a"] and profile["skills"] == ["interop.exposed"]
