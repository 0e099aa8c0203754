"""The stdio front of ``serve --stdio``: bounded lines, every malformed message answered.

The SDK's stdio transport reads unbounded lines and drops what it cannot decode without a
reply. :class:`StdioWire` reads stdin itself, a line of at most
``limits.mcp_message_max_bytes`` at a time, answers every line that
:func:`.guard.check_message` refuses with a JSON-RPC error, and hands the SDK only the
lines that pass (the SDK is given this object as its ``stdin`` and ``stdout``).

While serving, fd 0 reads the null device and fd 1 writes to stderr (as the mcp 2 SDK does
when it owns stdio), so nothing else in the process can read the client's messages or write
stray text into the JSON-RPC stream; both are restored on exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, BinaryIO

import anyio
import anyio.to_thread

from .guard import Checked, FrontStats, check_message, oversized

__all__ = ["StdioWire", "claim_stdio"]

logger = logging.getLogger(__name__)
_DISCARD = 1 << 16


@contextlib.contextmanager
def claim_stdio() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """Private handles on the client's stdin and stdout; fds 0 and 1 diverted meanwhile."""
    saved: list[tuple[int, int]] = []
    try:
        for fd in (0, 1):
            private = os.dup(fd)
            spare = os.open(os.devnull, os.O_RDONLY) if fd == 0 else os.dup(2)
            try:
                os.dup2(spare, fd)
            finally:
                os.close(spare)
            saved.append((fd, private))
    except OSError:  # pragma: no cover - no descriptors to spare: serve in place
        for fd, private in reversed(saved):
            os.dup2(private, fd)
        saved = []
    stdin: BinaryIO = sys.stdin.buffer
    stdout: BinaryIO = sys.stdout.buffer
    if saved:  # closefd=False: a reader thread may still block on it after we return
        stdin = os.fdopen(saved[0][1], "rb", closefd=False)
        stdout = os.fdopen(saved[1][1], "wb", closefd=False)
    try:
        yield stdin, stdout
    finally:
        with contextlib.suppress(OSError, ValueError):
            stdout.flush()
        for fd, private in saved:
            with contextlib.suppress(OSError):
                os.dup2(private, fd)


class StdioWire:
    """The SDK's ``stdin`` (an async iterator of checked lines) and ``stdout``."""

    def __init__(
        self,
        stdin: BinaryIO,
        stdout: BinaryIO,
        *,
        max_bytes: int,
        stats: FrontStats,
        validate: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        self._in, self._out = stdin, stdout
        self._max = max_bytes
        self._stats = stats
        self._validate = validate
        self._lock = anyio.Lock()

    # --- stdout, as the SDK uses it
    async def write(self, text: str) -> None:
        data = text.encode("utf-8")
        async with self._lock:
            await anyio.to_thread.run_sync(self._put, data)

    async def flush(self) -> None:
        return None  # every write is flushed

    def _put(self, data: bytes) -> None:
        self._out.write(data)
        self._out.flush()

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
            yield line.decode("utf-8")

    async def _read(self, limit: int) -> bytes:
        data: bytes = await anyio.to_thread.run_sync(self._in.readline, limit,
                                                     abandon_on_cancel=True)  # fmt: skip
        return data

    async def _discard_rest(self) -> int:
        skipped = 0
        while True:
            part = await self._read(_DISCARD)
            skipped += len(part)
            if not part or part.endswith(b"\n"):
                return skipped

    async def _refuse(self, checked: Checked) -> None:
        self._stats.count_refused(checked)
        logger.warning("mcp.malformed (stdio) %s", checked.summary())
        await self.write(json.dumps(checked.reply, separators=(",", ":")) + "\n")
