"""The node's answer to ``initialize``, kept so that a new stdio proxy answers at once.

A desktop app waits for ``initialize`` before it shows the server as ready; a node that must
start first (and import the MCP SDK, most of a second) made that wait 1.5 s. The proxy keeps
the node's last answer in ``<data dir>/mcp.initialize.json`` with the package version, the
MCP SDK's version and the protocol version the client asked for; a later client asking the
same protocol version of the same package on the same SDK gets that answer at once, and the
node is given the client's ``initialize`` when the proxy attaches (its answer compared with
the one given: see :mod:`.proxy`). Anything else (no file, another version, a file that does
not parse) is left to :mod:`.handshake` or the node. It serves the SDK versions
:mod:`.handshake` has no profile for, and it is what the proxy learns when the node's answer
was not the one given (the next client gets the node's).

Written atomically (temp file in the same directory, 0600 from creation, ``os.replace``);
read no further than :data:`CACHE_MAX` bytes. Standard library only (the proxy imports it).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Final

from .._random import SystemRng
from .._version import __version__

__all__ = ["CACHE_FILE", "CACHE_MAX", "InitCache"]

CACHE_FILE: Final = "mcp.initialize.json"
CACHE_MAX: Final = 256 * 1024
"""Largest cache file read (the answer is a few KB: server info, capabilities, instructions)."""


def _requested(msg: dict[str, Any]) -> str | None:
    params = msg.get("params")
    version = params.get("protocolVersion") if isinstance(params, dict) else None
    return version if isinstance(version, str) else None


class InitCache:
    """The cached ``initialize`` answer of the node of ``data_dir``."""

    def __init__(self, data_dir: Path, *, sdk: str | None, version: str = __version__) -> None:
        self.path = data_dir / CACHE_FILE
        self._version = version
        self._sdk = sdk

    def lookup(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The cached result for this ``initialize`` request, or None."""
        asked = _requested(request)
        try:
            with self.path.open("rb") as f:
                raw = f.read(CACHE_MAX + 1)
            if len(raw) > CACHE_MAX:
                return None
            data = json.loads(raw)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != self._version:
            return None
        if self._sdk is None or data.get("sdk") != self._sdk:
            return None
        result = data.get("result")
        if asked is None or data.get("protocolVersion") != asked or not isinstance(result, dict):
            return None
        return result

    def store(self, request: dict[str, Any], result: dict[str, Any]) -> None:
        """Keep the node's ``result`` for ``request`` (best effort: a failed write is
        skipped, the next client simply asks the node)."""
        asked = _requested(request)
        if asked is None or self._sdk is None:
            return
        info = result.get("serverInfo")
        if not isinstance(info, dict) or info.get("version") != self._version:
            return  # a node of another package version (still running): not ours to keep
        text = json.dumps({"version": self._version, "sdk": self._sdk, "protocolVersion": asked,
                           "result": result}, separators=(",", ":"))  # fmt: skip
        if len(text) > CACHE_MAX:
            return
        tmp = self.path.with_name(f".{self.path.name}.{SystemRng().bytes(8).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o600)  # fmt: skip
            try:
                os.write(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
