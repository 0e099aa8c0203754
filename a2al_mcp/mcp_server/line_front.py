"""Newline-delimited JSON-RPC for the SDK: bounded lines, every malformed message answered.

The SDK's stdio transport reads unbounded lines and drops what it cannot decode without a
reply. A :class:`LineWire` reads the client itself, a line of at most
``limits.mcp_message_max_bytes`` at a time, answers every line that
:func:`.guard.check_message` refuses with a JSON-RPC error, and hands the SDK only the
lines that pass (the SDK is given the wire as its ``stdin`` and ``stdout``), but for the
requests a :class:`~.direct.DirectCalls` answers itself (tool calls of an initialized
session). Two transports:
this process's stdio (:class:`~.stdio_front.StdioWire`) and a byte stream
(:class:`StreamWire`: one client of the shared node, on the hub's local channel).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc

from .direct import DirectCalls
from .guard import Checked, FrontStats, check_message, oversized

__all__ = ["LineWire", "StreamWire"]

logger = logging.getLogger(__name__)
_DISCARD = 1 << 16
_RECEIVE = 1 << 16


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
            direct, msg = self._direct, checked.message
            if direct is not None and msg is not None and await direct.take(msg, self.write):
                continue
            yield line.decode("utf-8")

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
