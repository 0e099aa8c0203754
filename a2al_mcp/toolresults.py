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
import difflib
import json
import math
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import A2ALError, BadArguments, UsageError
from .toolargs import SURROGATE_ERROR, is_unicode

__all__ = ["QUOTE_MAX", "RESULT_DEPTH_MAX", "ToolFailure", "ToolResult", "json_safe", "quote"]


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
        """``BAD_ARGUMENTS`` naming each field that failed validation and why (at most
        :data:`PROBLEMS_SHOWN` of them, each capped, never the value given); ``USAGE`` if
        every problem is text that is not valid Unicode (as the node's own API says). The
        validation error is the cause of the :class:`~a2al_mcp.BadArguments` it carries."""
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        shown = [f"{quote('.'.join(map(str, e['loc'])) or 'arguments', 40, repr_=False)}: "
                 f"{quote(str(e['msg']), 200, repr_=False)}"
                 for e in errors[:PROBLEMS_SHOWN]]  # fmt: skip
        if len(errors) > PROBLEMS_SHOWN:
            shown.append(f"and {len(errors) - PROBLEMS_SHOWN} more")
        problems = "; ".join(shown)
        usage = errors and all(e["type"] == SURROGATE_ERROR for e in errors)
        kind = UsageError if usage else BadArguments
        error = kind(problems, operation=tool or None)
        error.__cause__ = exc
        return cls.from_error(error, tool=tool)

    @classmethod
    def unknown_arguments(
        cls, names: list[str], known: list[str], *, tool: str = ""
    ) -> ToolFailure:
        """``BAD_ARGUMENTS`` for arguments the tool does not take, each with the closest
        known name when one is near (``unknown argument 'peak' (did you mean 'peek'?)``)."""
        parts = []
        for name in names[:PROBLEMS_SHOWN]:
            near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            parts.append(f"unknown argument {quote(name, 40)}{hint}")
        if len(names) > PROBLEMS_SHOWN:
            parts.append(f"and {len(names) - PROBLEMS_SHOWN} more")
        taken = ", ".join(known) if known else "none"
        error = BadArguments(f"{'; '.join(parts)}; this tool takes: {taken}",
                             operation=tool or None)  # fmt: skip
        return cls.from_error(error, tool=tool)


QUOTE_MAX: Final = 80
"""Most characters of a caller's text quoted back in an error message."""
PROBLEMS_SHOWN: Final = 5
"""Most argument problems named in one ``BAD_ARGUMENTS`` message."""


def quote(text: str, limit: int = QUOTE_MAX, *, repr_: bool = True) -> str:
    """``text`` for an error message: at most ``limit`` characters of it (then ``…`` and
    its full length), as a Python literal unless ``repr_`` is false."""
    text = _text(text)
    cut = text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"
    if not repr_:
        return cut
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} chars)"


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


# -- result models: the field contract of every tool's result (the MCP outputSchema) -------


class ToolResult(BaseModel):
    """Base of every tool's result: what :func:`~a2al_mcp.toolspec.call_tool` adds to each."""

    model_config = ConfigDict(extra="forbid")

    unread_mail: int = Field(
        0, ge=0, description="Unread notes in this agent's mailbox now: read_mailbox shows them."
    )


class _Open(ToolResult):
    model_config = ConfigDict(extra="allow")


class NatStatusResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_addrs: list[str] = Field(
        description="This node's addresses as the internet sees them (peers' consensus, STUN, "
        "the gateway's port mapping), host:port, best first; empty while nothing is known."
    )
    nat_type: int = Field(
        ge=0, le=4,
        description="What endpoint records carry: 0 unknown, 1 full cone or public, "
        "2 restricted, 3 port-restricted, 4 symmetric.",
    )  # fmt: skip
    nat_type_words: str = Field(description="nat_type in words ('public' when there is no NAT).")
    upnp_mapping: str | None = Field(
        description="The port mapping the gateway granted (UPnP or PCP/NAT-PMP), host:port."
    )
    reachable_directly: bool = Field(
        description="A peer that never sent to this node can reach it at public_addrs "
        "(public, full cone or a gateway mapping)."
    )
    published_endpoints: list[str] = Field(
        description="The URLs an endpoint record would carry now (empty: nothing to publish yet)."
    )
    evidence: list[str] = Field(description="Why, in short sentences.")


