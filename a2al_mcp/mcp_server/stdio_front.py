"""The stdio front of ``serve --stdio --standalone``: bounded lines, every malformed message
answered (:class:`~.line_front.LineWire` over this process's stdin and stdout).

While serving, fd 0 reads the null device and fd 1 writes to stderr (as the mcp 2 SDK does
when it owns stdio), so nothing else in the process can read the client's messages or write
stray text into the JSON-RPC stream; both are restored on exit.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import anyio
import anyio.to_thread

from ..config import LimitsConfig
from .core import ServerCore
from .direct import DirectCalls
from .guard import FrontStats
from .line_front import LineWire, serve_lines

__all__ = ["StdioWire", "claim_stdio", "serve_stdio"]


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


class StdioWire(LineWire):
    """The SDK's ``stdin`` (an async iterator of checked lines) and ``stdout``, over this
    process's stdio (blocking reads and writes in worker threads)."""

    def __init__(
        self,
        stdin: BinaryIO,
        stdout: BinaryIO,
        *,
        max_bytes: int,
        stats: FrontStats,
        validate: Callable[[dict[str, Any]], str | None] | None = None,
        direct: DirectCalls | None = None,
    ) -> None:
        super().__init__(max_bytes=max_bytes, stats=stats, validate=validate, where="stdio",
                         direct=direct)  # fmt: skip
        self._in, self._out = stdin, stdout

    async def _send(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._put, data)

    def _put(self, data: bytes) -> None:
        self._out.write(data)
        self._out.flush()

    async def _read(self, limit: int) -> bytes:
        data: bytes = await anyio.to_thread.run_sync(self._in.readline, limit,
                                                     abandon_on_cancel=True)  # fmt: skip
        return data


async def serve_stdio(
    core: ServerCore, *, limits: LimitsConfig | None = None, stats: FrontStats | None = None
) -> None:
    """MCP over this process's stdin and stdout (``serve --stdio --standalone``), every line
    checked first; the session answered as :func:`~.line_front.serve_lines` decides (the SDK
    imported only for a session that needs it)."""
    limits = limits or LimitsConfig()
    with claim_stdio() as (stdin, stdout):
        wire = StdioWire(stdin, stdout, max_bytes=limits.mcp_message_max_bytes,
                         stats=stats or FrontStats())  # fmt: skip
        await serve_lines(wire, core, limits=limits)
