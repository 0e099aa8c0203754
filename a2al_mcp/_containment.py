"""Which exceptions one peer, stream, connection or handler may cause without ending the node.

The policy lives here, in one place: the UDP driver (:mod:`~a2al_mcp.transport.endpoint`)
and the node's peer-driven tasks (:meth:`~a2al_mcp.node.Node.spawn`) contain every
exception this module calls *containable* to that one datagram, connection or task, count
it, log it (rate-limited) and carry on. Containable is every exception except the ones that
steer control flow: cancellation (asyncio's ``CancelledError``, trio's ``Cancelled``, as
anyio delivers them), ``KeyboardInterrupt``, ``SystemExit`` and ``GeneratorExit``. So
``BaseException`` subclasses that are none of these are contained too: qh3's Rust panics
arrive as ``pyo3_runtime.PanicException``, a direct ``BaseException`` subclass.

An exception group is containable only if everything in it is.
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ["containable"]

_NEVER: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)


def containable(exc: BaseException) -> bool:
    """True if ``exc`` may be swallowed (after counting and logging) by whoever ran the
    peer-driven work that raised it; False for cancellation and exit, which must propagate."""
    if isinstance(exc, BaseExceptionGroup):
        return all(containable(e) for e in exc.exceptions)
    if isinstance(exc, _NEVER):
        return False
    trio = sys.modules.get("trio")  # anyio's other backend, only if something imported it
    return not (trio is not None and isinstance(exc, trio.Cancelled))
