"""The tool catalogue: one framework-neutral description of every node verb (L5).

Each :class:`ToolSpec` has a name, a title, a description written for a language model, a
pydantic input model (closed: unknown names are refused; lengths bounded by the protocol's
limits), the MCP hints (:class:`Hints`), a result model (the MCP outputSchema, from
:mod:`~a2al_mcp.toolresults`) and an async ``run(node, args) -> dict``. The MCP server renders
these as MCP tools; the LangChain and CrewAI adapters render the same specs, so names,
descriptions and schemas agree everywhere. Failures are :class:`ToolFailure` with a stable
``code`` and a sentence a person understands, quoting at most a few dozen characters of what
was given; nothing else escapes ``run`` (unexpected errors become ``INTERNAL``).

Results are JSON objects, checked against the tool's result model, each with ``unread_mail``
(unread notes waiting); AIDs always in their checksummed text form; 64-bit numbers as text.
What peers wrote may hold values JSON has no form for: :func:`call_tool` renders every result
with :func:`~a2al_mcp.toolresults.json_safe`. Arguments are checked before any tool runs
(:func:`check_arguments`; :class:`~a2al_mcp.toolargs.ToolArgs`: no text with a lone
surrogate). Secrets never pass through the model: identity_create writes the owner key to a
0600 file, and identity_export asks the user for its passphrase through ``ask_secret``.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import functools
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Final, Literal, cast

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from . import agentcall
from .config import OutboxConfig
from .errors import (
    A2ALError,
    AgentCallError,
    BadAid,
    BadArguments,
    DecodeError,
    InternalError,
    NotFound,
    UnknownTool,
    Unreachable,
    UsageError,
)
from .identity.aid import Aid
from .node.dial_strategy import UsedPath
from .node.dialer import dial_target
from .node.node import Node
from .node.outbox import Delivery
from .protocol.limits import BRIEF_MAX_CHARS, MAILBOX_BODY_MAX, TOPIC_TTL_MAX_S
from .protocol.payloads import AgentProfilePayload, EndpointPayload, TopicPayload
from .toolargs import ToolArgs
from .toolresults import (
    RESULT_DEPTH_MAX,
    AgentCardResult,
    AgentReplyResult,
    ConnectResult,
    DiscoverResult,
    FetchResult,
    IdentityCreateResult,
    IdentityExportResult,
    IdentityImportResult,
    IdentityListResult,
    PublishResult,
    ReadMailboxResult,
    RemoteToolCallResult,
    RemoteToolsResult,
    ResolveResult,
    SendMailboxResult,
    StatusResult,
    ToolFailure,
    ToolResult,
    TunnelCloseResult,
    TunnelListResult,
    UnpublishResult,
    json_safe,
    quote,
)

__all__ = [
    "RESULT_DEPTH_MAX",
    "TOOLS",
    "TOOL_PROGRESS",
    "AskSecret",
    "Hints",
    "ToolFailure",
    "ToolSpec",
    "call_tool",
    "check_arguments",
    "delivery_fields",
    "iso_utc",
    "json_safe",
    "note_fields",
    "run_checked",
    "tool",
    "unread_mail",
]

logger = logging.getLogger(__name__)

_AID_FORM = (
    "42 hex characters starting with a0, all lowercase or in its checksummed mixed case (any "
    "other mix of cases is refused); or an 0x… / bc1… form"
)
_AID_HELP = "an agent's AID: " + _AID_FORM
AID_TEXT_MAX: Final = 64
"""Longest AID text taken (the longest form, bech32, is 62 characters)."""
TOPIC_MAX: Final = 256
"""Longest topic: a topic registration (topic, name, brief, tags, meta) fits in a
:data:`~a2al_mcp.protocol.limits.TOPIC_PAYLOAD_MAX`-byte payload."""
NAME_MAX: Final = 64
TAG_MAX: Final = 32
TAGS_MAX: Final = 16
PROTOCOLS_MAX: Final = 16
TEXT_MAX: Final = 65536
"""Longest message to an A2A agent (call_agent), in characters."""
PATH_MAX: Final = 2048
URL_MAX: Final = 2048
"""Longest URL of an A2A agent on plain HTTP (call_agent's url)."""
HTTP_BODY_MAX: Final = 1 << 20
OUTBOX_TTL_S: Final = OutboxConfig().ttl_s
"""Longest a queued message is kept (the outbox's TTL)."""
FANOUT_MAX: Final = 16
"""Most agents call_agents sends one message to."""
FETCH_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

Aid_ = Annotated[str, Field(max_length=AID_TEXT_MAX, description=_AID_HELP)]
Topic = Annotated[str, Field(min_length=1, max_length=TOPIC_MAX)]
Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX)]


@dataclasses.dataclass(frozen=True, slots=True)
class Hints:
    """What a tool does, for MCP hosts (the spec's tool annotations): ``read_only`` (changes
    nothing), ``destructive`` (may undo or remove something; meaningful when not read-only),
    ``idempotent`` (calling again with the same arguments has no further effect),
    ``open_world`` (reaches other agents on the network, not only this node)."""

    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    input_model: type[BaseModel]
    run: Callable[[Node, Any], Awaitable[dict[str, Any]]]
    read_only: bool = False
    title: str = ""
    """A short human title (the MCP tool title)."""
    hints: Hints | None = None
    """The MCP tool annotations (read-only, destructive, idempotent, open world)."""
    result_model: type[ToolResult] = ToolResult
    """The result's fields (the MCP outputSchema); every result also has ``unread_mail``."""


AID_CACHE_MAX: Final = 1024
"""AIDs whose text forms are remembered (both ways: a checksum is a SHA-256 each time)."""


@functools.lru_cache(maxsize=AID_CACHE_MAX)
def _aid(text: str) -> Aid:
    """``text`` as an AID (a failure is not remembered).

    Raises:
        BadAid: not an AID.
    """
    try:
        return Aid.from_str(text)
    except DecodeError as exc:
        raise BadAid(
            f"{quote(text)} is {exc}", hint="an AID is 42 hex characters starting with a0"
        ) from exc


@functools.lru_cache(maxsize=AID_CACHE_MAX)
def _text(aid: Aid) -> str:
    """``aid``'s checksummed text form."""
    return str(aid)


