"""serve_a2a's repeat cache answers a repeated ``messageId`` in the binding it came on: the
same message sent over JSON-RPC and then over HTTP+JSON (as the A2A conformance suite does,
one message id per scenario over each binding) gets an HTTP+JSON answer the second time."""

from __future__ import annotations

import json

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")

from a2al_mcp.agentcall import DELIVERY_HEADER
from tests.adapters.demo_agent import serve_demo
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

HEADERS = [
    ("content-type", "application/json"),
    ("a2a-version", "1.0"),
    (DELIVERY_HEADER, "d-both"),
]  # an outbox trying again
MESSAGE = {"messageId": "m-both", "role": "ROLE_USER", "parts": [{"text": "hi"}]}


async def test_a_repeat_over_the_other_binding_is_answered_in_that_binding() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent, caller):
            executor = await serve_demo(agent)
            rpc = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                   "params": {"message": MESSAGE}}  # fmt: skip
            first = await caller.fetch(agent.aid, "POST", "/", headers=HEADERS,
                                       body=json.dumps(rpc).encode())  # fmt: skip
            assert json.loads(first.body)["result"]["message"]["parts"] == [
                {"text": f"echo hi from {caller.aid}"}
            ]
            rest = await caller.fetch(agent.aid, "POST", "/message:send", headers=HEADERS,
                                      body=json.dumps({"message": MESSAGE}).encode())  # fmt: skip
            answer = json.loads(rest.body)
            assert rest.status == 200 and "jsonrpc" not in answer, answer
            assert answer["message"]["parts"] == [{"text": f"echo hi from {caller.aid}"}]
            # and a repeat over HTTP+JSON is dropped as before
            again = await caller.fetch(agent.aid, "POST", "/message:send", headers=HEADERS,
                                       body=json.dumps({"message": MESSAGE}).encode())  # fmt: skip
            assert json.loads(again.body) == answer
            assert executor.callers == [str(caller.aid)] * 2