class StatusResult(_Open):
    aid: str = Field(description="This node's AID.")
    listen: str = Field(description="The UDP address the node listens on, host:port.")
    peers: int = Field(description="Peers in the routing table.")
    ready: bool = Field(description="The node has joined the network.")
    published: list[str] = Field(description="AIDs whose endpoint record is kept published.")
    connections: int = Field(description="Open QUIC connections.")
    serving: list[str] = Field(description="AIDs whose services this node serves.")
    tunnels: list[str] = Field(description="Local tunnels opened by connect, host:port.")
    mailbox: dict[str, Any] = Field(description="Mailbox counters.")
    observed_addrs: list[str] = Field(description="This node's addresses as peers see them.")
    contained_errors: dict[str, Any] = Field(description="Errors contained, by kind.")
    dht: dict[str, Any] = Field(description="DHT counters.")
    quic: dict[str, Any] = Field(description="QUIC counters and limits.")
    nat: NatStatusResult = Field(
        description="Where the node stands behind a NAT: public address, NAT type (number and "
        "words), the gateway's port mapping, reachable directly or not, what a record would "
        "carry now, and why."
    )
    mcp_front: dict[str, int] | None = Field(
        None, description="What the MCP front refused (MCP server only)."
    )
    traversal: dict[str, Any] | None = Field(
        None, description="NAT traversal: the hubs we are reachable through (live_hubs), the "
        "callee's counters (callee), dials won directly or by a punch through the target's "
        "hubs, and the path of every connection we dialled (paths: aid, path, addr, dial_s, "
        "rtt_ms: the live connection's smoothed QUIC round-trip time, null before a sample)."
    )  # fmt: skip


class PublishResult(ToolResult):
    aid: str
    endpoints: list[str] = Field(description="The endpoints published in the signed record.")
    services: list[str] = Field(description="The topics registered.")
    profile: bool = Field(description="name, brief, protocols and meta were published in the "
                          "agent profile.")  # fmt: skip
    ttl_s: int = Field(description="Record lifetime in seconds (renewed automatically).")


class DiscoveredAgent(BaseModel):
    aid: str
    name: str
    brief: str
    protocols: list[str]
    tags: list[str]
    meta: dict[str, Any] = Field(description="What the agent wrote (peer data).")
    age_s: int = Field(description="Seconds since the registration was signed.")


class DiscoverResult(ToolResult):
    service: str
    count: int
    agents: list[DiscoveredAgent]


class ResolveResult(ToolResult):
    aid: str
    endpoints: list[str]
    nat_type: int
    seq: str = Field(description="The record's sequence number (64-bit, as decimal text).")
    age_s: int = Field(description="Seconds since the record was signed.")
    ttl_s: int = Field(description="The record's lifetime in seconds.")
    signal_hubs: list[str] = Field(
        default_factory=list,
        description="The signalling hubs the record names: a dial calls them to punch "
        "through the agent's NAT.",
    )
    connection: dict[str, Any] | None = Field(
        None, description="Our live connection to the agent, if we dialled one: path "
        "('direct', 'punched', 'ice' or 'relay'), addr, dial_s (from the start of the dial "
        "to the connection), rtt_ms (its smoothed QUIC round-trip time now)."
    )  # fmt: skip


class ConnectResult(ToolResult):
    aid: str
    connected: bool
    tunnel: str = Field(description="host:port of the local TCP tunnel to the agent's service.")
    hint: str
    path: str | None = Field(
        None, description="How the connection came up: 'direct' (QUIC to a published "
        "address), 'punched' (a hole punch through a hub the agent's record names), 'ice' "
        "(an ICE pair found through such a hub) or 'relay' (an ICE pair through a TURN relay)."
    )  # fmt: skip
    addr: str | None = Field(None, description="The agent's address on that path, host:port.")
    dial_s: float | None = Field(
        None, description="Seconds from the start of the dial to the verified connection."
    )
    rtt_ms: float | None = Field(
        None, description="The connection's smoothed round-trip time as QUIC measures it "
        "now, in milliseconds (null before its first sample)."
    )  # fmt: skip


class FetchResult(ToolResult):
    status: int = Field(description="The HTTP status code.")
    headers: dict[str, str]
    body: str | None = Field(None, description="The body, when it is UTF-8 text.")
    body_base64: str | None = Field(None, description="The body in base64, when it is not.")


