"""The local channel to the one node process of a data directory: where it is, who may use it.

A node that serves MCP clients through the hub (``a2al-mcp node run``) listens on a local
channel and describes it in ``<data dir>/mcp.channel`` (JSON, 0600, written atomically):

- ``unix``: a Unix socket ``<data dir>/mcp.sock`` (0600, in the 0700 data directory): only the
  same user can open it. The default on POSIX when the path fits ``sun_path``.
- ``tcp``: a loopback TCP port. Windows has no ``AF_UNIX`` in Python; there (or with
  ``hub.channel = "tcp"``) the only thing that keeps other local users out is the token, a
  fresh 128-bit secret per node start that lives in the 0600 ``mcp.channel`` file.

Every connection starts with one line from the client, ``A2AL-MCP/1 <verb> <token>``, where
verb is ``mcp`` (the rest of the connection is newline-delimited JSON-RPC, as over stdio),
``status`` or ``stop``; the node answers ``OK <json>`` or ``NO <code>: <reason>`` (one line
each; codes ``hello`` and ``busy``).
The token is checked on both kinds of channel (constant-time compare).

Standard library only: the stdio proxy imports this, and it must stay small (issue 16's
≤ 20 MB per proxy).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "CHANNEL_FILE",
    "HELLO_MAGIC",
    "SOCKET_FILE",
    "ChannelError",
    "ChannelInfo",
    "Verb",
    "connect",
    "parse_hello",
    "read_info",
    "unix_supported",
]

CHANNEL_FILE: Final = "mcp.channel"
SOCKET_FILE: Final = "mcp.sock"
HELLO_MAGIC: Final = "A2AL-MCP/1"
HELLO_MAX: Final = 256
"""Longest hello line (either way) read from the other side."""
REPLY_MAX: Final = 4096
"""Longest ``OK <json>`` answer read by a client."""
INFO_MAX: Final = 4096
"""Largest ``mcp.channel`` file read."""
SUN_PATH_MAX: Final = 100
"""Longest Unix socket path used (macOS allows 104 bytes, Linux 108)."""

Verb = Literal["mcp", "status", "stop"]
VERBS: Final[frozenset[str]] = frozenset({"mcp", "status", "stop"})


class ChannelError(Exception):
    """No node answers on the channel, or it refused us; ``reason`` says which.

    ``refused`` is the first word of a live node's ``NO`` answer (``busy``: its client limit;
    ``hello``: a bad hello or token), None when no node answered."""

    def __init__(
        self, reason: str, *, path: Path | None = None, refused: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.refused = refused


def unix_supported(path: Path) -> bool:
    """True when a Unix socket can live at ``path`` on this platform."""
    return (
        sys.platform != "win32"
        and hasattr(socket, "AF_UNIX")
        and len(os.fsencode(str(path))) <= SUN_PATH_MAX
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What ``mcp.channel`` says: how to reach the node and the token it wants."""

    kind: Literal["unix", "tcp"]
    token: str
    pid: int
    path: str = ""
    host: str = ""
    port: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ChannelInfo:
        """Raises ValueError when the text is not a channel description."""
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kind, token, pid = data.get("kind"), data.get("token"), data.get("pid")
        if kind not in ("unix", "tcp") or not isinstance(token, str) or not isinstance(pid, int):
            raise ValueError("kind, token or pid missing or of the wrong type")
        path, host, port = data.get("path", ""), data.get("host", ""), data.get("port", 0)
        if not isinstance(path, str) or not isinstance(host, str) or not isinstance(port, int):
            raise ValueError("path, host or port of the wrong type")
        if kind == "unix" and not path:
            raise ValueError("a unix channel needs a path")
        if kind == "tcp" and not (host and 0 < port < 65536):
            raise ValueError("a tcp channel needs a host and a port")
        return cls(kind=kind, token=token, pid=pid, path=path, host=host, port=port)


def read_info(data_dir: Path) -> ChannelInfo | None:
    """The channel of the node on ``data_dir``: None when no node described one.

    Raises:
        ChannelError: the file is there but unreadable or not a channel description (the
            message names it).
    """
    path = data_dir / CHANNEL_FILE
    try:
        with path.open("rb") as f:
            raw = f.read(INFO_MAX + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ChannelError(f"cannot read {path}: {exc.strerror or exc}", path=path) from exc
    if len(raw) > INFO_MAX:
        raise ChannelError(f"{path} is longer than {INFO_MAX} bytes", path=path)
    try:
        return ChannelInfo.from_json(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChannelError(f"{path} does not describe a channel: {exc}", path=path) from exc


def hello_line(verb: Verb, token: str) -> bytes:
    return f"{HELLO_MAGIC} {verb} {token}\n".encode("ascii")


def parse_hello(line: bytes) -> tuple[str, str] | None:
    """``(verb, token)`` from a client's hello line, or None when it is not one."""
    try:
        text = line.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        return None
    parts = text.split(" ")
    if len(parts) != 3 or parts[0] != HELLO_MAGIC or parts[1] not in VERBS:
        return None
    return parts[1], parts[2]


def _read_line(sock: socket.socket, limit: int) -> bytes:
    """One line from ``sock`` read a byte at a time (nothing past the newline is consumed:
    what follows belongs to the caller)."""
    out = bytearray()
    while len(out) < limit:
        b = sock.recv(1)
        if not b:
            break
        out += b
        if b == b"\n":
            break
    return bytes(out)


def connect(
    info: ChannelInfo, verb: Verb, *, timeout_s: float
) -> tuple[socket.socket, dict[str, Any]]:
    """Open the channel, say hello, and return the socket (blocking, no timeout) and the
    node's ``OK`` answer.

    Raises:
        ChannelError: nobody listens there (a node that died), or the node said ``NO``.
    """
    try:
        if info.kind == "unix":
            af_unix: int = getattr(socket, "AF_UNIX")  # noqa: B009 - absent on Windows
            sock = socket.socket(af_unix, socket.SOCK_STREAM)
            target: Any = info.path
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in info.host else socket.AF_INET)
            target = (info.host, info.port)
    except (OSError, AttributeError) as exc:
        raise ChannelError(f"cannot open a {info.kind} socket: {exc}") from exc
    try:
        sock.settimeout(timeout_s)
        sock.connect(target)
        sock.sendall(hello_line(verb, info.token))
        answer = _read_line(sock, REPLY_MAX)
    except OSError as exc:
        sock.close()
        raise ChannelError(f"no node answers on {_where(info)}: {exc.strerror or exc}") from exc
    text = answer.decode("utf-8", "replace").rstrip("\r\n")
    if text.startswith("OK "):
        try:
            body = json.loads(text[3:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            sock.settimeout(None)
            return sock, body
    sock.close()
    if text.startswith("NO "):
        code = text[3:].split(" ", 1)[0].rstrip(":")
        raise ChannelError(f"the node on {_where(info)} refused: {text[3:]}", refused=code)
    raise ChannelError(f"no node answers on {_where(info)} (it closed or said {text[:80]!r})")


def _where(info: ChannelInfo) -> str:
    return info.path if info.kind == "unix" else f"{info.host}:{info.port}"
