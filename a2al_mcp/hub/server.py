"""The node process's side of the local channel: one MCP session per attached client.

:class:`NodeHub` listens on the channel :mod:`.channel` describes, writes ``mcp.channel``
(through :func:`~a2al_mcp.node.state.write_atomic`: 0600, atomic), and gives every connection
that says a valid hello its own MCP session over the one node (``session(stream)``, which the
caller builds from the MCP server; see ``mcp_server._compat.run_stream``). A session's end,
failure or a client killed mid-message ends that session only.

It stops when told (``stop`` verb, or :meth:`stop`) or, unless ``stay``, when no client has
been attached for ``hub.grace_s``.

:meth:`NodeHub.describe` (``node status``) says whether the process has imported the ``mcp``
SDK (``mcp_sdk_loaded``): a desktop client's session does not need it (issue 16: the idle
node's memory), so the tests and the curious can see it was not loaded.

Limits: ``limits.mcp_local_clients`` sessions at once
(more are told ``NO busy``), a hello within ``hub.hello_timeout_s`` of at most
:data:`~.channel.HELLO_MAX` bytes. Refusals are counted (:class:`HubStats`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import logging
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from ..config import HubConfig
from ..errors import ConfigError
from ..node.state import write_atomic
from .channel import (
    CHANNEL_FILE,
    HELLO_MAX,
    SOCKET_FILE,
    ChannelInfo,
    parse_hello,
    read_info,
    unix_supported,
)

__all__ = ["HubStats", "NodeHub"]

logger = logging.getLogger(__name__)

Session = Callable[[anyio.abc.ByteStream], Awaitable[None]]


@dataclasses.dataclass(slots=True)
class HubStats:
    """What the hub did, for the ``status`` tool and ``a2al-mcp node status``."""

    sessions_total: int = 0
    refused_hello: int = 0
    refused_busy: int = 0
    sessions_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class NodeHub:
    """Serve MCP sessions to local clients over the channel of ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        session: Session,
        describe: Callable[[], dict[str, Any]],
        config: HubConfig,
        max_clients: int,
        stay: bool,
    ) -> None:
        self._dir = data_dir
        self._session = session
        self._describe = describe
        self._cfg = config
        self._max = max_clients
        self._stay = stay
        self._token = secrets.token_hex(16)
        self._clients = 0
        self._changed = anyio.Event()
        self._stopped = anyio.Event()
        self._started = anyio.current_time()
        self.stats = HubStats()
        self.info: ChannelInfo | None = None

    @property
    def clients(self) -> int:
        return self._clients

    def stop(self) -> None:
        self._stopped.set()

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[ChannelInfo] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, describe the channel, serve until stopped or idle past the grace period.

        Raises:
            ConfigError: the channel cannot be opened or described (the message names it).
        """
        listener, info = await self._listen()
        self.info = info
        try:
            write_atomic(self._dir / CHANNEL_FILE, info.to_json())
            logger.info("hub.listening kind=%s where=%s", info.kind, info.path or info.port)
            async with listener, anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, self._handle, tg)
                tg.start_soon(self._idle_watch)
                task_status.started(info)
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            self._forget(info)

    async def _listen(self) -> tuple[anyio.abc.Listener[Any], ChannelInfo]:
        kind = self._cfg.channel
        sock_path = self._dir / SOCKET_FILE
        if kind == "auto":
            kind = "unix" if unix_supported(sock_path) else "tcp"
        # what a dead node left (we hold the data directory's lock): clients that read its
        # channel file meanwhile would offer its token to us
        with contextlib.suppress(FileNotFoundError):
            (self._dir / CHANNEL_FILE).unlink()
        try:
            if kind == "unix":
                with contextlib.suppress(FileNotFoundError):
                    sock_path.unlink()
                unix = await anyio.create_unix_listener(sock_path, mode=0o600)
                return unix, ChannelInfo(kind="unix", token=self._token, pid=os.getpid(),
                                         path=str(sock_path))  # fmt: skip
            tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        except OSError as exc:
            raise ConfigError(f"cannot open the MCP channel ({kind}) in {self._dir}: {exc}",
                              path=str(self._dir)) from exc  # fmt: skip
        port = tcp.extra(SocketAttribute.local_port)
        return tcp, ChannelInfo(kind="tcp", token=self._token, pid=os.getpid(),
                                host="127.0.0.1", port=port)  # fmt: skip

    def _forget(self, info: ChannelInfo) -> None:
        """Remove the channel file (only if it is still ours) and the socket."""
        try:
            current = read_info(self._dir)
        except Exception:
            return
        if current is not None and current.token == info.token:
            with contextlib.suppress(OSError):
                (self._dir / CHANNEL_FILE).unlink()
            if info.kind == "unix":
                with contextlib.suppress(OSError):
                    Path(info.path).unlink()

    def _set_clients(self, n: int) -> None:
        self._clients = n
        self._changed.set()
        self._changed = anyio.Event()

    async def _idle_watch(self) -> None:
        if self._stay:
            return
        while True:
            changed = self._changed
            if self._clients:
                await changed.wait()
                continue
            with anyio.move_on_after(self._cfg.grace_s) as scope:
                await changed.wait()
            if scope.cancelled_caught and not self._clients:
                logger.info("hub.idle_stop grace_s=%g", self._cfg.grace_s)
                self._stopped.set()
                return

    async def _hello(self, stream: anyio.abc.ByteStream) -> tuple[str, str] | None:
        line = bytearray()
        with anyio.move_on_after(self._cfg.hello_timeout_s):
            while len(line) < HELLO_MAX and not line.endswith(b"\n"):
                try:
                    line += await stream.receive(1)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return None
        return parse_hello(bytes(line)) if line.endswith(b"\n") else None

    async def _answer(self, stream: anyio.abc.ByteStream, text: str) -> bool:
        try:
            await stream.send(text.encode("utf-8") + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return False
        return True

    def describe(self) -> dict[str, Any]:
        return {**self._describe(), "pid": os.getpid(), "clients": self._clients,
                "uptime_s": round(anyio.current_time() - self._started, 1),
                "stay": self._stay, "hub": self.stats.as_dict(),
                "mcp_sdk_loaded": "mcp" in sys.modules}  # fmt: skip

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        """One local connection; whatever it raises ends that connection only (the handler
        runs in the listener's task group, whose failure would end the node)."""
        try:
            await self._serve_client(stream)
        except Exception as exc:  # a client that broke its socket mid-hello or mid-close
            self.stats.sessions_failed += 1
            logger.warning("hub.connection_failed %s: %s", type(exc).__name__, exc)

    async def _serve_client(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            hello = await self._hello(stream)
            if hello is None or not hmac.compare_digest(hello[1], self._token):
                self.stats.refused_hello += 1
                logger.warning("hub.refused reason=%s", "bad hello" if hello is None else "token")
                await self._answer(stream, "NO hello: bad hello or token")
                return
            verb = hello[0]
            if verb == "status":
                await self._answer(stream, "OK " + json.dumps(self.describe()))
                return
            if verb == "stop":
                await self._answer(stream, "OK {}")
                self._stopped.set()
                return
            if self._clients >= self._max:
                self.stats.refused_busy += 1
                await self._answer(stream, f"NO busy: {self._max} clients attached "
                                   "(limits.mcp_local_clients)")  # fmt: skip
                return
            self._set_clients(self._clients + 1)
            self.stats.sessions_total += 1
            try:
                if await self._answer(stream, "OK " + json.dumps(self.describe())):
                    await self._session(stream)
            except Exception as exc:
                self.stats.sessions_failed += 1
                logger.warning("hub.session_failed %s: %s", type(exc).__name__, exc)
            finally:
                self._set_clients(self._clients - 1)