class RemoteToolsResult(ToolResult):
    aid: str = Field(description="The agent whose MCP server answered.")
    count: int = Field(ge=0, description="How many tools it lists.")
    tools: list[dict[str, Any]] = Field(
        description="Each tool as the remote server describes it (name, title, description, "
        "inputSchema, outputSchema, annotations); call one with call_remote_tool."
    )


class RemoteToolCallResult(ToolResult):
    aid: str = Field(description="The agent whose MCP server answered.")
    tool: str = Field(description="The tool called.")
    content: list[dict[str, Any]] = Field(
        description="The result's content blocks as the remote server gave them (text, "
        "image, resource...)."
    )
    structured_content: dict[str, Any] | None = Field(
        None, description="The result's structured content, as the remote server gave it."
    )


class AgentReplyResult(_Open):
    agent: str = Field(description="The AID of the agent that answered (its URL when "
                       "called by url).")  # fmt: skip
    kind: str = Field(description="'message' or 'task'.")
    text: str = Field(description="The reply's text.")
    task: dict[str, Any] | None = Field(None, description="id, context_id, state (a task).")
    context_id: str | None = None
    task_id: str | None = None
    skill: str | None = Field(None, description="The skill asked for (call_agent by skill).")
    url: str | None = Field(None, description="The URL called (call_agent by url).")
    skipped: list[dict[str, str]] | None = Field(
        None, description="Agents offering the skill that could not be reached (aid, error)."
    )


class AgentCardResult(ToolResult):
    agent: str = Field(description="The AID whose card this is.")
    card: dict[str, Any] = Field(description="The A2A agent card as the agent serves it "
                                 "(name, description, skills, supportedInterfaces, "
                                 "capabilities...).")  # fmt: skip
    card_hash: str = Field(description="SHA-256 of the card bytes served, in hex.")
    checked: bool = Field(description="True: the agent's signed profile record names this "
                          "hash. False: it publishes no card hash, so nothing vouches for "
                          "the card beyond the verified connection it came over.")  # fmt: skip


class SendMailboxResult(ToolResult):
    message_id: str
    delivered: str = Field(description="Which paths held the note when the call returned: "
                           "'direct' (the recipient acknowledged it), 'stored' (kept on the "
                           "network for it) or 'both'.")  # fmt: skip
    replicas: int = Field(description="Copies stored on the network for the recipient when "
                          "the call returned (0 when the recipient acknowledged it first: "
                          "no copy is then needed).")  # fmt: skip
    refused: bool
    direct_error: str | None = None
    pending: str | None = Field(None, description="'direct' when the note is stored on the "
                                "network and the recipient, which did not answer within 1 s, "
                                "is still being tried in the background; absent "
                                "otherwise.")  # fmt: skip
    note: str | None = None


class MailNote(BaseModel):
    id: str
    from_: str = Field(alias="from", description="The verified sender AID.")
    received_at: str = Field(description="When it arrived, ISO 8601 UTC.")
    received_at_epoch: int = Field(description="The same instant in Unix seconds.")
    text: str

    model_config = ConfigDict(populate_by_name=True)


class ReadMailboxResult(ToolResult):
    count: int
    messages: list[MailNote]


class UnpublishResult(ToolResult):
    aid: str
    stopped: bool
    services: list[str]
    note: str


class IdentityCreateResult(ToolResult):
    aid: str
    owner_key_file: str = Field(description="The 0600 file holding the owner (master) private "
                                "key; the key itself is never shown.")  # fmt: skip
    warning: str


class IdentityEntry(BaseModel):
    aid: str
    kind: str = Field(description="'node' or 'delegated'.")
    published: bool


class IdentityListResult(ToolResult):
    identities: list[IdentityEntry]


class IdentityExportResult(ToolResult):
    export: str = Field(description="The identity sealed with the passphrase.")
    warning: str


class IdentityImportResult(ToolResult):
    aid: str
    published: bool


class TunnelEntry(BaseModel):
    tunnel: str
    aid: str
    connections: int
    failures: int
    errors: int


class TunnelListResult(ToolResult):
    tunnels: list[TunnelEntry]


class TunnelCloseResult(ToolResult):
    closed: str
