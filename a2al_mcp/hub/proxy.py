"""``a2al-mcp serve --stdio``: relay one MCP client's stdio to the node of its data directory.

Every assistant that starts ``a2al-mcp serve --stdio`` gets one of these. It attaches to the
node already running on the data directory (or starts one, see :mod:`.launcher`) and relays
newline-delimited JSON-RPC both ways, so any number of assistants share one identity, one
inbox and one DHT node.

``initialize`` is answered at once when no node runs (a desktop app waits for it before it
shows the server as ready, and a node takes about a second to start): with the node's last
answer (:mod:`.init_cache`) or the answer the node builds (:mod:`.handshake`), for a request
the node surely accepts, while the node starts in the background. The messages after it wait
for the node (read in order, none dropped), which is first given the client's ``initialize``
under the proxy's own id: its answer must be the one the client holds (also after a restart).
If it is not (the node runs another version of the package, say), the session cannot go on
as the client was told: the message that waited is not delivered (a request gets a JSON-RPC
error saying why), the node's answer is kept for the next client, and the proxy exits with
:data:`MISMATCH_STATUS` so that the app starts a new session. When a node already runs, it
answers ``initialize`` itself.

It holds no other protocol state of its own beyond what it needs to survive the node going
away:

- the client's ``initialize`` request, its ``notifications/initialized`` and its
  ``resources/subscribe`` requests (at most :data:`MAX_SUBSCRIPTIONS`), replayed to a new node
  under the proxy's own request ids, whose answers are not relayed (``initialize``'s is
  compared with the one the client holds);
- the ids of the client's requests the node has not answered: when the node's connection
  ends, each gets a JSON-RPC error at once (``UNREACHABLE: …``), so no client waits forever.

The next message after a lost node starts a node again (same data directory, so the same
AID and inbox) and is delivered to it. The proxy judges no message: the node's front checks
every line (size, JSON, JSON-RPC) and answers the bad ones, as it does for its own stdio.
Memory stays bounded: a line longer than :data:`TRACKED_LINE_MAX` either way is relayed in
:data:`CHUNK` pieces.

Standard library only, and threads rather than an event loop: the proxy must stay small and
start fast, and blocking reads of stdin and a socket work the same on Windows and POSIX.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final

from .channel import ChannelError
from .handshake import answer, plain_request, sdk_version
from .init_cache import InitCache
from .launcher import attach

__all__ = ["MAX_SUBSCRIPTIONS", "StdioProxy"]

logger = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS: Final = 64
"""Resource subscriptions remembered for replay to a restarted node."""
MAX_TRACKED: Final = 4096
"""Unanswered client requests tracked per connection to the node (older ones are no longer
failed for the client when the node goes away; they still get the node's answer)."""
CHUNK: Final = 1 << 16
"""Largest piece of a long line held at once; such lines are relayed piece by piece."""
TRACKED_LINE_MAX: Final = 1 << 20
"""Client messages up to this size are parsed (to track requests and remember initialize);
longer ones are relayed in :data:`CHUNK` pieces, untracked."""
CLOSE_WAIT_S: Final = 5.0
"""After the client's EOF, how long answers still on their way are relayed."""
NODE_GONE: Final = -32000
"""JSON-RPC error code (implementation-defined server error) for a request the node never
answered because its connection ended."""
MESSAGE_MAX: Final = 4 << 20
"""The node's ``limits.mcp_message_max_bytes`` when the caller does not say."""
MISMATCH_STATUS: Final = 1
"""The proxy's exit status when the node's ``initialize`` answer was not the client's."""


def _key(msg_id: Any) -> str:
    return json.dumps(msg_id, sort_keys=True)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # the node answers what is not JSON-RPC
        return None
    return obj if isinstance(obj, dict) else None


def _is_request(msg: dict[str, Any] | None) -> bool:
    return msg is not None and isinstance(msg.get("method"), str) and "id" in msg


def _is_response(msg: dict[str, Any] | None) -> bool:
    return (
        msg is not None
        and "method" not in msg
        and "id" in msg
        and ("result" in msg or "error" in msg)
    )


class InitializeMismatch(Exception):
    """The node's answer to the replayed ``initialize`` is not the one the client holds."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Reply:
    """The answer to one of the proxy's own requests (None: the connection ended first)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.msg: dict[str, Any] | None = None


class _Link:
    """One connection to the node, with the requests sent over it and not yet answered."""

    def __init__(self, sock: socket.socket, hello: dict[str, Any]) -> None:
        self.sock = sock
        self.hello = hello
        self.alive = True
        self.pending: dict[str, Any] = {}
        self.swallow: dict[str, _Reply] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def close(self) -> None:
        self.alive = False
        with contextlib.suppress(OSError):
            self.sock.close()


class _Start:
    """A node being attached (started if needed) and initialized in the background, while
    the client holds the proxy's ``initialize`` answer."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._done = threading.Event()
        self._link: _Link | None = None
        self._error: ChannelError | InitializeMismatch | None = None
        threading.Thread(target=self._run, name="a2al-proxy-start", daemon=True).start()

    def _run(self) -> None:
        try:
            self._link = self._target()
        except (ChannelError, InitializeMismatch) as exc:
            self._error = exc
        except OSError as exc:
            self._error = ChannelError(f"the node's connection failed: {exc}")
        finally:
            self._done.set()

    def wait(self) -> _Link:
        """The initialized link (the target's own deadlines bound the wait).

        Raises:
            ChannelError: no node could be reached or it did not answer ``initialize``.
            InitializeMismatch: it answered, not what the client was told.
        """
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._link is not None
        return self._link


class StdioProxy:
    """Relay ``stdin``/``stdout`` (binary, newline-delimited JSON-RPC) to the shared node."""

    def __init__(
        self,
        data_dir: Path,
        *,
        command: Sequence[str],
        stdin: BinaryIO,
        stdout: BinaryIO,
        start_timeout_s: float,
        max_message_bytes: int = MESSAGE_MAX,
    ) -> None:
        self._data_dir = data_dir
        self._command = list(command)
        self._in, self._out = stdin, stdout
        self._start_timeout_s = start_timeout_s
        self._max_message = max_message_bytes
        self._out_lock = threading.Lock()
        self._link: _Link | None = None
        self._initialize: dict[str, Any] | None = None
        self._initialized: bytes | None = None
        self._subscriptions: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._client_gone = False
        self._ended = False
        self._sdk: str | None = None
        self._cache: InitCache | None = None
        self._capture: str | None = None
        """The key of the client's ``initialize`` sent to the node, whose answer is cached."""
        self._told: dict[str, Any] | None = None
        """The ``initialize`` result the client holds (the proxy's or the node's)."""
        self._start: _Start | None = None
        self.restarts = 0
        """How many times a node was attached again after its connection ended."""
        self.children: list[subprocess.Popen[bytes]] = []
        """The node processes this proxy started (detached: they outlive it)."""

    # --- the client side (this thread)
    def run(self) -> int:
        """Relay until the client closes stdin; returns the exit status (0, or
        :data:`MISMATCH_STATUS` when the session ended on an ``initialize`` mismatch)."""
        while not self._client_gone and not self._ended:
            line = self._in.readline(TRACKED_LINE_MAX)
            if not line:
                break
            if not line.endswith(b"\n") and len(line) == TRACKED_LINE_MAX:
                self._relay_long(line)
                continue
            body = line.rstrip(b"\r\n")
            if body.strip():
                self._from_client(body)
        self._finish()
        return MISMATCH_STATUS if self._ended else 0

    def _relay_long(self, first: bytes) -> None:
        """A message longer than :data:`TRACKED_LINE_MAX`: relayed piece by piece, not
        parsed (the node's ``limits.mcp_message_max_bytes`` judges it, and answers)."""
        link = self._ensure_link(None, None)
        part = first
        while True:
            if link is not None and link.alive:
                try:
                    link.send(part)
                except OSError:
                    self._lost(link)
            if part.endswith(b"\n"):
                return
            part = self._in.readline(CHUNK)
            if not part:
                return

    def _ensure_link(self, msg: dict[str, Any] | None, method: object) -> _Link | None:
        """The live connection to the node, attached (or started) if needed; None (and the
        request answered with UNREACHABLE) when no node can be reached."""
        link = self._link
        if link is not None and link.alive:
            return link
        start, self._start = self._start, None
        try:
            if start is None:
                return self._open(replay=method != "initialize", method=method)
            link = self._adopt(start.wait())
            if method != "initialize":
                self._replay_rest(link, method)
            return link
        except ChannelError as exc:
            logger.warning("proxy.node_unreachable %s", exc.reason)
            if _is_request(msg):
                assert msg is not None
                self._reply_error(msg["id"], NODE_GONE, f"UNREACHABLE: {exc.reason}")
            return None
        except InitializeMismatch as exc:
            logger.error("proxy.initialize_mismatch %s; this session ends", exc.reason)
            if _is_request(msg):
                assert msg is not None
                self._reply_error(msg["id"], NODE_GONE, "UNREACHABLE: the a2al-mcp node "
                                  f"answered initialize differently ({exc.reason}); this "
                                  "session ends: start the MCP server again")  # fmt: skip
            self._ended = True
            return None

    def _from_client(self, body: bytes) -> None:
        msg = _parse(body)
        method = msg.get("method") if msg is not None else None
        if method == "initialize" and _is_request(msg):
            assert msg is not None
            self._initialize, self._told = msg, None
            if self._answer_initialize(msg, len(body)):
                return
            self._capture = _key(msg["id"])
        elif method == "notifications/initialized":
            self._initialized = body
        elif method in ("resources/subscribe", "resources/unsubscribe") and msg is not None:
            self._remember_subscription(method, msg)
        link = self._ensure_link(msg, method)
        if link is None:
            return
        if _is_request(msg):
            assert msg is not None
            with link.lock:
                if len(link.pending) < MAX_TRACKED:
                    link.pending[_key(msg["id"])] = msg["id"]
        try:
            link.send(body + b"\n")
        except OSError:
            self._lost(link)
        if not link.alive:  # it ended while we sent: fail what it left unanswered
            self._lost(link)

    def _answer_initialize(self, msg: dict[str, Any], size: int) -> bool:
        """Answer the client's ``initialize`` now and start the node in the background, when
        no node runs and the answer is known; False: the node is to answer it."""
        cache = self._cache_for()
        link = self._link
        if (link is not None and link.alive) or self._start is not None:
            return False  # a session with a node: it answers
        if not plain_request(msg, size, max_bytes=self._max_message):
            return False
        try:
            sock, hello, _ = attach(self._data_dir, "mcp", command=None, start_timeout_s=0)
        except ChannelError as exc:
            if exc.refused is not None:  # a node runs and refused us: it says why, below
                return False
        else:  # a node runs: it answers
            self._adopt(self._connected(sock, hello))
            return False
        result = cache.lookup(msg) or answer(msg["params"], sdk=self._sdk)
        if result is None:
            return False
        self._told = result
        self._write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result},
                               separators=(",", ":")).encode("utf-8") + b"\n")  # fmt: skip
        self._start = _Start(lambda: self._start_node(msg, result))
        return True

    def _cache_for(self) -> InitCache:
        """The data directory's cache (the SDK's version is looked up once, when needed)."""
        if self._cache is None:
            self._sdk = sdk_version()
            self._cache = InitCache(self._data_dir, sdk=self._sdk)
        return self._cache

    def _start_node(self, request: dict[str, Any], told: dict[str, Any]) -> _Link:
        """(The start thread.) Attach to or start the node, give it the client's
        ``initialize`` and check its answer is ``told``."""
        link = self._connect()
        try:
            self._initialize_node(link, request, told)
        except BaseException:
            link.close()
            raise
        return link

    def _remember_subscription(self, method: str, msg: dict[str, Any]) -> None:
        params = msg.get("params")
        uri = params.get("uri") if isinstance(params, dict) else None
        if not isinstance(uri, str):
            return
        if method == "resources/unsubscribe":
            self._subscriptions.pop(uri, None)
        elif uri in self._subscriptions or len(self._subscriptions) < MAX_SUBSCRIPTIONS:
            self._subscriptions[uri] = {"jsonrpc": "2.0", "method": method, "params": params}

    # --- the node side
    def _open(self, *, replay: bool, method: object = None) -> _Link:
        """Attach to (or start) the node; with ``replay``, initialize it as the client did
        (its ``notifications/initialized`` too, unless that is the message being sent)."""
        link = self._adopt(self._connect())
        if replay and self._initialize is not None:
            try:
                self._initialize_node(link, self._initialize, self._told)
                self._replay_rest(link, method)
            except (OSError, ChannelError) as exc:
                link.close()
                reason = exc.reason if isinstance(exc, ChannelError) else str(exc)
                raise ChannelError(f"the restarted node failed: {reason}") from exc
            except InitializeMismatch:
                link.close()
                raise
            logger.info("proxy.reattached pid=%s", link.hello.get("pid"))
        return link

    def _connect(self) -> _Link:
        """Attach to the node (start it if none runs) and relay what it sends."""
        sock, hello, child = attach(self._data_dir, "mcp", command=self._command,
                                    start_timeout_s=self._start_timeout_s)  # fmt: skip
        if child is not None:
            self.children.append(child)
        return self._connected(sock, hello)

    def _connected(self, sock: socket.socket, hello: dict[str, Any]) -> _Link:
        link = _Link(sock, hello)
        threading.Thread(target=self._pump, args=(link,), name="a2al-proxy-node",
                         daemon=True).start()  # fmt: skip
        return link

    def _adopt(self, link: _Link) -> _Link:
        """``link`` becomes the session's connection (the client thread's only)."""
        if self._link is not None:
            self.restarts += 1
        self._link = link
        return link

    def _initialize_node(
        self, link: _Link, request: dict[str, Any], told: dict[str, Any] | None
    ) -> None:
        """Give the node the client's ``initialize`` (under an own id) and check its answer
        is ``told``, the result the client holds (None: the client holds none).

        Raises:
            ChannelError: the node did not answer in time, or its connection ended.
            InitializeMismatch: it answered something else (kept for the next client).
            OSError: sending failed.
        """
        reply = self._send_own(link, request)
        if not reply.event.wait(self._start_timeout_s):
            raise ChannelError("the node did not answer the replayed initialize")
        if reply.msg is None:
            raise ChannelError("the node's connection ended before it answered initialize")
        got = reply.msg.get("result")
        if told is None or got == told:
            return
        if isinstance(got, dict):
            self._cache_for().store(request, got)
        raise InitializeMismatch(_difference(told, reply.msg))

    def _replay_rest(self, link: _Link, method: object) -> None:
        """After the replayed ``initialize``: the client's ``notifications/initialized``
        (unless that is the message being sent) and its resource subscriptions."""
        if self._initialized is not None and method != "notifications/initialized":
            link.send(self._initialized + b"\n")
        for sub in self._subscriptions.values():
            self._send_own(link, sub)

    def _send_own(self, link: _Link, msg: dict[str, Any]) -> _Reply:
        """Send ``msg`` under a proxy request id; its answer is not relayed to the client."""
        own = dict(msg, id=f"a2al-proxy-{next(self._ids)}")
        reply = _Reply()
        with link.lock:
            link.swallow[_key(own["id"])] = reply
        link.send(json.dumps(own, separators=(",", ":")).encode("utf-8") + b"\n")
        return reply

    def _pump(self, link: _Link) -> None:
        """Node → client, until the node's connection ends."""
        try:
            reader = link.sock.makefile("rb")
            while True:
                line = reader.readline(CHUNK)
                if not line:
                    break
                if not line.endswith(b"\n"):  # a long line: relay it in pieces, untracked
                    self._write(line)
                    continue
                msg = _parse(line) if _is_response_shaped(line) else None
                if _is_response(msg):
                    assert msg is not None
                    key = _key(msg["id"])
                    with link.lock:
                        own = link.swallow.pop(key, None)
                        link.pending.pop(key, None)
                    if own is not None:
                        own.msg = msg
                        own.event.set()
                        continue
                    if key == self._capture:  # the node's answer to the client's initialize
                        self._capture = None
                        result = msg.get("result")
                        self._told = result if isinstance(result, dict) else None
                        if self._told is not None and self._initialize is not None:
                            self._cache_for().store(self._initialize, self._told)
                self._write(line)
        except OSError:
            pass
        finally:
            self._lost(link)
            link.done.set()

    def _lost(self, link: _Link) -> None:
        """The node's connection ended: every request it did not answer gets an error."""
        with link.lock:
            own, link.swallow = list(link.swallow.values()), {}
            if not link.alive and not link.pending:
                pending = []
            else:
                pending, link.pending = list(link.pending.values()), {}
            link.alive = False
        for reply in own:  # wake whoever waits for the proxy's own requests (msg None)
            reply.event.set()
        link.close()
        if pending and not self._client_gone:
            logger.warning("proxy.node_lost unanswered=%d", len(pending))
        for msg_id in pending:
            self._reply_error(msg_id, NODE_GONE, "UNREACHABLE: the a2al-mcp node stopped before "
                              "answering; the next call starts it again")  # fmt: skip

    # --- output and shutdown
    def _reply_error(self, msg_id: Any, code: int, message: str) -> None:
        reply = {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        self._write(json.dumps(reply, separators=(",", ":")).encode("utf-8") + b"\n")

    def _write(self, data: bytes) -> None:
        with self._out_lock:
            if self._client_gone:
                return
            try:
                self._out.write(data)
                self._out.flush()
            except (OSError, ValueError):
                self._client_gone = True

    def _finish(self) -> None:
        link = self._link
        if link is None or not link.alive:
            return
        with contextlib.suppress(OSError):
            link.sock.shutdown(socket.SHUT_WR)
        link.done.wait(CLOSE_WAIT_S)
        self._client_gone = True
        link.close()


def _difference(told: dict[str, Any], msg: dict[str, Any]) -> str:
    """What differs between the result the client holds and the node's answer, briefly."""
    got = msg.get("result")
    if not isinstance(got, dict):
        error = msg.get("error")
        text = error.get("message") if isinstance(error, dict) else error
        return f"the node refused it: {str(text)[:200]}"
    keys = sorted(k for k in told.keys() | got.keys() if told.get(k) != got.get(k))
    shown = "; ".join(f"{k}: {json.dumps(told.get(k))[:80]} then {json.dumps(got.get(k))[:80]}"
                      for k in keys)  # fmt: skip
    return f"it differs in {shown}"


def _is_response_shaped(line: bytes) -> bool:
    """Cheap pre-check before parsing a node line: answers carry ``"result"`` or ``"error"``
    (notifications and server requests need no parsing: they are relayed as they are)."""
    return b'"result"' in line or b'"error"' in line