def _age(node: Node, timestamp: int) -> int:
    return max(0, int(node.clock.wall()) - timestamp)


def iso_utc(epoch: float) -> str:
    """``epoch`` (Unix seconds) as ISO 8601 UTC text, e.g. ``2026-01-02T03:04:05Z`` (the form
    of ``received_at`` in read_mailbox and the inbox resource)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def note_fields(note: Any) -> dict[str, Any]:
    """One mailbox note as read_mailbox and the ``a2al://inbox`` resource show it."""
    return {"id": note.msg_id.hex(), "from": _text(note.sender),
            "received_at": iso_utc(note.received_at),
            "received_at_epoch": int(note.received_at), "text": note.text}  # fmt: skip


# -- inputs -------------------------------------------------------------------------------


class PublishArgs(ToolArgs):
    services: list[Topic] = Field(
        default_factory=list,
        max_length=TAGS_MAX,
        description=(
            "Capabilities to register under, e.g. ['lang.translate'] (dot-separated topics); "
            "discover finds the agent by them, with its name, brief, tags and meta."
        ),
    )
    name: str = Field("", max_length=NAME_MAX, description="A short display name for this agent.")
    brief: str = Field("", max_length=BRIEF_MAX_CHARS, description="One sentence on what it does.")
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=TAGS_MAX,
        description="Free-form tags, e.g. ['fr','en']; published with services only (discover "
        "filters by them), so give services too.",
    )
    protocols: list[Tag] = Field(
        default_factory=list,
        max_length=PROTOCOLS_MAX,
        description="Protocols spoken, e.g. ['a2a','mcp','http'].",
    )
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="Small extra key/values (a registration must fit in 512 bytes, a profile "
        "in 700).",
    )
    ttl_s: int = Field(3600, ge=60, le=TOPIC_TTL_MAX_S // 2,
                       description="Record lifetime in seconds (60-3600); renewed automatically "
                       "while this server runs.")  # fmt: skip


class DiscoverArgs(ToolArgs):
    service: Topic = Field(description="The capability topic to search, e.g. 'lang.translate'.")
    tags: list[Tag] = Field(
        default_factory=list, max_length=TAGS_MAX, description="Only agents with all these tags."
    )
    protocols: list[Tag] = Field(
        default_factory=list, max_length=PROTOCOLS_MAX, description="Only agents speaking any "
        "of these."
    )  # fmt: skip
    limit: int = Field(20, ge=1, le=200, description="Most results to return.")


class AidArgs(ToolArgs):
    aid: Aid_


class FetchArgs(ToolArgs):
    aid: Aid_
    path: str = Field("/", min_length=1, max_length=PATH_MAX, pattern=r"^/",
                      description="The HTTP path, starting with '/', e.g. "
                      "'/v1/translate?q=hi'.")  # fmt: skip
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field(
        "GET", description="HTTP method (upper case)."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Request headers, name to value."
    )
    body: str = Field("", max_length=HTTP_BODY_MAX, description="Request body as UTF-8 text.")


class SendMailboxArgs(ToolArgs):
    to: Aid_ = Field(description="The recipient's AID: " + _AID_FORM)
    text: str = Field(min_length=1, max_length=MAILBOX_BODY_MAX,
                      description=f"The note, at most {MAILBOX_BODY_MAX} bytes of UTF-8 (fewer "
                      "characters when not ASCII).")  # fmt: skip

    @field_validator("text")
    @classmethod
    def _fits(cls, text: str) -> str:
        size = len(text.encode("utf-8", "replace"))
        if size > MAILBOX_BODY_MAX:
            raise ValueError(f"the note is {size} bytes of UTF-8, at most {MAILBOX_BODY_MAX} fit")
        return text


class ReadMailboxArgs(ToolArgs):
    peek: bool = Field(False, description="Leave the notes unread (default: mark them read).")
    limit: int = Field(20, ge=1, le=200, description="Most notes to return.")


class NoArgs(ToolArgs):
    pass


class ExportArgs(ToolArgs):
    aid: str = Field("", max_length=AID_TEXT_MAX,
                     description="Which identity (" + _AID_FORM + "); default: the node's "
                     "own.")  # fmt: skip


class ExportRun(BaseModel):
    """What identity_export runs with: its arguments and the passphrase the user gave (never
    the model: see :func:`call_tool`'s ``ask_secret``)."""

    aid: str
    passphrase: str = Field(min_length=8)


class ImportArgs(ToolArgs):
    export: str = Field(description="The text identity_export returned (bounded and checked "
                        "by the node before any key derivation).")  # fmt: skip
    passphrase: str = Field(min_length=1, max_length=1024,
                            description="The passphrase it was exported with.")  # fmt: skip


class TunnelCloseArgs(ToolArgs):
    tunnel: str = Field(
        max_length=64,
        description="The tunnel's local address as returned by connect, e.g. '127.0.0.1:40123'.",
    )


class CallAgentArgs(ToolArgs):
    to: str = Field("", max_length=AID_TEXT_MAX,
                    description="The agent's AID (" + _AID_FORM + "). Give exactly one of "
                    "to, skill and url.")  # fmt: skip
    skill: str = Field(
        "",
        max_length=TOPIC_MAX,
        description="Or a capability topic (e.g. 'lang.translate'): the message goes to one "
        "live agent that offers it over A2A. Give exactly one of to, skill and url.",
    )
    url: str = Field("", max_length=URL_MAX, pattern=r"^(https?://\S+)?$",
                     description="Or the base URL of an A2A agent on plain HTTP(S) (its card "
                     "at <url>/.well-known/agent-card.json), e.g. 'http://127.0.0.1:9999'. "
                     "Give exactly one of to, skill and url.")  # fmt: skip
    text: str = Field(min_length=1, max_length=TEXT_MAX, description="The message for the agent.")
    task_id: str = Field("", max_length=256,
                         description="Continue this task (from an earlier reply; needs "
                         "to or url).")  # fmt: skip
    context_id: str = Field(
        "", max_length=256, description="Continue this conversation context (needs to or url)."
    )
    timeout_s: float = Field(60.0, ge=1, le=600,
                             description="How long to wait for the reply, in seconds.")  # fmt: skip
    wait: bool = Field(
        True,
        description="Wait for the agent to finish; false returns the task at once (then poll "
        "it with get_agent_task).",
    )
    queue_if_offline: bool = Field(
        False,
        description="If the agent (to) is offline or unreachable, keep the message in this "
        "node's outbox and deliver it when the agent comes back (at least once, within "
        "queue_ttl_s): the result is then kind 'queued' with a delivery_id; outbox_list shows "
        "it and, once delivered, the agent's reply (also in the inbox resource).",
    )
    queue_ttl_s: float = Field(OUTBOX_TTL_S, ge=1, le=OUTBOX_TTL_S,
                               description="How long a queued message is kept, in seconds "
                               "(default and most: 24 h).")  # fmt: skip

    @model_validator(mode="after")
    def _one_target(self) -> CallAgentArgs:
        if [bool(self.to), bool(self.skill), bool(self.url)].count(True) != 1:
            raise ValueError("give exactly one of to (an AID), skill (a capability) and url "
                             "(an A2A agent on plain HTTP)")  # fmt: skip
        if self.skill and (self.task_id or self.context_id):
            raise ValueError("task_id and context_id continue a conversation with one agent: "
                             "give its AID in to (or its url)")  # fmt: skip
        if self.queue_if_offline and not self.to:
            raise ValueError("queue_if_offline keeps a message for one agent: give its AID in "
                             "to")  # fmt: skip
        return self


