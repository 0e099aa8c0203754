"""The one error tree: every class exported, every tool failure code a class's code, context
in attributes, causes kept."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path
from typing import Any

import anyio
import pytest

import a2al_mcp
import a2al_mcp.errors as errors_module
from a2al_mcp import NodeConfig, errors
from a2al_mcp.cli import EXIT_CODES
from a2al_mcp.node import Node
from a2al_mcp.toolspec import ToolFailure, call_tool

ROOT = Path(__file__).resolve().parents[2]
TREE = [
    obj
    for obj in vars(errors_module).values()
    if isinstance(obj, type) and issubclass(obj, errors.A2ALError)
]
CODES = {cls.code: cls for cls in TREE}


def test_every_error_is_an_a2al_error_with_a_code() -> None:
    classes = [getattr(errors_module, name) for name in errors.__all__]
    codes = [cls.code for cls in classes]
    assert all(issubclass(cls, errors.A2ALError) for cls in classes)
    assert len(set(codes)) == len(codes)
    assert set(classes) == set(TREE)  # every class defined in errors.py is public there


def test_timeout_is_also_builtin_timeout() -> None:
    assert issubclass(errors.RequestTimeout, TimeoutError)
    exc = errors.ConnectionClosed("bye", error_code=7)
    assert (exc.error_code, exc.reason, str(exc)) == (7, "bye", "bye")
    assert str(errors.NodeClosed()) == "NodeClosed"


def test_context_is_in_attributes_and_plain_raises_keep_working() -> None:
    plain = errors.NotFound("no endpoint record")
    assert (plain.aid, plain.operation, plain.path, plain.hint) == (None, None, None, "")
    assert str(plain) == plain.message == "no endpoint record"
    aid = a2al_mcp.Identity.generate(a2al_mcp.SeededRng(1)).aid
    full = errors.Unreachable("it did not answer", aid=aid, operation="connect",
                              hint="leave it a note")  # fmt: skip
    assert str(full) == "it did not answer; leave it a note"
    assert (full.message, full.aid, full.operation) == ("it did not answer", aid, "connect")
    denied = errors.AccessDenied("refused", reason="no service", aid=aid)
    assert (denied.reason, denied.aid, denied.code) == ("no service", aid, "ACCESS_DENIED")
    agent = errors.AgentCallError("error -32601", -32601, http_status=200, operation="GetTask")
    assert (agent.rpc_code, agent.http_status, agent.operation) == (-32601, 200, "GetTask")
    # attributes survive pickling (the default reduce keeps __dict__)
    back = pickle.loads(pickle.dumps(full))
    assert (type(back), str(back), back.aid, back.operation) == (
        errors.Unreachable, str(full), aid, "connect")  # fmt: skip


def _source_files() -> list[Path]:
    return sorted(p for d in ("a2al_mcp", "adapters") for p in (ROOT / d).rglob("*.py"))


def test_every_literal_tool_failure_code_is_a_class_code() -> None:
    """Walk the sources: a ``ToolFailure(...)`` built with a literal code uses a code of the
    tree (call_tool builds the others from an A2ALError, checked below at run time)."""
    literal: list[tuple[str, object]] = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                first = node.args[0]
                if name == "ToolFailure" and isinstance(first, ast.Constant):
                    literal.append((path.name, first.value))
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_RETRYABLE" for t in node.targets
            ):  # the codes the CrewAI adapter retries (CrewAI is not installed here)
                literal += [(path.name, c.value) for c in ast.walk(node.value)
                            if isinstance(c, ast.Constant)]  # fmt: skip
    assert any(name == "crewai.py" for name, _ in literal)
    assert all(code in CODES for _, code in literal), literal
    assert set(EXIT_CODES) <= set(CODES)


async def _failure(node: Any, name: str, args: dict[str, Any]) -> ToolFailure:
    with anyio.fail_after(30), pytest.raises(ToolFailure) as info:
        await call_tool(node, name, args)
    failure = info.value
    assert failure.error is not None and failure.__cause__ is failure.error
    assert failure.code == failure.error.code and failure.code in CODES
    assert str(failure) == f"{failure.code}: {failure.error}"
    return failure


@pytest.mark.anyio
async def test_every_tool_failure_carries_an_error_of_the_tree(tmp_path: Path) -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path)) as node:
        unknown = await _failure(node, "no_such_tool", {})
        assert type(unknown.error) is errors.UnknownTool
        assert unknown.message == "there is no tool 'no_such_tool'"

        extra = await _failure(node, "resolve", {"aid": "a0" + "11" * 20, "extra": 2})
        assert type(extra.error) is errors.BadArguments and extra.tool == "resolve"
        assert "unknown argument 'extra'" in extra.message  # refused before validation

        bad = await _failure(node, "resolve", {"aid": 1})
        assert type(bad.error) is errors.BadArguments and bad.tool == "resolve"
        assert isinstance(bad.error.__cause__, ValueError)  # pydantic's ValidationError

        usage = await _failure(node, "resolve", {"aid": "\ud800"})
        assert type(usage.error) is errors.UsageError

        bad_aid = await _failure(node, "resolve", {"aid": "zz"})
        assert type(bad_aid.error) is errors.BadAid
        assert isinstance(bad_aid.error.__cause__, errors.DecodeError)
        assert bad_aid.message.endswith("; an AID is 42 hex characters starting with a0")
        assert bad_aid.error.hint == "an AID is 42 hex characters starting with a0"

        missing = await _failure(node, "tunnel_close", {"tunnel": "127.0.0.1:1"})
        assert type(missing.error) is errors.NotFound and missing.tool == "tunnel_close"
        assert str(missing) == "NOT_FOUND: no open tunnel at 127.0.0.1:1; tunnel_list shows them"
        assert missing.error.operation == "tunnel_close"

    # a tool that fails unexpectedly (here: given no node at all) is INTERNAL, with the
    # unexpected exception kept as the cause of the InternalError
    internal = await _failure(None, "status", {})
    assert type(internal.error) is errors.InternalError
    assert isinstance(internal.error.__cause__, AttributeError)
    assert internal.message == "an unexpected error happened; the server log has details"
