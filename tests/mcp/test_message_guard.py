"""The JSON-RPC message check in front of the SDK (no I/O): what passes, what is refused with
which code, and which ``id`` the error reply carries."""

from __future__ import annotations

import json
import sys

import pytest

from a2al_mcp.mcp_server._compat import validate_message
from a2al_mcp.mcp_server.guard import (
    INVALID_REQUEST,
    MAX_DEPTH,
    PARSE_ERROR,
    FrontStats,
    check_message,
)


def nested(depth: int) -> str:
    return '{"jsonrpc":"2.0","id":"n","method":"ping","params":{"a":%s}}' % (
        "[" * (depth - 2) + "]" * (depth - 2)
    )


@pytest.mark.parametrize(
    ("raw", "code", "msg_id"),
    [
        (b"\xff\xfe{}", PARSE_ERROR, None),  # not UTF-8
        ('{"jsonrpc":"2.0","id":1,"method":"ping"', PARSE_ERROR, None),  # truncated
        ('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}', PARSE_ERROR, None),
        ('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":1e999}}', PARSE_ERROR, None),
        ('{"jsonrpc":"2.0","id":3,"method":"ping","params":{"\\udfff":1}}', PARSE_ERROR, 3),
        ('{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', PARSE_ERROR, None),
        (nested(MAX_DEPTH + 1), PARSE_ERROR, "n"),
        # past the recursion limit of Python ≤ 3.12's json (no id then); 3.13's parses it,
        # so the id is known there
        (nested(5000), PARSE_ERROR, "n" if sys.version_info >= (3, 13) else None),
        ('[{"jsonrpc":"2.0","id":1,"method":"ping"}]', INVALID_REQUEST, None),  # a batch
        ('"ping"', INVALID_REQUEST, None),
        ('{"jsonrpc":"1.0","id":4,"method":"ping"}', INVALID_REQUEST, 4),
        ('{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, None),
        ('{"jsonrpc":"2.0","id":5,"method":"ping","params":[1]}', INVALID_REQUEST, 5),
        ('{"jsonrpc":"2.0","id":6,"method":7}', INVALID_REQUEST, 6),
        ('{"jsonrpc":"2.0","id":6}', INVALID_REQUEST, 6),
        ('{"jsonrpc":"2.0","id":7,"error":{"code":"x"}}', INVALID_REQUEST, 7),  # the SDK's check
    ],
)
def test_refused_with_a_reply(raw: str | bytes, code: int, msg_id: object) -> None:
    checked = check_message(raw, max_bytes=1 << 20, validate=validate_message)
    assert checked.message is None and checked.reply is not None
    assert checked.reply["error"]["code"] == code and checked.reply["id"] == msg_id
    json.dumps(checked.reply).encode("utf-8")  # the reply itself is always sendable


@pytest.mark.parametrize(
    "raw",
    [
        nested(MAX_DEPTH),
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"status",'
        '"arguments":{"n":-9223372036854775808,"f":1.5e300,"s":"\\ud83d\\ude00 ok"}}}',
        '{"jsonrpc":"2.0","method":"notifications/initialized"}',
        '{"jsonrpc":"2.0","id":"a","result":{}}',
    ],
)
def test_sane_messages_pass(raw: str) -> None:
    checked = check_message(raw, max_bytes=1 << 20, validate=validate_message)
    assert checked.reply is None and checked.message == json.loads(raw)


def test_size_limit_is_counted_apart() -> None:
    stats = FrontStats()
    big = check_message('{"jsonrpc":"2.0","method":"x"}', max_bytes=10)
    assert big.oversized and big.reply is not None
    assert "limits.mcp_message_max_bytes" in big.reply["error"]["message"]
    stats.count_refused(big)
    stats.count_refused(check_message("nope", max_bytes=10))
    assert (stats.oversized_messages, stats.malformed_messages) == (1, 1)