class CallAgentsArgs(ToolArgs):
    skill: Topic = Field(description="The capability topic (e.g. 'lang.translate'): the "
                         "message goes to up to n live agents offering it over A2A.")  # fmt: skip
    text: str = Field(min_length=1, max_length=TEXT_MAX, description="The message for each agent.")
    n: int = Field(3, ge=1, le=FANOUT_MAX, description="Most agents to send it to.")
    mode: Literal["all", "first"] = Field(
        "all", description="'all': wait for every reply (or failure); 'first': return with "
        "the first reply."
    )  # fmt: skip
    timeout_s: float = Field(60.0, ge=1, le=600,
                             description="How long to wait for each reply, in "
                             "seconds.")  # fmt: skip
    wait: bool = Field(True, description="Wait for each agent to finish; false returns their "
                       "tasks at once (poll them with get_agent_task).")  # fmt: skip


class OutboxListArgs(ToolArgs):
    state: Literal["", "queued", "delivered", "failed", "expired", "canceled"] = Field(
        "", description="Only deliveries in this state (default: all)."
    )
    limit: int = Field(50, ge=1, le=500, description="Most deliveries to return, newest first.")


class OutboxCancelArgs(ToolArgs):
    delivery_id: str = Field(min_length=1, max_length=64,
                             description="The delivery_id call_agent returned.")  # fmt: skip


class TaskArgs(ToolArgs):
    aid: Aid_ = Field(description="The agent's AID: " + _AID_FORM)
    task_id: str = Field(min_length=1, max_length=256,
                         description="The task id from call_agent's reply.")  # fmt: skip


REMOTE_TOOL_NAME_MAX: Final = 128
"""Longest remote tool name taken (MCP tool names are at most 128 characters)."""


class RemoteToolArgs(ToolArgs):
    aid: Aid_ = Field(description="The AID of the agent serving MCP tools (discover with "
                      "protocols=['mcp'] finds such agents): " + _AID_FORM)  # fmt: skip
    tool: str = Field(min_length=1, max_length=REMOTE_TOOL_NAME_MAX,
                      description="The tool's name, as remote_tools lists it.")  # fmt: skip
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="The tool's arguments, as its inputSchema (from remote_tools) says.",
    )


# -- results of the tools whose result models live here ------------------------------------


class CallAgentsResult(ToolResult):
    skill: str = Field(description="The skill asked for.")
    count: int = Field(ge=0, description="How many agents replied.")
    replies: list[dict[str, Any]] = Field(description="Each reply, as call_agent returns one "
                                          "(agent: the AID that replied; kind, text, "
                                          "task).")  # fmt: skip
    failed: list[dict[str, str]] = Field(description="Agents that did not reply (aid, "
                                         "error).")  # fmt: skip


class OutboxListResult(ToolResult):
    count: int = Field(ge=0)
    deliveries: list[dict[str, Any]] = Field(
        description="Newest first: delivery_id, to, from, state (queued, delivered, failed, "
        "expired, canceled), attempts, queued_at, expires_at (ISO 8601 UTC), next_try_at "
        "while queued, last_error, done_at, and reply once delivered (as call_agent returns "
        "one: a task to follow with get_agent_task, or a message)."
    )
    queued: int = Field(ge=0, description="Messages waiting now, in all.")
    statistics: dict[str, int] = Field(description="The outbox's counters since the node "
                                       "started.")  # fmt: skip


class OutboxCancelResult(ToolResult):
    delivery: dict[str, Any] = Field(description="The delivery, now canceled.")


# -- implementations ----------------------------------------------------------------------


async def _publish(node: Node, a: PublishArgs) -> dict[str, Any]:
    if a.tags and not a.services:
        raise BadArguments(
            "tags are published with services only (discover filters agents by them): give "
            "services too, or leave tags out",
            operation="publish",
        )
    profile = bool(a.name or a.brief or a.protocols or a.meta)
    # each record must encode (a registration in 512 bytes, the profile in 700, a meta CBOR
    # carries faithfully): LIMIT or USAGE now, before anything is published
    if a.services:  # the longest topic makes the largest registration
        longest = max(a.services, key=len)
        TopicPayload(topic=longest, name=a.name, protocols=tuple(a.protocols),
                     tags=tuple(a.tags), brief=a.brief, meta=a.meta).to_bytes()  # fmt: skip
    if profile:
        AgentProfilePayload(name=a.name, brief=a.brief, protocols=tuple(a.protocols),
                            meta=a.meta).to_bytes()  # fmt: skip
    if profile:
        await node.set_profile(AgentProfilePayload(name=a.name, brief=a.brief,
                                                   protocols=tuple(a.protocols), meta=a.meta),
                               ttl_s=a.ttl_s)  # fmt: skip
    rec = await node.publish(ttl_s=a.ttl_s)
    for service in a.services:
        await node.register_service(service, name=a.name, brief=a.brief, protocols=a.protocols,
                                    tags=a.tags, meta=a.meta, ttl_s=a.ttl_s)  # fmt: skip
    endpoints = list(EndpointPayload.from_bytes(rec.payload).endpoints)
    return {"aid": _text(node.aid), "endpoints": endpoints, "services": a.services,
            "profile": profile, "ttl_s": a.ttl_s}  # fmt: skip


