"""Check every JSON-RPC message from an MCP client before the SDK sees it.

The mcp SDK drops a line it cannot decode without a reply (the client then waits for its
own timeout), and a few valid-JSON inputs (lone surrogates, huge integers, deep nesting)
pass its parser and fail later, also without a reply. :func:`check_message` accepts only
what decodes to sane JSON with a JSON-RPC 2.0 envelope, and turns everything else into a
JSON-RPC error reply (``-32700`` parse error, ``-32600`` invalid request), with the request's
``id`` when it can be recovered, else ``null``. No I/O here: the stdio and HTTP fronts call it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "INVALID_REQUEST",
    "MAX_DEPTH",
    "PARSE_ERROR",
    "Checked",
    "FrontStats",
    "check_message",
    "error_reply",
    "oversized",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (the SDK's parser gives up near 200)."""
_INT_DIGITS = 19  # JSON-RPC ids and tool arguments are 64-bit at most (JavaScript: 53)
_FLOAT_CHARS = 40


@dataclasses.dataclass(slots=True)
class FrontStats:
    """What the MCP fronts refused, for the ``status`` tool and the logs."""

    malformed_messages: int = 0
    """JSON-RPC messages answered with a parse or invalid-request error."""
    oversized_messages: int = 0
    """Messages over ``limits.mcp_message_max_bytes``."""
    http_connections_refused: int = 0
    """Connections closed at once: ``limits.http_connections`` reached, none to evict."""
    http_connections_evicted: int = 0
    """Connections still sending headers, closed to make room for a new one."""
    http_header_timeouts: int = 0
    """Connections closed for not completing a request's headers in time."""
    http_body_timeouts: int = 0
    """Requests answered 408 for not completing their body in time."""
    http_unauthorized: int = 0
    """Requests answered 401 (missing or wrong bearer token)."""
    http_too_large: int = 0
    """Requests answered 413 (body over ``limits.http_body_max_bytes``)."""

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def count_refused(self, checked: Checked) -> None:
        if checked.oversized:
            self.oversized_messages += 1
        else:
            self.malformed_messages += 1


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    """Either ``message`` (a sane JSON-RPC message) or ``reply`` (the error to send back)."""

    message: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    oversized: bool = False

    def summary(self) -> str:
        """The refusal, for a log line."""
        if self.reply is None:
            return "ok"
        return f"id={self.reply['id']!r} {str(self.reply['error']['message'])[:200]}"


def error_reply(code: int, message: str, msg_id: int | str | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


class _Bad(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _INT_DIGITS:
        raise _Bad(f"integer of {len(text)} digits (at most {_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text) if len(text) <= _FLOAT_CHARS else math.inf
    if not math.isfinite(value):
        raise _Bad(f"number {text[:20]}… is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise _Bad(f"{name} is not JSON")


def _sane(value: Any) -> str | None:
    """Why ``value`` is not sane JSON (too deep, a lone surrogate), or None; no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone UTF-16 surrogate (not Unicode text)"
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def _recover_id(obj: Any) -> int | str | None:
    if isinstance(obj, dict):
        msg_id = obj.get("id")
        if isinstance(msg_id, int) and not isinstance(msg_id, bool):
            return msg_id
        if isinstance(msg_id, str) and _sane(msg_id) is None:
            return msg_id
    return None


def _envelope_problem(obj: Any) -> str | None:
    if isinstance(obj, list):
        return "JSON-RPC batches are not supported by MCP"
    if not isinstance(obj, dict):
        return "a JSON-RPC message is a JSON object"
    if obj.get("jsonrpc") != "2.0":
        return 'the "jsonrpc" member must be "2.0"'
    if "id" in obj and _recover_id(obj) is None and "method" in obj:
        return 'the "id" member must be a string or an integer'
    if "method" in obj:
        if not isinstance(obj["method"], str):
            return 'the "method" member must be a string'
        if "params" in obj and not isinstance(obj["params"], dict):
            return 'the "params" member must be an object'
        return None
    if "result" in obj or "error" in obj:
        return _response_problem(obj)
    return "neither a request, a notification nor a response"


def _lax_int(value: Any) -> bool:
    """What the SDK's models take for an integer error code (pydantic's lax mode)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == int(value) if isinstance(value, float) else True
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        try:
            int(value.strip())
        except ValueError:
            return False
        return True
    return False


def _response_problem(obj: dict[str, Any]) -> str | None:
    """A response is a result (a string or integer ``id``, an object ``result``) or an error
    (``id`` also null, an ``error`` object with an integer ``code`` and a text ``message``):
    the SDK's own envelope union, checked without its models."""
    msg_id = obj.get("id")
    id_ok = isinstance(msg_id, str) or (isinstance(msg_id, int) and not isinstance(msg_id, bool))
    if id_ok and isinstance(obj.get("result"), dict):
        return None
    error = obj.get("error")
    if (id_ok or msg_id is None) and "id" in obj and isinstance(error, dict):
        if _lax_int(error.get("code")) and isinstance(error.get("message"), str):
            return None
        return 'an "error" needs an integer "code" and a text "message"'
    if not (id_ok or msg_id is None) or "id" not in obj:
        return 'a response needs a string or integer "id"'
    return 'a response carries an object "result" or an "error" object'


def oversized(size: int, max_bytes: int) -> Checked:
    """The reply to a message of ``size`` bytes over ``max_bytes``."""
    why = f"message of {size} bytes is over the limit of {max_bytes} (limits.mcp_message_max_bytes)"
    return Checked(reply=error_reply(INVALID_REQUEST, f"Invalid Request: {why}"), oversized=True)


def check_message(
    raw: bytes | str,
    *,
    max_bytes: int,
    validate: Callable[[dict[str, Any]], str | None] | None = None,
) -> Checked:
    """Decode one JSON-RPC message: sane JSON with a JSON-RPC 2.0 envelope the SDK accepts
    too (checked here, without its models); ``validate`` (an extra check, e.g. the SDK's own
    envelope check where the SDK is loaded anyway) runs last."""
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > max_bytes:
        return oversized(size, max_bytes)
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        return Checked(reply=error_reply(PARSE_ERROR, f"Parse error: not UTF-8 ({exc.reason})"))
    try:
        obj = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                         parse_constant=_parse_constant)  # fmt: skip
    except RecursionError:
        return Checked(reply=error_reply(PARSE_ERROR, f"Parse error: nested deeper than "
                                                      f"{MAX_DEPTH} levels"))  # fmt: skip
    except ValueError as exc:  # JSONDecodeError, _Bad
        return Checked(reply=error_reply(PARSE_ERROR, f"Parse error: {exc}"))
    msg_id = _recover_id(obj)
    problem = _sane(obj)
    if problem is not None:
        return Checked(reply=error_reply(PARSE_ERROR, f"Parse error: {problem}", msg_id))
    problem = _envelope_problem(obj)
    if problem is None and validate is not None:
        problem = validate(obj)
    if problem is not None:
        return Checked(reply=error_reply(INVALID_REQUEST, f"Invalid Request: {problem}", msg_id))
    return Checked(message=obj)
