"""What a tool call hands back: a JSON-safe result, or a :class:`ToolFailure`.

Results are JSON objects. What peers wrote (a topic's ``meta`` in ``discover``, an A2A agent's
reply) may hold values JSON has no form for; :func:`json_safe` renders them so one hostile
record cannot break a result for everyone: a byte string becomes
``{"$base64": "<standard base64>"}``, a NaN or infinity
``{"$float": "NaN" | "Infinity" | "-Infinity"}``, a map key that is not text its JSON text
(``1`` -> ``"1"``; a byte-string key ``"$base64:<…>"``), text with a lone surrogate
has it replaced by ``?``, anything else CBOR can carry ``{"$cbor": "<type name>"}``, and
nesting past :data:`RESULT_DEPTH_MAX` ``{"$truncated": "…"}``.

Failures are :class:`ToolFailure` with a stable ``code`` and a sentence a person understands.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, Final

from pydantic import ValidationError

from .errors import A2ALError, BadArguments, UsageError
from .toolargs import SURROGATE_ERROR, is_unicode

__all__ = ["RESULT_DEPTH_MAX", "ToolFailure", "json_safe"]


class ToolFailure(Exception):
    """A tool failed in a way the caller (a model) should read: ``code: message``.

    ``code`` is the code of a class of the :mod:`a2al_mcp.errors` tree, and ``error`` the
    :class:`~a2al_mcp.A2ALError` the tool failed with (also the ``__cause__``), with its
    context as attributes; ``tool`` names the tool when the failure came out of
    :func:`~a2al_mcp.toolspec.call_tool`."""

    def __init__(
        self, code: str, message: str, *, error: A2ALError | None = None, tool: str = ""
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.error = error
        self.tool = tool

    @classmethod
    def from_error(cls, error: A2ALError, *, tool: str = "") -> ToolFailure:
        """The failure that reports ``error``: its code and text, with ``error`` as the
        cause."""
        failure = cls(error.code, str(error), error=error, tool=tool)
        failure.__cause__ = error
        return failure

    @classmethod
    def bad_arguments(cls, exc: ValidationError, *, tool: str = "") -> ToolFailure:
        """``BAD_ARGUMENTS`` naming each field that failed validation and why; ``USAGE`` if
        every problem is text that is not valid Unicode (as the node's own API says). The
        validation error is the cause of the :class:`~a2al_mcp.BadArguments` it carries."""
        errors = exc.errors()
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                             for e in errors)  # fmt: skip
        usage = errors and all(e["type"] == SURROGATE_ERROR for e in errors)
        kind = UsageError if usage else BadArguments
        error = kind(problems, operation=tool or None)
        error.__cause__ = exc
        return cls.from_error(error, tool=tool)


RESULT_DEPTH_MAX: Final = 32
"""Deepest nesting :func:`json_safe` renders (decoded peer data is at most 16 deep)."""


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return "$base64:" + base64.b64encode(key).decode()
    return json.dumps(json_safe(key), sort_keys=True, ensure_ascii=False)


def _text(value: str) -> str:
    if is_unicode(value):
        return value
    return value.encode("utf-8", "replace").decode()  # a lone surrogate becomes "?"


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` with everything JSON cannot carry rendered as the module docstring says
    (texts, finite numbers, booleans and null unchanged; tuples become lists)."""
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": json.dumps(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(value).decode()}
    if _depth >= RESULT_DEPTH_MAX:
        return {"$truncated": f"nested deeper than {RESULT_DEPTH_MAX}"}
    if isinstance(value, dict):
        return {_key_text(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, _depth + 1) for v in value]
    return {"$cbor": type(value).__name__}