async def _discover(node: Node, a: DiscoverArgs) -> dict[str, Any]:
    found = await node.discover(a.service, protocols=a.protocols, tags=a.tags)
    agents = [{"aid": _text(e.aid), "name": e.name, "brief": e.brief,
               "protocols": list(e.protocols), "tags": list(e.tags), "meta": e.meta,
               "age_s": _age(node, e.timestamp)}
              for e in found[: a.limit]]  # fmt: skip
    return {"service": a.service, "count": len(agents), "agents": agents}


async def _resolve(node: Node, a: AidArgs) -> dict[str, Any]:
    r = await node.resolve(_aid(a.aid))
    used = node.connection_path(r.aid)
    return {"aid": _text(r.aid), "endpoints": list(r.endpoints), "nat_type": r.nat_type,
            "seq": str(r.seq), "age_s": _age(node, r.timestamp), "ttl_s": r.ttl,
            "signal_hubs": list(dial_target(r).hubs),
            "connection": None if used is None else _path(node, r.aid, used)}  # fmt: skip


def _path(node: Node, aid: Aid, used: UsedPath) -> dict[str, Any]:
    rtt_s = _live_rtt_s(node, aid, used)
    return {"path": used.kind, "addr": _hostport(used.addr), "dial_s": round(used.took_s, 3),
            "rtt_ms": None if rtt_s is None else round(rtt_s * 1000, 3)}  # fmt: skip


def _live_rtt_s(node: Node, aid: Aid, used: UsedPath) -> float | None:
    """The QUIC smoothed RTT of the live connection we dialled to ``aid`` on ``used``'s path
    (the peer's address on it: the ICE pair's remote for a path connection)."""
    for pc in node.connections():
        if not (pc.is_dialer and pc.ready) or pc.closed:
            continue
        remote = pc.addr if pc.path is None else pc.path.remote
        if remote == used.addr and pc.peer_aid == aid:
            return pc.smoothed_rtt_s()
    return None


async def _connect(node: Node, a: AidArgs) -> dict[str, Any]:
    aid = _aid(a.aid)
    tunnel = await node.tunnel(aid)
    host, port = tunnel.addr
    used = node.connection_path(aid)
    return {"aid": _text(aid), "connected": True, "tunnel": f"{host}:{port}",
            "hint": f"Connect to {host}:{port} (TCP) to talk to the agent's service; "
                    "every TCP connection is a separate verified stream.",
            **({} if used is None else _path(node, aid, used))}  # fmt: skip


async def _fetch(node: Node, a: FetchArgs) -> dict[str, Any]:
    resp = await node.fetch(_aid(a.aid), a.method, a.path, headers=list(a.headers.items()),
                            body=a.body.encode())  # fmt: skip
    out: dict[str, Any] = {"status": resp.status, "headers": dict(resp.headers)}
    try:
        out["body"] = resp.body.decode("utf-8")
    except UnicodeDecodeError:
        out["body_base64"] = base64.b64encode(resp.body).decode()
    return out


async def _send_mailbox(node: Node, a: SendMailboxArgs) -> dict[str, Any]:
    res = await node.send_mailbox(_aid(a.to), a.text)
    out: dict[str, Any] = {"message_id": res.message_id, "delivered": res.delivered,
                           "replicas": res.replicas, "refused": res.refused}  # fmt: skip
    if res.direct_error:
        out["direct_error"] = res.direct_error
    if res.pending:
        out["pending"] = res.pending
    if res.refused:
        out["note"] = (
            "the recipient refused the note (its mailbox or disk is full, or it did not "
            "accept it); a copy kept on the network may still reach it"
        )
    return out


async def _read_mailbox(node: Node, a: ReadMailboxArgs) -> dict[str, Any]:
    notes = await node.read_mailbox(peek=a.peek, limit=a.limit)
    return {"count": len(notes), "messages": [note_fields(n) for n in notes]}


async def _status(node: Node, a: NoArgs) -> dict[str, Any]:
    st = node.status()
    mb = st.mailbox
    return {
        "aid": _text(st.aid), "listen": f"{st.listen[0]}:{st.listen[1]}", "peers": st.peers,
        "ready": st.ready, "published": [str(x) for x in st.published],
        "connections": st.connections, "serving": [str(x) for x in st.serving],
        "tunnels": [f"{t.addr[0]}:{t.addr[1]}" for t in node.tunnels()],
        "mailbox": dataclasses.asdict(mb) if mb is not None else {},
        "observed_addrs": [f"{h}:{p}" for (h, p), _n in st.observed_addrs],
        "contained_errors": dataclasses.asdict(st.contained_errors),
        "dht": dataclasses.asdict(st.dht),
        "quic": dataclasses.asdict(st.quic) if st.quic is not None else {},
        "nat": {
            "public_addrs": [_hostport(a) for a in st.nat.public_addrs],
            "nat_type": st.nat.nat_type, "nat_type_words": st.nat.nat_type_words,
            "upnp_mapping": None if st.nat.upnp_mapping is None else _hostport(st.nat.upnp_mapping),
            "reachable_directly": st.nat.reachable_directly,
            "published_endpoints": list(st.nat.published_endpoints),
            "evidence": list(st.nat.evidence),
        },
        "traversal": {
            "live_hubs": list(st.traversal.live_hubs),
            "callee": None if st.traversal.callee is None
            else dataclasses.asdict(st.traversal.callee),
            "direct_wins": st.traversal.direct_wins, "punch_wins": st.traversal.punch_wins,
            "hub_dials": st.traversal.hub_dials, "dial_failures": st.traversal.dial_failures,
            "paths": [{"aid": _text(p.peer), **_path(node, p.peer, p.path)}
                      for p in st.traversal.paths],
        },
    }  # fmt: skip


