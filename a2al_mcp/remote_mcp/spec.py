"""What an exposed MCP server is: its target (a stdio command or a streamable-HTTP URL), the
capability topics it registers under, and who may call it. No I/O, no SDK."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from ..config import ExposeConfig
from ..errors import ConfigError
from ..identity.aid import Aid

__all__ = [
    "CALLER_HEADER",
    "MCP_PATH",
    "PROTOCOL",
    "ExposeSpec",
    "parse_expose",
    "spec_from_config",
]

PROTOCOL: Final = "mcp"
"""The protocol name in topic records of an exposed MCP server."""
MCP_PATH: Final = "/mcp"
"""The path MCP is served at on the A2AL identity (streamable HTTP)."""
CALLER_HEADER: Final = "x-a2al-caller"
"""The header that carries the verified caller AID to an exposed HTTP server (a caller's own
header of that name is removed first: the node sets it from the QUIC connection)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ExposeSpec:
    """One MCP server served over A2AL: exactly one of ``command`` (a stdio server the node
    starts and owns) and ``url`` (a streamable-HTTP server already running on loopback)."""

    command: tuple[str, ...] = ()
    url: str = ""
    topics: tuple[str, ...] = ()
    """Capability topics registered with protocol ``mcp`` (one record each)."""
    aid: Aid | None = None
    """The local identity serving it (None: the node's own)."""
    allow: tuple[Aid, ...] | None = None
    """Only these callers (None: everyone not denied); enforced by the node."""
    deny: tuple[Aid, ...] = ()
    name: str = ""
    brief: str = ""

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ConfigError("an exposed MCP server needs exactly one of command and url")
        if self.url:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"expose url must be http(s)://host:port/path, got {self.url!r}")
        for topic in self.topics:
            if not isinstance(topic, str) or not topic or len(topic) > 256:
                raise ConfigError(f"expose topic must be 1-256 characters, got {topic!r}")

    @property
    def kind(self) -> str:
        """``"stdio"`` or ``"http"``."""
        return "stdio" if self.command else "http"


def _aids(values: Sequence[str] | None, what: str) -> tuple[Aid, ...] | None:
    if values is None:
        return None
    try:
        return tuple(Aid.from_str(v) for v in values)
    except Exception as exc:
        raise ConfigError(f"expose {what}: not an AID list: {exc}") from exc


def parse_expose(text: str, *, topics: Sequence[str] = ()) -> ExposeConfig:
    """``mcp=http://127.0.0.1:PORT/mcp`` or ``mcp=COMMAND ARGS…`` (shell words), the form
    ``--expose`` takes, as an ``[[expose]]`` table registered under ``topics``.

    Raises:
        ConfigError: not ``mcp=…``, or a bad target.
    """
    kind, sep, target = text.partition("=")
    target = target.strip()
    if not sep or kind.strip() != PROTOCOL or not target:
        raise ConfigError(f"--expose takes mcp=URL or mcp=COMMAND, got {text!r}")
    if target.startswith(("http://", "https://")):
        return ExposeConfig(url=target, topics=tuple(topics))
    try:
        words = tuple(shlex.split(target))
    except ValueError as exc:
        raise ConfigError(f"--expose command {target!r}: {exc}") from exc
    return ExposeConfig(command=words, topics=tuple(topics))


def spec_from_config(cfg: ExposeConfig) -> ExposeSpec:
    """An ``[[expose]]`` table as a spec (its AIDs parsed).

    Raises:
        ConfigError: a bad AID or target.
    """
    if cfg.protocol != PROTOCOL:
        raise ConfigError(f"expose.protocol {cfg.protocol!r}: only {PROTOCOL!r} is served")
    try:
        aid = Aid.from_str(cfg.aid) if cfg.aid else None
    except Exception as exc:
        raise ConfigError(f"expose.aid: {exc}") from exc
    return ExposeSpec(command=cfg.command, url=cfg.url, topics=cfg.topics, aid=aid,
                      allow=_aids(cfg.allow, "allow") if cfg.allow else None,
                      deny=_aids(cfg.deny, "deny") or (), name=cfg.name,
                      brief=cfg.brief)  # fmt: skip
