"""Newline-delimited JSON-RPC: bounded lines, every malformed message answered, and who
answers a session (:func:`serve_lines`): the node's own :class:`~.session.LineSession`, or
the SDK.

The SDK's stdio transport reads unbounded lines and drops what it cannot decode without a
reply. A :class:`LineWire` reads the client itself, a line of at most
``limits.mcp_message_max_bytes`` at a time, answers every line that
:func:`.guard.check_message` refuses with a JSON-RPC error, and hands the SDK only the
lines that pass (the SDK is given the wire as its ``stdin`` and ``stdout``), but for the
requests a :class:`~.direct.DirectCalls` answers itself (tool calls of an initialized
session). Two transports:
this process's stdio (:class:`~.stdio_front.StdioWire`) and a byte stream
(:class:`StreamWire`: one client of the shared node, on the hub's local channel).

:func:`serve_lines` decides who answers a session by its first request, as the SDK decides
a session's protocol era: a plain ``initialize`` (what every desktop app sends first; see
:func:`~a2al_mcp.mcp_handshake.plain_request`) opens a :class:`~.session.LineSession`, and
the ``mcp`` SDK is not imported; anything else (a 2026-07-28 request such as the mcp 2.3
client's ``server/discover`` probe, an ``initialize`` only the SDK's models can judge, a
request before ``initialize``) goes, with the notifications before it, to the SDK's server,
built then (:meth:`~.core.ServerCore.sdk_server`). So the SDK is imported only by the node
whose clients need it, and a session is never handed over midway.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc

from ..config import LimitsConfig
from ..mcp_handshake import plain_request
from .core import ServerCore
from .direct import DirectCalls
from .guard import Checked, FrontStats, check_message, oversized

__all__ = ["OPENING_MAX", "LineWire", "StreamWire", "serve_lines", "serve_stream"]

logger = logging.getLogger(__name__)
_DISCARD = 1 << 16
_RECEIVE = 1 << 16
OPENING_MAX = 8
"""Messages before a session's first request kept for whoever answers it (the SDK keeps as
many); later ones are dropped."""
Message = tuple[bytes, dict[str, Any]]


class LineWire:
    """The SDK's ``stdin`` (an async iterator of checked lines) and ``stdout``; subclasses
    read a line of at most ``limit`` bytes (``_read``) and send bytes (``_send``)."""

    def __init__(
        self,
        *,
        max_bytes: int,
        stats: FrontStats,
        validate: Callable[[dict[str, Any]], str | None] | None = None,
        where: str,
        direct: DirectCalls | None = None,
    ) -> None:
        self._max = max_bytes
        self._direct = direct
        self._stats = stats
        self._validate = validate
        self._where = where
        self._lock = anyio.Lock()
        self._replay: list[Message] = []

    def use_direct(self, direct: DirectCalls | None) -> None:
        """Let ``direct`` take the requests it answers before the SDK sees them."""
        self._direct = direct

    def replay(self, messages: list[Message]) -> None:
        """Give these (already read and checked) first to whoever iterates the wire."""
        self._replay = list(messages)

    async def _read(self, limit: int) -> bytes:
        raise NotImplementedError

    async def _send(self, data: bytes) -> None:
        raise NotImplementedError

    # --- stdout, as the SDK uses it
    async def write(self, text: str) -> None:
        if self._direct is not None:
            self._direct.note_outgoing(text)
        data = text.encode("utf-8")
        async with self._lock:
            await self._send(data)

    async def flush(self) -> None:
        return None  # every write is flushed

    # --- stdin
    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        async for line, msg in self.messages():
            direct = self._direct
            if direct is not None and await direct.take(msg, self.write):
                continue
            yield line.decode("utf-8")

    async def messages(self) -> AsyncGenerator[Message, None]:
        """Each checked message (its line and its JSON) until EOF, those given to
        :meth:`replay` first; a malformed or oversized line is answered here."""
        while self._replay:
            yield self._replay.pop(0)
        while True:
            line = await self._read(self._max + 2)  # room for CR LF
            if not line:
                return  # EOF
            if not line.endswith(b"\n") and len(line) >= self._max + 2:
                size = len(line) + await self._discard_rest()
                await self._refuse(oversized(size, self._max))
                continue
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            checked = check_message(line, max_bytes=self._max, validate=self._validate)
            if checked.reply is not None:
                await self._refuse(checked)
                continue
            if checked.message is not None:
                yield line, checked.message

    async def _discard_rest(self) -> int:
        skipped = 0
        while True:
            part = await self._read(_DISCARD)
            skipped += len(part)
            if not part or part.endswith(b"\n"):
                return skipped

    async def _refuse(self, checked: Checked) -> None:
        self._stats.count_refused(checked)
        logger.warning("mcp.malformed (%s) %s", self._where, checked.summary())
        await self.write(json.dumps(checked.reply, separators=(",", ":")) + "\n")


class StreamWire(LineWire):
    """A :class:`LineWire` over a byte stream (one client on the hub's local channel)."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        max_bytes: int,
        stats: FrontStats,
        validate: Callable[[dict[str, Any]], str | None] | None = None,
        direct: DirectCalls | None = None,
    ) -> None:
        super().__init__(max_bytes=max_bytes, stats=stats, validate=validate, where="hub",
                         direct=direct)  # fmt: skip
        self._stream = stream
        self._buf = bytearray()
        self._eof = False

    async def _send(self, data: bytes) -> None:
        await self._stream.send(data)

    async def _read(self, limit: int) -> bytes:
        """Up to and including the next newline, at most ``limit`` bytes (less at EOF)."""
        while True:
            end = self._buf.find(b"\n", 0, limit)
            if end >= 0:
                return self._take(end + 1)
            if len(self._buf) >= limit or self._eof:
                return self._take(min(limit, len(self._buf)))
            try:
                self._buf += await self._stream.receive(_RECEIVE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._eof = True

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


async def serve_lines(wire: LineWire, core: ServerCore, *, limits: LimitsConfig) -> None:
    """Serve one MCP session on ``wire`` until the client hangs up (see the module doc for
    who answers it)."""
    from .session import LineSession

    opening: list[Message] = []
    first: Message | None = None
    reader = wire.messages()
    try:
        async for line, msg in reader:
            if "method" in msg and "id" in msg:
                first = (line, msg)
                break
            if len(opening) < OPENING_MAX:
                opening.append((line, msg))
    finally:
        await reader.aclose()
    if first is None:
        return  # the client left before its first request
    opening.append(first)
    line, msg = first
    plain = msg["method"] == "initialize" and plain_request(
        msg, len(line), max_bytes=limits.mcp_message_max_bytes
    )
    if not (core.direct and plain):
        from ._compat import serve_wire

        logger.info("mcp.session_to_sdk first=%s", str(msg["method"])[:64])
        wire.replay(opening)
        await serve_wire(core.sdk_server(), wire, limits=limits)
        return
    async with anyio.create_task_group() as tg:
        session = LineSession(core, wire.write, tg, limits)
        for _, message in opening:
            await session.handle(message)
        async for _, message in wire.messages():
            await session.handle(message)
        tg.cancel_scope.cancel()  # the client hung up: its running calls end (as the SDK's)


async def serve_stream(
    core: ServerCore,
    stream: anyio.abc.ByteStream,
    *,
    limits: LimitsConfig | None = None,
    stats: FrontStats | None = None,
) -> None:
    """One MCP session over a byte stream (a client of the shared node on the hub's local
    channel), every line checked first; returns when the client hangs up."""
    limits = limits or LimitsConfig()
    wire = StreamWire(stream, max_bytes=limits.mcp_message_max_bytes,
                      stats=stats or FrontStats())  # fmt: skip
    await serve_lines(wire, core, limits=limits)