def _hostport(addr: tuple[str, int]) -> str:
    """``host:port``, an IPv6 host in brackets."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _unpublish(node: Node, a: NoArgs) -> dict[str, Any]:
    topics = node.unpublish()
    return {"aid": str(node.aid), "stopped": True, "services": topics,
            "note": "copies on the network expire within their TTL (1-2 hours)"}  # fmt: skip


def _owner_key_file(node: Node, aid: Aid, seed_hex: str) -> Path:
    """Write the owner key of new agent ``aid`` to a new 0600 file in the node's data
    directory (``owner-keys/``), or in a private temporary directory when it has none."""
    if node.config.data_dir is not None:
        folder = node.config.data_dir / "owner-keys"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="a2al-owner-key-"))
    path = folder / f"{aid}.owner-key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(f"# owner (master) private key of A2AL agent {aid} (Ed25519 seed, hex)\n")
        out.write(seed_hex + "\n")
    return path


async def _identity_create(node: Node, a: NoArgs) -> dict[str, Any]:
    created = node.create_agent()
    aid = created.identity.aid
    path = _owner_key_file(node, aid, created.master.seed.hex())
    await node.publish(aid)
    return {
        "aid": str(aid),
        "owner_key_file": str(path),
        "warning": "The owner key is in that file only (readable by this user alone), not in "
        "this chat. Tell the user to move it offline and delete the file: it proves they own "
        "the agent and can authorise a new operational key.",
    }


async def _identity_list(node: Node, a: NoArgs) -> dict[str, Any]:
    published = set(node.status().published)
    return {"identities": [
        {"aid": str(i.aid), "kind": "delegated" if i.is_delegated else "node",
         "published": i.aid in published} for i in node.identities()]}  # fmt: skip


async def _identity_export(node: Node, a: ExportRun) -> dict[str, Any]:
    aid = _aid(a.aid) if a.aid else None
    return {"export": await node.export_identity(a.passphrase, aid),
            "warning": "Whoever has this text and the passphrase can act as it."}  # fmt: skip


async def _identity_import(node: Node, a: ImportArgs) -> dict[str, Any]:
    ident = await node.import_identity(a.export, a.passphrase)
    await node.publish(ident.aid)
    return {"aid": str(ident.aid), "published": True}


async def _tunnel_list(node: Node, a: NoArgs) -> dict[str, Any]:
    return {"tunnels": [{"tunnel": f"{t.addr[0]}:{t.addr[1]}", "aid": str(t.remote),
                         "connections": t.connections, "failures": t.failures,
                         "errors": t.errors} for t in node.tunnels()]}  # fmt: skip


async def _tunnel_close(node: Node, a: TunnelCloseArgs) -> dict[str, Any]:
    for t in node.tunnels():
        if f"{t.addr[0]}:{t.addr[1]}" == a.tunnel:
            await t.aclose()
            return {"closed": a.tunnel}
    raise NotFound(f"no open tunnel at {a.tunnel}", operation="tunnel_close",
                   hint="tunnel_list shows them")  # fmt: skip


Progress = Callable[[float, float, str], Awaitable[None]]
"""Reports progress of a running tool call: ``(progress, total, message)``."""
TOOL_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "a2al_tool_progress", default=None
)
"""The running tool call's progress reporter, set by the MCP front for a client that asked
for progress (call_agent forwards a streaming agent's updates to it)."""


def _forward_updates() -> agentcall.OnUpdate | None:
    """call_agent's updates as progress notifications (increasing, below the final 1)."""
    progress = TOOL_PROGRESS.get()
    if progress is None:
        return None
    seen = 0

    async def on_update(update: agentcall.Update) -> None:
        nonlocal seen
        seen += 1
        what = f"{update.kind}: " + (update.state if update.kind == "status" else "")
        text = (what + (" " if update.state and update.text else "") + update.text).strip()
        await progress(1 - 1 / (seen + 1), 1, text[:500])

    return on_update


def delivery_fields(d: Delivery) -> dict[str, Any]:
    """One outbox delivery as outbox_list, outbox_cancel and the inbox resource show it."""
    out: dict[str, Any] = {"delivery_id": d.id, "to": _text(d.target), "from": _text(d.sender),
                           "state": d.state, "attempts": d.attempts,
                           "queued_at": iso_utc(d.created_at),
                           "expires_at": iso_utc(d.expires_at)}  # fmt: skip
    if d.state == "queued":
        out["next_try_at"] = iso_utc(max(d.next_at, d.created_at))
    if d.last_error:
        out["last_error"] = d.last_error
    if d.done_at is not None:
        out["done_at"] = iso_utc(d.done_at)
    reply = agentcall.delivery_reply(d)
    if reply is not None:
        out["reply"] = reply.to_dict()
    return out


async def _call_agent(node: Node, a: CallAgentArgs) -> dict[str, Any]:
    if a.url:
        reply = await agentcall.send_message_url(a.url, a.text, task_id=a.task_id,
                                                 context_id=a.context_id, timeout_s=a.timeout_s,
                                                 return_immediately=not a.wait)  # fmt: skip
        out = reply.to_dict()
        out["url"] = a.url
        return out
    if a.to:
        target = _aid(a.to)
        try:
            reply = await agentcall.send_message(node, target, a.text, task_id=a.task_id,
                                                 context_id=a.context_id, timeout_s=a.timeout_s,
                                                 return_immediately=not a.wait,
                                                 on_update=_forward_updates() if a.wait
                                                 else None)  # fmt: skip
        except (NotFound, Unreachable) as exc:
            if not a.queue_if_offline:
                raise
            queued = agentcall.queue_message(node, target, a.text, task_id=a.task_id,
                                             context_id=a.context_id,
                                             ttl_s=a.queue_ttl_s)  # fmt: skip
            return {"agent": _text(target), "kind": "queued",
                    "text": f"{target.short()} is not reachable now ({exc.message}); the "
                    "message waits in the outbox and goes when it comes back",
                    "delivery_id": queued.id, "delivery": delivery_fields(queued)}  # fmt: skip
        return reply.to_dict()
    reply, failed = await agentcall.call_skill(node, a.skill, a.text, timeout_s=a.timeout_s,
                                               return_immediately=not a.wait,
                                               on_update=_forward_updates() if a.wait
                                               else None)  # fmt: skip
    out = reply.to_dict()
    out["skill"] = a.skill
    out["skipped"] = [{"aid": str(f.aid), "error": f.error} for f in failed]
    return out


async def _call_agents(node: Node, a: CallAgentsArgs) -> dict[str, Any]:
    got = await agentcall.call_agents(node, a.skill, a.text, n=a.n, mode=a.mode,
                                      timeout_s=a.timeout_s,
                                      return_immediately=not a.wait)  # fmt: skip
    return {"skill": a.skill, "count": len(got.replies),
            "replies": [r.to_dict() for r in got.replies],
            "failed": [{"aid": _text(f.aid), "error": f.error} for f in got.failed]}  # fmt: skip


async def _outbox_list(node: Node, a: OutboxListArgs) -> dict[str, Any]:
    box = node.outbox()
    found = box.deliveries(state=a.state or None, limit=a.limit)
    st = box.statistics()
    return {"count": len(found), "deliveries": [delivery_fields(d) for d in found],
            "queued": st.queued, "statistics": dataclasses.asdict(st)}  # fmt: skip


async def _outbox_cancel(node: Node, a: OutboxCancelArgs) -> dict[str, Any]:
    return {"delivery": delivery_fields(node.outbox().cancel(a.delivery_id))}


async def _get_agent_card(node: Node, a: AidArgs) -> dict[str, Any]:
    return (await agentcall.get_checked_card(node, _aid(a.aid))).to_dict()


async def _get_agent_task(node: Node, a: TaskArgs) -> dict[str, Any]:
    return (await agentcall.get_task(node, _aid(a.aid), a.task_id)).to_dict()


async def _cancel_agent_task(node: Node, a: TaskArgs) -> dict[str, Any]:
    return (await agentcall.cancel_task(node, _aid(a.aid), a.task_id)).to_dict()


def _remote(node: Node) -> Any:
    """The node's sessions with other agents' MCP servers (the mcp SDK loads here).

    Raises:
        UsageError: the installed mcp SDK cannot be loaded as a client.
    """
    try:
        from .remote_mcp.client import remote_mcp
    except ImportError as exc:
        raise UsageError("using other agents' MCP tools needs the mcp SDK's client (mcp "
                         f"1.x with httpx, or 2.x with httpx2): {exc}") from exc  # fmt: skip
    return remote_mcp(node)


async def _remote_tools(node: Node, a: AidArgs) -> dict[str, Any]:
    aid = _aid(a.aid)
    tools = await _remote(node).list_tools(aid)
    return {"aid": _text(aid), "count": len(tools), "tools": tools}


async def _call_remote_tool(node: Node, a: RemoteToolArgs) -> dict[str, Any]:
    aid = _aid(a.aid)
    result = await _remote(node).call_tool(aid, a.tool, a.arguments)
    content = result.get("content", [])
    if result.get("isError"):
        text = " ".join(str(c.get("text", "")) for c in content if c.get("type") == "text")
        raise AgentCallError(f"the remote MCP server's tool {quote(a.tool, 64)} reported an "
                             f"error: {text[:2000] or '(no text)'}", aid=aid,
                             operation="call_remote_tool")  # fmt: skip
    return {"aid": _text(aid), "tool": a.tool, "content": content,
            "structured_content": result.get("structuredContent")}  # fmt: skip


_LOCAL_READ = Hints(read_only=True, destructive=False, idempotent=True, open_world=False)
_NET_READ = Hints(read_only=True, destructive=False, idempotent=True, open_world=True)
_NET_ACT = Hints(read_only=False, destructive=False, idempotent=False, open_world=True)

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("status", "Show this node: its AID, peers, whether it is ready, what it publishes, "
             "open connections and tunnels, mailbox counters. Call it first to check the "
             "network is reachable. Every tool's result also carries unread_mail.", NoArgs,
             _status, read_only=True, title="Node status", hints=_LOCAL_READ,
             result_model=StatusResult),
    ToolSpec("publish", "Announce this agent on the A2AL network so others can resolve and "
             "connect to it. name, brief, protocols and meta go into its agent profile; with "
             "services (capability topics) it is also registered under each, with its tags, "
             "so discover finds it (tags need services). Renewed automatically while the "
             "server runs; ttl_s is in seconds.", PublishArgs, _publish,
             title="Publish this agent",
             hints=Hints(read_only=False, destructive=False, idempotent=True, open_world=True),
             result_model=PublishResult),
    ToolSpec("discover", "Find agents offering a capability (a topic such as "
             "'lang.translate'), optionally filtered by tags and protocols. Returns their AIDs; "
             "use resolve, fetch or send_mailbox next.", DiscoverArgs, _discover, read_only=True,
             title="Discover agents", hints=_NET_READ, result_model=DiscoverResult),
    ToolSpec("resolve", "Look up where an agent (AID) can be reached now: its live endpoints "
             "from its signed record (seq is a 64-bit number given as text). NOT_FOUND means "
             "it has not been online for about an hour: leave it a note with send_mailbox.",
             AidArgs, _resolve, read_only=True, title="Resolve an AID", hints=_NET_READ,
             result_model=ResolveResult),
    ToolSpec("connect", "Open a verified, encrypted QUIC connection to an agent and a local "
             "TCP tunnel (127.0.0.1:port) to its service, for programs on this machine (a "
             "browser, curl, a database client) to use: this tool sends no data itself. To "
             "send a request yourself use fetch or call_agent. If the agent is unreachable, "
             "fall back to send_mailbox.", AidArgs, _connect, title="Open a tunnel to an agent",
             hints=_NET_ACT, result_model=ConnectResult),
    ToolSpec("fetch", "Send one HTTP request (method GET, HEAD, POST, PUT, PATCH, DELETE or "
             "OPTIONS) to an agent's service over a verified QUIC connection and return the "
             "response. If it is unreachable, use send_mailbox.", FetchArgs, _fetch,
             title="HTTP request to an agent", hints=_NET_ACT, result_model=FetchResult),
    ToolSpec("call_agent", "Send a message to an A2A agent, by AID (to) or by capability "
             "(skill: one live agent offering it is picked) over a verified QUIC connection, "
             "or by url to an A2A agent on plain HTTP(S) — exactly one of the three — and "
             "return its reply: a message, or a task with its state (poll an agent reached "
             "by AID with get_agent_task). timeout_s is in seconds. A streaming agent's "
             "status and artifact updates arrive as progress notifications while it works. "
             "If the agent (to) is offline, queue_if_offline=true keeps the message and "
             "delivers it when it comes back (see outbox_list).", CallAgentArgs, _call_agent,
             title="Message an A2A agent", hints=_NET_ACT, result_model=AgentReplyResult),
    ToolSpec("call_agents", "Send one message to up to n live A2A agents offering a "
             "capability (skill), all at once, and return each reply with the AID that gave "
             "it (mode='all' waits for every one, mode='first' returns with the first reply); "
             "agents that failed or timed out are listed in failed, beside the replies.",
             CallAgentsArgs, _call_agents, title="Message several A2A agents",
             hints=_NET_ACT, result_model=CallAgentsResult),
    ToolSpec("outbox_list", "List the messages this node keeps for A2A agents that were "
             "offline (call_agent with queue_if_offline): queued ones with their attempts and "
             "next try, and those that ended (delivered with the agent's reply, failed, "
             "expired after their TTL, canceled).", OutboxListArgs, _outbox_list,
             read_only=True, title="List the outbox", hints=_LOCAL_READ,
             result_model=OutboxListResult),
    ToolSpec("outbox_cancel", "Cancel a queued message (its delivery_id from call_agent) so "
             "it is not delivered.", OutboxCancelArgs, _outbox_cancel,
             title="Cancel a queued message",
             hints=Hints(read_only=False, destructive=True, idempotent=False, open_world=False),
             result_model=OutboxCancelResult),
    ToolSpec("get_agent_card", "Get the A2A agent card an agent (AID) serves over a verified "
             "QUIC connection: its name, description, skills, capabilities and interfaces. "
             "The card is checked against the card hash in the agent's signed profile "
             "record: a card that does not match is refused (VERIFY); checked=false means "
             "the agent publishes no card hash.", AidArgs, _get_agent_card, read_only=True,
             title="Get an agent's A2A card", hints=_NET_READ, result_model=AgentCardResult),
    ToolSpec("get_agent_task", "Get the current state and output of a task an A2A agent "
             "runs for you (the task id from call_agent).", TaskArgs, _get_agent_task,
             read_only=True, title="Get an agent task", hints=_NET_READ,
             result_model=AgentReplyResult),
    ToolSpec("cancel_agent_task", "Ask an A2A agent to cancel a task it runs for you.",
             TaskArgs, _cancel_agent_task, title="Cancel an agent task",
             hints=Hints(read_only=False, destructive=True, idempotent=True, open_world=True),
             result_model=AgentReplyResult),
    ToolSpec("remote_tools", "List the MCP tools another agent serves over A2AL (its AID; "
             "discover with protocols=['mcp'] finds such agents): each tool's name, "
             "description and input schema, as that agent's MCP server gives them. Call one "
             "with call_remote_tool.", AidArgs, _remote_tools, read_only=True,
             title="List an agent's MCP tools", hints=_NET_READ,
             result_model=RemoteToolsResult),
    ToolSpec("call_remote_tool", "Call one MCP tool another agent serves over A2AL, by its "
             "AID, over a verified QUIC connection; returns the result as that agent's "
             "server gave it (content, structured_content). What the remote tool does is up "
             "to that agent: it may change things. Its errors come back as AGENT_ERROR "
             "naming the remote server, with its text.", RemoteToolArgs, _call_remote_tool,
             title="Call an agent's MCP tool",
             hints=Hints(read_only=False, destructive=True, idempotent=False, open_world=True),
             result_model=RemoteToolCallResult),
    ToolSpec("send_mailbox", f"Leave an encrypted note (up to {MAILBOX_BODY_MAX} bytes of "
             "UTF-8) for an agent, online or not; it is delivered directly when possible and "
             "kept on the network for an hour otherwise. For larger data use connect or "
             "fetch.", SendMailboxArgs, _send_mailbox, title="Send a mailbox note",
             hints=_NET_ACT, result_model=SendMailboxResult),
    ToolSpec("read_mailbox", "Read notes other agents left for this agent, oldest first; "
             "reading marks them read (peek=true leaves them unread). The sender AID is "
             "verified; received_at is ISO 8601 UTC (received_at_epoch the same in Unix "
             "seconds).", ReadMailboxArgs, _read_mailbox, title="Read the mailbox",
             hints=Hints(read_only=False, destructive=False, idempotent=False, open_world=False),
             result_model=ReadMailboxResult),
    ToolSpec("unpublish", "Stop announcing this agent and its services. Copies already on "
             "the network expire on their own within their TTL.", NoArgs, _unpublish,
             title="Stop publishing",
             hints=Hints(read_only=False, destructive=True, idempotent=True, open_world=False),
             result_model=UnpublishResult),
    ToolSpec("identity_create", "Create a new agent identity (a delegated AID) served by this "
             "node and publish it. Its owner key is written to a file only this user can read "
             "(owner_key_file), never shown: tell the user to move it somewhere safe.", NoArgs,
             _identity_create, title="Create an agent identity", hints=_NET_ACT,
             result_model=IdentityCreateResult),
    ToolSpec("identity_list", "List the identities this node speaks for (its own AID and "
             "agents created with identity_create).", NoArgs, _identity_list, read_only=True,
             title="List identities", hints=_LOCAL_READ, result_model=IdentityListResult),
    ToolSpec("identity_export", "Export an identity (default: this node's) as text sealed "
             "with a passphrase, to move it elsewhere. The passphrase is asked of the user "
             "directly (never through this chat); clients that cannot ask get an error saying "
             "which command to run instead.", ExportArgs, _identity_export, read_only=True,
             title="Export an identity", hints=_LOCAL_READ,
             result_model=IdentityExportResult),
    ToolSpec("identity_import", "Import an agent identity exported with identity_export "
             "(and publish it from this node).", ImportArgs, _identity_import,
             title="Import an identity",
             hints=Hints(read_only=False, destructive=False, idempotent=True, open_world=True),
             result_model=IdentityImportResult),
    ToolSpec("tunnel_list", "List the local tunnels opened by connect.", NoArgs, _tunnel_list,
             read_only=True, title="List tunnels", hints=_LOCAL_READ,
             result_model=TunnelListResult),
    ToolSpec("tunnel_close", "Close a local tunnel opened by connect (and the connections "
             "through it).", TunnelCloseArgs, _tunnel_close, title="Close a tunnel",
             hints=Hints(read_only=False, destructive=True, idempotent=True, open_world=False),
             result_model=TunnelCloseResult),
)  # fmt: skip


