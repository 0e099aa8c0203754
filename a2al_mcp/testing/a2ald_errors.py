"""The errors of the a2ald harness (:mod:`a2al_mcp.testing.a2ald`): one base, three kinds."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["A2aldApiError", "A2aldError", "A2aldStartError", "NotSealed", "NotSealedError"]


class A2aldError(RuntimeError):
    """Base class of the errors raised by this module."""


class NotSealedError(A2aldError):
    """The current network namespace is not sealed; ``reasons`` lists every failed check."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons: tuple[str, ...] = tuple(reasons)
        super().__init__(
            "refusing to run a2ald: network namespace is not sealed: " + "; ".join(self.reasons)
        )


NotSealed = NotSealedError
"""Alias of :class:`NotSealedError`."""


class A2aldStartError(A2aldError):
    """The daemon could not be started or did not become ready in time."""


class A2aldApiError(A2aldError):
    """A REST call to a2ald failed (``status`` is 0 when no HTTP response was received)."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:500]}")
