"""What the LangChain and CrewAI toolkits share: one long-lived node, one portal onto its loop.

A :class:`NodeToolkit` owns a :class:`~a2al_mcp.Node` (or wraps one the caller runs) and an
anyio ``BlockingPortal`` on the node's event loop. Tool calls reach the node three ways:

- async, on the node's loop: awaited directly;
- async, on another loop (another thread): through the portal, awaited there;
- sync, from any thread but the loop's: ``portal.call`` (never ``asyncio.run`` per call, never a
  node per call). Sync from the loop's own thread would deadlock, so it is refused.

Used as ``async with`` on the loop that should run the node, or as plain ``with``: then the node
runs on a loop in a background thread that the toolkit starts and stops (for sync programs such
as a CrewAI crew).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import functools
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from anyio.from_thread import BlockingPortal, start_blocking_portal
from pydantic import BaseModel, create_model

from a2al_mcp import TOOLS, Node, NodeClosed, ToolFailure, ToolSpec, UsageError, call_tool

if TYPE_CHECKING:
    from a2al_mcp import Identity, NodeConfig

__all__ = ["NodeToolkit", "args_model", "tool_metadata"]


def _closed(message: str, cause: BaseException) -> NodeClosed:
    """What a ``NODE_CLOSED`` failure reports: a :class:`~a2al_mcp.NodeClosed` caused by
    ``cause``."""
    error = NodeClosed(message, operation="tool call")
    error.__cause__ = cause
    return error


@functools.cache
def args_model(spec: ToolSpec) -> type[BaseModel]:
    """The tool's input model as frameworks should show it: ``spec.input_model`` (its
    validators included) with factory defaults written out (``[]``, ``{}``), so the JSON schema
    a model reads states them as the MCP server's does."""
    overrides: dict[str, Any] = {}
    for name, field in spec.input_model.model_fields.items():
        if field.default_factory is not None:
            shown = copy.copy(field)
            shown.default = field.get_default(call_default_factory=True)
            shown.default_factory = None
            overrides[name] = (field.annotation, shown)
    if not overrides:
        return spec.input_model
    model: type[BaseModel] = create_model(spec.input_model.__name__, __base__=spec.input_model,
                                          __module__=spec.input_model.__module__,
                                          **overrides)  # fmt: skip
    return model


def tool_metadata(spec: ToolSpec) -> dict[str, Any]:
    """What a framework tool carries besides its name, description and arguments, as the MCP
    server shows it: the title, the four hints and the result's JSON schema (``result_model``:
    the same pydantic model the MCP server's outputSchema comes from; every result also has
    ``unread_mail``)."""
    hints = spec.hints
    return {
        "title": spec.title,
        "read_only": spec.read_only if hints is None else hints.read_only,
        "destructive": None if hints is None else hints.destructive,
        "idempotent": None if hints is None else hints.idempotent,
        "open_world": None if hints is None else hints.open_world,
        "result_model": spec.result_model,
        "result_schema": spec.result_model.model_json_schema(),
    }


class NodeToolkit:
    """A node plus the portal that lets any thread or loop run tool calls on it.

    Args:
        node: a node the caller already runs (it stays open after the toolkit closes).
            Without it the toolkit opens ``Node(config, identity)`` and closes it on exit.
        config: configuration for the node the toolkit opens.
        identity: identity for the node the toolkit opens.
        tools: names of the tools to render (default: every tool of the catalogue).
        publish: publish the node's endpoint record on entry (so others can reach it).
    """

    def __init__(
        self,
        node: Node | None = None,
        *,
        config: NodeConfig | None = None,
        identity: Identity | None = None,
        tools: Iterable[str] | None = None,
        publish: bool = False,
    ) -> None:
        if node is not None and (config is not None or identity is not None):
            raise TypeError("give a running node, or config/identity for a new one, not both")
        known = {spec.name: spec for spec in TOOLS}
        chosen = list(known) if tools is None else list(tools)
        unknown = [name for name in chosen if name not in known]
        if unknown:
            raise ValueError(f"no such tools: {', '.join(unknown)} (known: {', '.join(known)})")
        self.specs: tuple[ToolSpec, ...] = tuple(known[name] for name in chosen)
        """The catalogue entries this toolkit renders, in order."""
        self._node = node
        self._owns_node = node is None
        self._config = config
        self._identity = identity
        self._publish = publish
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._sync_stack: contextlib.ExitStack | None = None
        self._entered = False

    @property
    def node(self) -> Node:
        """The node the tools act on."""
        if self._node is None:
            raise UsageError("the toolkit is not open: use it with `async with` or `with`")
        return self._node

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise UsageError("a toolkit can be opened once")
        self._entered = True
        async with contextlib.AsyncExitStack() as stack:
            if self._owns_node:
                self._node = await stack.enter_async_context(Node(self._config, self._identity))
            self._portal = await stack.enter_async_context(BlockingPortal())
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            if self._publish:
                await self.node.publish()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        self._portal = None
        if stack is not None:
            await stack.aclose()

    def __enter__(self) -> Self:
        """Run the node on a loop in a background thread until ``__exit__``."""
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal())
            stack.enter_context(portal.wrap_async_context_manager(self))
            self._sync_stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._sync_stack = self._sync_stack, None
        if stack is not None:
            stack.__exit__(*exc)

    # -- calls ------------------------------------------------------------------------------

    def _open_portal(self) -> BlockingPortal:
        if self._portal is None:
            raise ToolFailure.from_error(
                NodeClosed("the A2AL toolkit is not open (or already closed)")
            )
        return self._portal

    async def acall(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run tool ``name`` from async code on any loop.

        Raises:
            ToolFailure: the tool failed (code and message for the model).
        """
        portal = self._open_portal()
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - called from async code
            here = None
        if here is self._loop:
            return await call_tool(self.node, name, arguments)
        future = portal.start_task_soon(call_tool, self.node, name, arguments)
        try:
            return await asyncio.wrap_future(future)
        except concurrent.futures.CancelledError as exc:
            if self._portal is None:
                error = _closed("the toolkit closed during the call", exc)
                raise ToolFailure.from_error(error) from error
            raise

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run tool ``name`` from sync code, in any thread but the node loop's own.

        Raises:
            ToolFailure: the tool failed, or the toolkit is closed (``NODE_CLOSED``).
            UsageError: called from the thread that runs the node's loop (it would deadlock;
                use the async form there).
        """
        portal = self._open_portal()
        if threading.get_ident() == self._loop_thread:
            raise UsageError(
                "a sync tool call from the thread running the node's event loop would block "
                "that loop; await the async form (ainvoke/arun) or call from another thread"
            )
        try:
            return portal.call(call_tool, self.node, name, arguments)
        except concurrent.futures.CancelledError as exc:
            error = _closed("the toolkit closed during the call", exc)
            raise ToolFailure.from_error(error) from error
        except RuntimeError as exc:
            # The portal refuses once the toolkit closed (it drops the portal before stopping
            # it) or the loop under it stopped; told by that state, not by the text.
            loop = self._loop
            if self._portal is not portal or loop is None or not loop.is_running():
                error = _closed("the A2AL toolkit is closed", exc)
                raise ToolFailure.from_error(error) from error
            raise