def tool(name: str) -> ToolSpec:
    for spec in TOOLS:
        if spec.name == name:
            return spec
    raise KeyError(name)


UNREAD_COUNTED_MAX: Final = 1000
"""Most unread notes counted for ``unread_mail`` (a larger inbox reports this many)."""


class _UnreadCount:
    """The unread-note count of one node, re-counted (one inbox query) only when the
    mailbox's counters show it may have changed: a note arrived, notes were purged or
    deleted, or a tool read notes."""

    def __init__(self) -> None:
        self.key: tuple[int, ...] | None = None
        self.count = 0
        self.reads = 0

    async def get(self, node: Node) -> int:
        try:
            st = node.mailbox_statistics()
            key = (st.received, st.stored_notes, st.purged_unread, st.purged_read, self.reads)
            if key != self.key:
                notes = await node.read_mailbox(peek=True, limit=UNREAD_COUNTED_MAX)
                self.key, self.count = key, len(notes)
        except A2ALError:  # no mailbox (closed, or read-only storage): nothing to announce
            return 0
        return self.count


_UNREAD: weakref.WeakKeyDictionary[Node, _UnreadCount] = weakref.WeakKeyDictionary()


async def unread_mail(node: Node) -> int:
    """How many notes wait unread in ``node``'s mailbox (what every tool result carries as
    ``unread_mail``); cheap: the inbox is queried only after its counters moved."""
    return await _UNREAD.setdefault(node, _UnreadCount()).get(node)


