"""The tool catalogue: one framework-neutral description of every node verb (L5).

Each :class:`ToolSpec` has a name, a description written for a language model, a pydantic
input model and an async ``run(node, args) -> dict``. The MCP server renders these as MCP tools;
the LangChain and CrewAI adapters render the same specs, so names, descriptions and schemas
agree everywhere. Failures are :class:`ToolFailure` with a stable ``code`` and a sentence a
person understands; nothing else escapes ``run`` (unexpected errors become ``INTERNAL``).

Results are JSON objects; AIDs always in their checksummed text form. What peers wrote may hold
values JSON has no form for: :func:`call_tool` renders every result with
:func:`~a2al_mcp.toolresults.json_safe`, and failures are
:class:`~a2al_mcp.toolresults.ToolFailure` (both re-exported here). Arguments are checked
before any tool runs (:class:`~a2al_mcp.toolargs.ToolArgs`: no text with a lone surrogate).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from pydantic import BaseModel, Field, ValidationError, model_validator

from . import agentcall
from .errors import A2ALError, BadAid, DecodeError, InternalError, NotFound, UnknownTool
from .identity.aid import Aid
from .node.node import Node
from .protocol.payloads import EndpointPayload
from .toolargs import ToolArgs
from .toolresults import RESULT_DEPTH_MAX, ToolFailure, json_safe

__all__ = [
    "RESULT_DEPTH_MAX",
    "TOOLS",
    "ToolFailure",
    "ToolSpec",
    "call_tool",
    "json_safe",
    "tool",
]

logger = logging.getLogger(__name__)

_AID_FORM = "42 hex characters starting with a0 (or an 0x… / bc1… form)"
_AID_HELP = "an agent's AID: " + _AID_FORM


@dataclasses.dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    input_model: type[BaseModel]
    run: Callable[[Node, Any], Awaitable[dict[str, Any]]]
    read_only: bool = False


def _aid(text: str) -> Aid:
    try:
        return Aid.from_str(text)
    except DecodeError as exc:
        raise BadAid(
            f"{text!r} is {exc}", hint="an AID is 42 hex characters starting with a0"
        ) from exc


def _age(node: Node, timestamp: int) -> int:
    return max(0, int(node.clock.wall()) - timestamp)


# -- inputs -------------------------------------------------------------------------------


class PublishArgs(ToolArgs):
    services: list[str] = Field(
        default_factory=list,
        description=(
            "Capabilities to register under, e.g. ['lang.translate'] (dot-separated topics)."
        ),
    )
    name: str = Field("", description="A short display name for this agent.")
    brief: str = Field("", max_length=140, description="One sentence on what it does.")
    tags: list[str] = Field(default_factory=list, description="Free-form tags, e.g. ['fr','en'].")
    protocols: list[str] = Field(
        default_factory=list, description=("Protocols spoken, e.g. ['a2a','mcp','http'].")
    )
    meta: dict[str, Any] = Field(default_factory=dict, description="Small extra key/values.")
    ttl_s: int = Field(3600, ge=60, le=86400, description="Record lifetime; renewed automatically.")


class DiscoverArgs(ToolArgs):
    service: str = Field(description="The capability topic to search, e.g. 'lang.translate'.")
    tags: list[str] = Field(default_factory=list, description="Only agents with all these tags.")
    protocols: list[str] = Field(
        default_factory=list, description="Only agents speaking any of these."
    )
    limit: int = Field(20, ge=1, le=200, description="Most results to return.")


class AidArgs(ToolArgs):
    aid: str = Field(description=_AID_HELP)


class FetchArgs(ToolArgs):
    aid: str = Field(description=_AID_HELP)
    path: str = Field("/", description="The HTTP path, e.g. '/v1/translate?q=hi'.")
    method: str = Field("GET", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    body: str = Field("", description="Request body as text.")


class SendMailboxArgs(ToolArgs):
    to: str = Field(description="The recipient's AID: " + _AID_FORM)
    text: str = Field(min_length=1, description="The note, at most 389 bytes of UTF-8.")


class ReadMailboxArgs(ToolArgs):
    peek: bool = Field(False, description="Leave the notes unread.")
    limit: int = Field(20, ge=1, le=200, description="Most notes to return.")


class NoArgs(ToolArgs):
    pass


class ExportArgs(ToolArgs):
    passphrase: str = Field(min_length=8, description="Protects the export; at least 8 chars.")
    aid: str = Field("", description="Which identity (default: the node's own).")


class ImportArgs(ToolArgs):
    export: str = Field(description="The text identity_export returned.")
    passphrase: str = Field(description="The passphrase it was exported with.")


class TunnelCloseArgs(ToolArgs):
    tunnel: str = Field(
        description="The tunnel's local address as returned by connect, e.g. '127.0.0.1:40123'."
    )


class CallAgentArgs(ToolArgs):
    to: str = Field("", description="The agent's AID (" + _AID_FORM + "); give this or skill.")
    skill: str = Field(
        "",
        description="Or a capability topic (e.g. 'lang.translate'): the message goes to one "
        "live agent that offers it over A2A.",
    )
    text: str = Field(min_length=1, description="The message for the agent.")
    task_id: str = Field("", description="Continue this task (from an earlier reply).")
    context_id: str = Field("", description="Continue this conversation context.")
    timeout_s: float = Field(60.0, ge=1, le=600, description="How long to wait for the reply.")
    wait: bool = Field(
        True,
        description="Wait for the agent to finish; false returns the task at once (then poll "
        "it with get_agent_task).",
    )

    @model_validator(mode="after")
    def _one_target(self) -> CallAgentArgs:
        if bool(self.to) == bool(self.skill):
            raise ValueError("give either to (an AID) or skill (a capability), not both")
        if self.skill and (self.task_id or self.context_id):
            raise ValueError("task_id and context_id continue a conversation with one agent: "
                             "give its AID in to")  # fmt: skip
        return self


class TaskArgs(ToolArgs):
    aid: str = Field(description="The agent's AID: " + _AID_FORM)
    task_id: str = Field(min_length=1, description="The task id from call_agent's reply.")


# -- implementations ----------------------------------------------------------------------


async def _publish(node: Node, a: PublishArgs) -> dict[str, Any]:
    rec = await node.publish(ttl_s=a.ttl_s)
    for service in a.services:
        await node.register_service(service, name=a.name, brief=a.brief, protocols=a.protocols,
                                    tags=a.tags, meta=a.meta, ttl_s=a.ttl_s)  # fmt: skip
    endpoints = list(EndpointPayload.from_bytes(rec.payload).endpoints)
    return {"aid": str(node.aid), "endpoints": endpoints, "services": a.services,
            "ttl_s": a.ttl_s}  # fmt: skip


async def _discover(node: Node, a: DiscoverArgs) -> dict[str, Any]:
    found = await node.discover(a.service, protocols=a.protocols, tags=a.tags)
    agents = [{"aid": str(e.aid), "name": e.name, "brief": e.brief, "protocols": list(e.protocols),
               "tags": list(e.tags), "meta": e.meta, "age_s": _age(node, e.timestamp)}
              for e in found[: a.limit]]  # fmt: skip
    return {"service": a.service, "count": len(agents), "agents": agents}


async def _resolve(node: Node, a: AidArgs) -> dict[str, Any]:
    r = await node.resolve(_aid(a.aid))
    return {"aid": str(r.aid), "endpoints": list(r.endpoints), "nat_type": r.nat_type,
            "seq": r.seq, "age_s": _age(node, r.timestamp), "ttl_s": r.ttl}  # fmt: skip


async def _connect(node: Node, a: AidArgs) -> dict[str, Any]:
    aid = _aid(a.aid)
    tunnel = await node.tunnel(aid)
    host, port = tunnel.addr
    return {"aid": str(aid), "connected": True, "tunnel": f"{host}:{port}",
            "hint": f"Connect to {host}:{port} (TCP) to talk to the agent's service; "
                    "every TCP connection is a separate verified stream."}  # fmt: skip


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
    if res.refused:
        out["note"] = (
            "the recipient refused the note (its mailbox or disk is full, or it did not "
            "accept it); a copy kept on the network may still reach it"
        )
    return out


async def _read_mailbox(node: Node, a: ReadMailboxArgs) -> dict[str, Any]:
    notes = await node.read_mailbox(peek=a.peek, limit=a.limit)
    return {"count": len(notes), "messages": [
        {"id": n.msg_id.hex(), "from": str(n.sender),
         "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(n.received_at)),
         "text": n.text} for n in notes]}  # fmt: skip


async def _status(node: Node, a: NoArgs) -> dict[str, Any]:
    st = node.status()
    mb = st.mailbox
    return {
        "aid": str(st.aid), "listen": f"{st.listen[0]}:{st.listen[1]}", "peers": st.peers,
        "ready": st.ready, "published": [str(x) for x in st.published],
        "connections": st.connections, "serving": [str(x) for x in st.serving],
        "tunnels": [f"{t.addr[0]}:{t.addr[1]}" for t in node.tunnels()],
        "mailbox": dataclasses.asdict(mb) if mb is not None else {},
        "observed_addrs": [f"{h}:{p}" for (h, p), _n in st.observed_addrs],
        "contained_errors": dataclasses.asdict(st.contained_errors),
        "dht": dataclasses.asdict(st.dht),
        "quic": dataclasses.asdict(st.quic) if st.quic is not None else {},
    }  # fmt: skip


async def _unpublish(node: Node, a: NoArgs) -> dict[str, Any]:
    topics = node.unpublish()
    return {"aid": str(node.aid), "stopped": True, "services": topics,
            "note": "copies on the network expire within their TTL (1-2 hours)"}  # fmt: skip


async def _identity_create(node: Node, a: NoArgs) -> dict[str, Any]:
    created = node.create_agent()
    await node.publish(created.identity.aid)
    return {
        "aid": str(created.identity.aid),
        "master_private_key_hex": created.master.seed.hex(),
        "warning": "This owner key is shown once and not stored. Keep it offline: it proves "
        "you own the agent and can authorise a new operational key.",
    }


async def _identity_list(node: Node, a: NoArgs) -> dict[str, Any]:
    published = set(node.status().published)
    return {"identities": [
        {"aid": str(i.aid), "kind": "delegated" if i.is_delegated else "node",
         "published": i.aid in published} for i in node.identities()]}  # fmt: skip


async def _identity_export(node: Node, a: ExportArgs) -> dict[str, Any]:
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


async def _call_agent(node: Node, a: CallAgentArgs) -> dict[str, Any]:
    if a.to:
        reply = await agentcall.send_message(node, _aid(a.to), a.text, task_id=a.task_id,
                                             context_id=a.context_id, timeout_s=a.timeout_s,
                                             return_immediately=not a.wait)  # fmt: skip
        return reply.to_dict()
    reply, failed = await agentcall.call_skill(node, a.skill, a.text, timeout_s=a.timeout_s,
                                               return_immediately=not a.wait)  # fmt: skip
    out = reply.to_dict()
    out["skill"] = a.skill
    out["skipped"] = [{"aid": str(f.aid), "error": f.error} for f in failed]
    return out


async def _get_agent_task(node: Node, a: TaskArgs) -> dict[str, Any]:
    return (await agentcall.get_task(node, _aid(a.aid), a.task_id)).to_dict()


async def _cancel_agent_task(node: Node, a: TaskArgs) -> dict[str, Any]:
    return (await agentcall.cancel_task(node, _aid(a.aid), a.task_id)).to_dict()


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("status", "Show this node: its AID, peers, whether it is ready, what it publishes, "
             "open connections and tunnels, mailbox counters. Call it first to check the "
             "network is reachable.", NoArgs, _status, read_only=True),
    ToolSpec("publish", "Announce this agent on the A2AL network so others can resolve and "
             "connect to it, optionally under capability topics (services) that discover "
             "finds. Renewed automatically while the server runs.", PublishArgs, _publish),
    ToolSpec("discover", "Find agents offering a capability (a topic such as "
             "'lang.translate'), optionally filtered by tags and protocols. Returns their AIDs; "
             "use resolve, fetch or send_mailbox next.", DiscoverArgs, _discover, read_only=True),
    ToolSpec("resolve", "Look up where an agent (AID) can be reached now: its live endpoints "
             "from its signed record. NOT_FOUND means it has not been online for about an "
             "hour: leave it a note with send_mailbox.", AidArgs, _resolve, read_only=True),
    ToolSpec("connect", "Open a verified, encrypted QUIC connection to an agent and a local "
             "TCP tunnel (127.0.0.1:port) to its service. If the agent is unreachable, fall "
             "back to send_mailbox.", AidArgs, _connect),
    ToolSpec("fetch", "Send one HTTP request to an agent's service over a verified QUIC "
             "connection and return the response. If it is unreachable, use send_mailbox.",
             FetchArgs, _fetch),
    ToolSpec("call_agent", "Send a message to an A2A agent, by AID (to) or by capability "
             "(skill: one live agent offering it is picked), over a verified QUIC connection, "
             "and return its reply: a message, or a task with its state (poll it with "
             "get_agent_task). If the agent is offline, use send_mailbox.", CallAgentArgs,
             _call_agent),
    ToolSpec("get_agent_task", "Get the current state and output of a task an A2A agent "
             "runs for you (the task id from call_agent).", TaskArgs, _get_agent_task,
             read_only=True),
    ToolSpec("cancel_agent_task", "Ask an A2A agent to cancel a task it runs for you.",
             TaskArgs, _cancel_agent_task),
    ToolSpec("send_mailbox", "Leave an encrypted note (up to 389 bytes) for an agent, online "
             "or not; it is delivered directly when possible and kept on the network for an "
             "hour otherwise. For larger data use connect or fetch.", SendMailboxArgs,
             _send_mailbox),
    ToolSpec("read_mailbox", "Read notes other agents left for this agent, oldest first; "
             "reading marks them read (peek=true leaves them unread). The sender AID is "
             "verified.", ReadMailboxArgs, _read_mailbox),
    ToolSpec("unpublish", "Stop announcing this agent and its services. Copies already on "
             "the network expire on their own within their TTL.", NoArgs, _unpublish),
    ToolSpec("identity_create", "Create a new agent identity (a delegated AID) served by this "
             "node and publish it. The owner key in the result is shown once only: tell the "
             "user to store it safely.", NoArgs, _identity_create),
    ToolSpec("identity_list", "List the identities this node speaks for (its own AID and "
             "agents created with identity_create).", NoArgs, _identity_list, read_only=True),
    ToolSpec("identity_export", "Export an identity (default: this node's) as text sealed "
             "with a passphrase, to move it elsewhere.", ExportArgs, _identity_export),
    ToolSpec("identity_import", "Import an agent identity exported with identity_export "
             "(and publish it from this node).", ImportArgs, _identity_import),
    ToolSpec("tunnel_list", "List the local tunnels opened by connect.", NoArgs, _tunnel_list,
             read_only=True),
    ToolSpec("tunnel_close", "Close a local tunnel opened by connect.", TunnelCloseArgs,
             _tunnel_close),
)  # fmt: skip


def tool(name: str) -> ToolSpec:
    for spec in TOOLS:
        if spec.name == name:
            return spec
    raise KeyError(name)


async def call_tool(node: Node, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Validate ``arguments`` and run tool ``name``.

    Raises:
        ToolFailure: always with a code and a readable message (never another exception).
    """
    try:
        spec = tool(name)
    except KeyError:  # the lookup is no cause worth keeping
        unknown = UnknownTool(f"there is no tool {name!r}", operation=name)
        raise ToolFailure.from_error(unknown, tool=name) from unknown
    try:
        args = spec.input_model.model_validate(arguments)
    except ValidationError as exc:
        failure = ToolFailure.bad_arguments(exc, tool=name)
        raise failure from failure.error  # a BadArguments (or UsageError) caused by exc
    try:
        return cast("dict[str, Any]", json_safe(await spec.run(node, args)))
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
