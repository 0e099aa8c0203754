"""The argument check every tool input shares: no text without a UTF-8 form.

Arguments are checked before any tool runs: text with a lone surrogate (no UTF-8 form) in any
field, at any depth, fails validation with the error type :data:`SURROGATE_ERROR` naming where
it is (which :meth:`~a2al_mcp.toolresults.ToolFailure.bad_arguments` reports as ``USAGE``).
Every input model of :mod:`a2al_mcp.toolspec` derives from :class:`ToolArgs`.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

__all__ = ["SURROGATE_ERROR", "ToolArgs", "is_unicode", "surrogate_at"]

SURROGATE_ERROR: Final = "lone_surrogate"
"""The pydantic error type of text with a lone surrogate."""


def is_unicode(text: str) -> bool:
    """False if ``text`` holds a lone surrogate (e.g. from a JSON ``"\\ud800"`` escape),
    which has no UTF-8 form."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def surrogate_at(value: Any) -> str | None:
    """Where in ``value`` (an argument as given) a text with a lone surrogate is: ``""`` for
    the value itself, ``"['k'][0]"`` inside it, None if nowhere. Iterative: arguments such as
    ``meta`` may be nested deeply."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not is_unicode(item):
                return where
        elif isinstance(item, dict):
            for k, v in item.items():
                stack.append((k, f"{where} (a key)"))
                stack.append((v, f"{where}[{k!r}]" if len(repr(k)) <= 40 else f"{where}[…]"))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


class ToolArgs(BaseModel):
    """Base of the tools' input models: unknown fields are refused, and every field's value is
    checked for lone surrogates before it is validated."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _unicode_only(cls, value: Any) -> Any:
        where = surrogate_at(value)
        if where is not None:
            raise PydanticCustomError(
                SURROGATE_ERROR,
                "text{where} has a lone surrogate (U+D800-U+DFFF), which is not valid Unicode",
                {"where": f" at {where}" if where else ""},
            )
        return value