AskSecret = Callable[[str], Awaitable[str | None]]
"""Asks the user (not the model) for a secret with the given prompt; None if they declined."""


def check_arguments(spec: ToolSpec, arguments: Any) -> BaseModel:
    """``arguments`` as ``spec``'s input model: the raw arguments a client sent, checked
    before anything else sees them (unknown names refused, never dropped).

    Raises:
        ToolFailure: ``BAD_ARGUMENTS`` (or ``USAGE`` for text that is not Unicode).
    """
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        error = BadArguments("arguments must be a JSON object", operation=spec.name)
        raise ToolFailure.from_error(error, tool=spec.name) from error
    known = list(spec.input_model.model_fields)
    unknown = [str(k) for k in arguments if k not in spec.input_model.model_fields]
    if unknown:
        raise ToolFailure.unknown_arguments(unknown, known, tool=spec.name)
    try:
        return spec.input_model.model_validate(arguments)
    except ValidationError as exc:
        failure = ToolFailure.bad_arguments(exc, tool=spec.name)
        raise failure from failure.error  # a BadArguments (or UsageError) caused by exc


async def _secret_args(spec: ToolSpec, args: BaseModel, ask_secret: AskSecret | None) -> Any:
    """identity_export's passphrase, asked of the user through ``ask_secret``."""
    if spec.name != "identity_export":
        return args
    aid_text = getattr(args, "aid", "")
    command = f"a2al-mcp identity export {aid_text}".rstrip()
    if ask_secret is None:
        raise UsageError(
            "this client cannot ask the user for a passphrase, and a passphrase never goes "
            f"through the model: run `{command}` in a terminal instead",
            operation=spec.name,
        )
    which = aid_text or "this node's identity"
    passphrase = await ask_secret(f"Passphrase to seal the export of {which} (at least 8 "
                                  "characters; needed again to import it)")  # fmt: skip
    if passphrase is None:
        raise UsageError(f"the user declined to give a passphrase; `{command}` in a terminal "
                         "exports too", operation=spec.name)  # fmt: skip
    if len(passphrase) < 8:
        raise BadArguments("the passphrase must have at least 8 characters",
                           operation=spec.name)  # fmt: skip
    return ExportRun(aid=aid_text, passphrase=passphrase)


