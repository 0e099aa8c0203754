"""Running our nodes and small servers inside NAT testbed hosts, driven from the test thread.

:class:`HostLoop` is an event loop in a thread of its own that lives in one testbed host's
network namespace (``setns`` is per thread, and threads the loop starts, e.g. anyio's worker
threads, inherit it): the test thread calls coroutines on it through a blocking portal, so
several of our nodes in several hosts run at once and one test body drives them all.
:class:`HttpBackend` is a tiny HTTP server on a host's loopback (an a2ald agent's
``service_tcp``).
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from a2al_mcp.testing.nat_testbed import NatTestbed

__all__ = ["HostLoop", "HttpBackend"]

T = TypeVar("T")


class HostLoop:
    """An event loop in a thread inside ``host``'s namespace (a context manager).

    ``call(fn, *args)`` runs ``fn`` (a coroutine function or a plain function) on the loop and
    returns its result; ``enter(cm)`` enters an async context manager on the loop and exits it
    when the HostLoop closes (in reverse order), before the loop stops.
    """

    def __init__(self, tb: NatTestbed, host: str) -> None:
        self.tb = tb
        self.host = host
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None

    def __enter__(self) -> HostLoop:
        # the portal's thread is created here, by this thread while it is in the namespace
        with self.tb.netns(self.host):
            self._portal = self._stack.enter_context(start_blocking_portal(name=f"tb-{self.host}"))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    @property
    def portal(self) -> BlockingPortal:
        if self._portal is None:
            raise RuntimeError(f"the loop of {self.host} is not running")
        return self._portal

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(fn, *args)

    def enter(self, cm: contextlib.AbstractAsyncContextManager[T]) -> T:
        return self._stack.enter_context(self.portal.wrap_async_context_manager(cm))


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _Server(http.server.ThreadingHTTPServer):
    body: bytes = b""


class HttpBackend:
    """``GET`` anything -> 200 ``body``, on ``127.0.0.1:port`` of ``host`` (a context manager)."""

    def __init__(self, tb: NatTestbed, host: str, port: int, body: bytes) -> None:
        with tb.netns(host):  # the listening socket lives in the host
            self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.body = body
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"http-{host}", daemon=True
        )

    def __enter__(self) -> HttpBackend:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