async def call_tool(
    node: Node, name: str, arguments: dict[str, Any], *, ask_secret: AskSecret | None = None
) -> dict[str, Any]:
    """Validate ``arguments`` and run tool ``name``; the result has ``unread_mail``.

    ``ask_secret`` asks the user for a secret (identity_export's passphrase) without the
    model seeing it; without it, identity_export fails with ``USAGE`` naming the CLI command.

    Raises:
        ToolFailure: always with a code and a readable message (never another exception).
    """
    try:
        spec = tool(name)
    except KeyError:  # the lookup is no cause worth keeping
        unknown = UnknownTool(f"there is no tool {quote(name, 64)}", operation=name[:64])
        raise ToolFailure.from_error(unknown, tool=name[:64]) from unknown
    return await run_checked(node, spec, check_arguments(spec, arguments),
                             ask_secret=ask_secret)  # fmt: skip


async def run_checked(
    node: Node, spec: ToolSpec, args: BaseModel, *, ask_secret: AskSecret | None = None
) -> dict[str, Any]:
    """Run ``spec`` on ``args``, what :func:`check_arguments` returned for it (for a caller
    that checked the arguments itself); otherwise as :func:`call_tool`.

    Raises:
        ToolFailure: always with a code and a readable message (never another exception).
    """
    name = spec.name
    try:
        ran = await spec.run(node, await _secret_args(spec, args, ask_secret))
        result = cast("dict[str, Any]", json_safe(ran))
    except ToolFailure:
        raise
    except A2ALError as exc:
        raise ToolFailure.from_error(exc, tool=name) from exc
    except Exception as exc:
        logger.exception("tool.internal_error tool=%s", name)
        error = InternalError("an unexpected error happened; the server log has details",
                              operation=name)  # fmt: skip
        error.__cause__ = exc
        raise ToolFailure.from_error(error, tool=name) from error
    counter = _UNREAD.setdefault(node, _UnreadCount())
    if name == "read_mailbox" and not getattr(args, "peek", True) and result.get("count"):
        counter.reads += 1
    result["unread_mail"] = await counter.get(node)
    try:  # the result keeps its contract (the MCP outputSchema), or the call fails loudly
        spec.result_model.model_validate(result)
    except ValidationError as exc:
        logger.exception("tool.result_mismatch tool=%s", name)
        error = InternalError("the result did not match its schema; the server log has "
                              "details", operation=name)  # fmt: skip
        raise ToolFailure.from_error(error, tool=name) from exc
    return result
