"""Calling A2A agents by AID or by skill: the A2A 1.0 JSON-RPC binding on verified streams (L5).

The requests are the standard A2A HTTP+JSON-RPC binding (``SendMessage``, ``GetTask``,
``CancelTask`` with the ``A2A-Version: 1.0`` header) sent as HTTP/1.1 on an A2AL stream, so
they reach an agent served with :func:`a2al_mcp.adapters.a2a.serve_a2a` and any A2A HTTP
agent behind an a2ald ``service_tcp``. This module needs no A2A SDK: the MCP tools and the
framework adapters use it; Python programs that want the SDK's own client use
:func:`a2al_mcp.adapters.a2a.a2a_client`.

Skill anycast (:func:`call_skill`): discover the agents registered under the skill with protocol
``a2a``, put those we already hold a live connection to first and then the freshest, and try
them in turn until one answers.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import anyio
import anyio.abc

from ._clock import Clock, SystemClock
from .errors import (
    A2ALError,
    AgentCallError,
    HandshakeFailed,
    NotFound,
    RequestTimeout,
    Unreachable,
    UsageError,
    VerificationError,
)
from .identity.aid import Aid
from .node.node import Node, ServiceEntry
from .node.outbox import Delivery

__all__ = [
    "A2A_VERSION",
    "CARD_PATH",
    "AgentCallError",
    "AgentReply",
    "Attempt",
    "CheckedCard",
    "FanOut",
    "OnUpdate",
    "Update",
    "call_agents",
    "call_skill",
    "cancel_task",
    "candidates",
    "delivery_reply",
    "get_card",
    "get_checked_card",
    "get_task",
    "queue_message",
    "send_message",
    "send_message_url",
]

A2A_VERSION: Final = "1.0"
CARD_PATH: Final = "/.well-known/agent-card.json"
_OFFLINE = "it may be offline: leave it a note with send_mailbox, which waits for it"


@dataclasses.dataclass(frozen=True, slots=True)
class AgentReply:
    """What an agent answered: a message, or a task (with its state)."""

    agent: Aid | str
    """The AID that answered (its URL, as text, for an agent reached over plain HTTP)."""
    kind: str
    """``"message"`` or ``"task"``."""
    text: str
    """The text parts of the reply (for a task: its status message and artifacts)."""
    task_id: str = ""
    context_id: str = ""
    state: str = ""
    """For a task: ``submitted``, ``working``, ``completed``, ``failed``, ``canceled``,
    ``input-required``, ``rejected`` or ``auth-required``."""
    result: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The JSON-RPC ``result`` as the agent sent it."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"agent": str(self.agent), "kind": self.kind, "text": self.text}
        if self.kind == "task":
            out["task"] = {"id": self.task_id, "context_id": self.context_id,
                           "state": self.state}  # fmt: skip
        elif self.context_id or self.task_id:
            out["context_id"] = self.context_id
            if self.task_id:
                out["task_id"] = self.task_id
        return out


def _parts_text(parts: Any) -> list[str]:
    out: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            out.append(part["text"])
        elif "data" in part:
            out.append(json.dumps(part["data"], ensure_ascii=False))
        elif isinstance(part.get("url"), str):
            out.append(part["url"])
    return out


def _state(raw: Any) -> str:
    text = str(raw or "").removeprefix("TASK_STATE_").lower().replace("_", "-")
    return "" if text == "unspecified" else text


def _reply(agent: Aid | str, kind: str, body: Mapping[str, Any]) -> AgentReply:
    if kind == "message":
        return AgentReply(agent, "message", "\n".join(_parts_text(body.get("parts"))),
                          task_id=str(body.get("taskId", "")),
                          context_id=str(body.get("contextId", "")), result=body)  # fmt: skip
    status = body.get("status") if isinstance(body.get("status"), dict) else {}
    assert isinstance(status, dict)
    texts = []
    if isinstance(status.get("message"), dict):
        texts += _parts_text(status["message"].get("parts"))
    for artifact in body.get("artifacts") or []:
        if isinstance(artifact, dict):
            texts += _parts_text(artifact.get("parts"))
    return AgentReply(agent, "task", "\n".join(texts), task_id=str(body.get("id", "")),
                      context_id=str(body.get("contextId", "")),
                      state=_state(status.get("state")), result=body)  # fmt: skip


async def _reach(node: Node, aid: Aid, local: Aid | None, timeout_s: float) -> None:
    """Connect (pooled) first, so "offline" and "slow to answer" are told apart."""
    try:
        await node.connect(aid, local=local, timeout_s=timeout_s)
    except NotFound as exc:
        raise NotFound(f"{aid} has no live endpoint record (not online for about an hour, "
                       "or never published)", aid=aid, operation="connect",
                       hint=_OFFLINE) from exc  # fmt: skip
    except (Unreachable, HandshakeFailed, RequestTimeout) as exc:
        raise Unreachable(f"{aid} did not answer a connection ({exc})", aid=aid,
                          operation="connect", hint=_OFFLINE) from exc  # fmt: skip


async def _rpc(
    node: Node, aid: Aid, method: str, params: Mapping[str, Any], *, local: Aid | None,
    timeout_s: float, connect_timeout_s: float = 15.0,
) -> Any:  # fmt: skip
    await _reach(node, aid, local, min(timeout_s, connect_timeout_s))
    request = {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": method, "params": params}
    headers = [("content-type", "application/json"), ("accept", "application/json"),
               ("a2a-version", A2A_VERSION)]  # fmt: skip
    try:
        resp = await node.fetch(aid, "POST", "/", headers=headers,
                                body=json.dumps(request).encode(), local=local,
                                timeout_s=timeout_s)  # fmt: skip
    except RequestTimeout as exc:
        hint = "a task may still be running there (see get_agent_task)"
        raise RequestTimeout(f"{aid} took over {timeout_s:g} s to answer {method}", aid=aid,
                             operation=method, hint=hint) from exc  # fmt: skip
    try:
        answer = json.loads(resp.body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
        raise AgentCallError(f"{aid} is not an A2A agent: {method} got HTTP {resp.status} "
                             f"{resp.text[:160]!r}", http_status=resp.status, aid=aid,
                             operation=method)  # fmt: skip
    error = answer.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        raise AgentCallError(f"{aid} answered {method} with error {code}: "
                             f"{error.get('message', '')}",
                             code if isinstance(code, int) else None,
                             http_status=resp.status, aid=aid, operation=method)  # fmt: skip
    if "result" not in answer:
        raise AgentCallError(f"{aid} answered {method} without a result",
                             http_status=resp.status, aid=aid, operation=method)  # fmt: skip
    return answer["result"]


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    """One update a streaming agent sent while it worked (see :func:`send_message`)."""

    kind: str
    """``"status"`` (the task's state changed) or ``"artifact"`` (output arrived)."""
    text: str
    """The update's text parts (the status message, or the artifact chunk)."""
    state: str = ""
    """The task's state after a status update."""
    task_id: str = ""


OnUpdate = Callable[[Update], Awaitable[None]]
_NO_STREAMING: Final = frozenset({-32004, -32601})
"""JSON-RPC errors saying the agent does not stream (UnsupportedOperation, no such method)."""
DELIVERY_HEADER: Final = "a2al-delivery-id"
"""Sent with every try of a queued message (its delivery id): a ``serve_a2a`` agent answers a
repeat of it, from the same caller, with the first answer (at-least-once delivery, handled
once). Requests without it are never de-duplicated (a client may send one message twice and
want two tasks, as the A2A conformance suite does)."""
_JSON_HEADERS: Final = (("content-type", "application/json"), ("accept", "application/json"),
                        ("a2a-version", A2A_VERSION))  # fmt: skip


def _message_params(
    text: str, *, task_id: str = "", context_id: str = "", message_id: str = "",
    return_immediately: bool = False,
) -> dict[str, Any]:  # fmt: skip
    message: dict[str, Any] = {"messageId": message_id or uuid.uuid4().hex, "role": "ROLE_USER",
                               "parts": [{"text": text}]}  # fmt: skip
    if task_id:
        message["taskId"] = task_id
    if context_id:
        message["contextId"] = context_id
    params: dict[str, Any] = {"message": message}
    if return_immediately:
        params["configuration"] = {"returnImmediately": True}
    return params


def _sse_data(buffer: bytearray) -> list[bytes]:
    """The ``data`` of each complete server-sent event in ``buffer`` (consumed from it)."""
    out: list[bytes] = []
    text = bytes(buffer).replace(b"\r\n", b"\n")
    *events, rest = text.split(b"\n\n")
    buffer[:] = rest
    for event in events:
        data = [line[5:].removeprefix(b" ") for line in event.split(b"\n")
                if line.startswith(b"data:")]  # fmt: skip
        if data:
            out.append(b"\n".join(data))
    return out


class _Stream:
    """What a ``SendStreamingMessage`` answer adds up to: the task (updates applied) or the
    message."""

    def __init__(self, aid: Aid) -> None:
        self.aid = aid
        self.task: dict[str, Any] | None = None
        self.message: dict[str, Any] | None = None

    def apply(self, result: Any) -> Update | None:
        if not isinstance(result, dict):
            return None
        if isinstance(result.get("message"), dict):
            self.message = result["message"]
        elif isinstance(result.get("task"), dict):
            self.task = dict(result["task"])
        elif isinstance(result.get("statusUpdate"), dict):
            su = result["statusUpdate"]
            task = self._task(su)
            status = su.get("status") if isinstance(su.get("status"), dict) else {}
            assert isinstance(status, dict)
            task["status"] = status
            msg = status.get("message")
            text = "\n".join(_parts_text(msg.get("parts"))) if isinstance(msg, dict) else ""
            return Update("status", text, _state(status.get("state")), str(task.get("id", "")))
        elif isinstance(result.get("artifactUpdate"), dict):
            au = result["artifactUpdate"]
            task = self._task(au)
            art = au.get("artifact") if isinstance(au.get("artifact"), dict) else {}
            assert isinstance(art, dict)
            arts: list[Any] = list(task.get("artifacts") or [])
            same = [a for a in arts if isinstance(a, dict) and a.get("artifactId")
                    and a.get("artifactId") == art.get("artifactId")]  # fmt: skip
            if au.get("append") and same:
                same[0]["parts"] = list(same[0].get("parts") or []) + list(art.get("parts") or [])
            else:
                arts.append(dict(art))
            task["artifacts"] = arts
            return Update("artifact", "\n".join(_parts_text(art.get("parts"))), "",
                          str(task.get("id", "")))  # fmt: skip
        return None

    def _task(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.task is None:
            self.task = {"id": event.get("taskId", ""), "contextId": event.get("contextId", "")}
        return self.task

    def reply(self) -> AgentReply:
        if self.message is not None:
            return _reply(self.aid, "message", self.message)
        if self.task is not None:
            return _reply(self.aid, "task", self.task)
        raise AgentCallError(f"{self.aid} streamed neither a task nor a message",
                             aid=self.aid, operation="SendStreamingMessage")  # fmt: skip


def _rpc_error(aid: Aid, method: str, answer: Any, status: int) -> AgentCallError | None:
    if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
        return AgentCallError(f"{aid} is not an A2A agent: {method} got HTTP {status}",
                              http_status=status, aid=aid, operation=method)  # fmt: skip
    error = answer.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        rpc_code = code if isinstance(code, int) else None
        return AgentCallError(f"{aid} answered {method} with error {code}: "
                              f"{error.get('message', '')}", rpc_code, http_status=status,
                              aid=aid, operation=method)  # fmt: skip
    return None


async def _send_streaming(
    node: Node, aid: Aid, params: Mapping[str, Any], *, local: Aid | None, timeout_s: float,
    connect_timeout_s: float, on_update: OnUpdate,
) -> AgentReply | None:  # fmt: skip
    """``SendStreamingMessage``, each update passed on; None when the agent does not stream."""
    method = "SendStreamingMessage"
    await _reach(node, aid, local, min(timeout_s, connect_timeout_s))
    request = {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": method, "params": params}
    headers = [("content-type", "application/json"),
               ("accept", "text/event-stream, application/json"),
               ("a2a-version", A2A_VERSION)]  # fmt: skip
    stream = _Stream(aid)
    try:
        with anyio.fail_after(timeout_s):
            resp = await node.request(aid, "POST", "/", headers=headers,
                                      body=json.dumps(request).encode(), local=local,
                                      timeout_s=timeout_s)  # fmt: skip
            try:
                kind = {k.lower(): v for k, v in resp.headers}.get("content-type", "")
                if not kind.startswith("text/event-stream"):
                    body = b"".join([chunk async for chunk in resp])
                    try:
                        answer = json.loads(body)
                    except ValueError:
                        answer = None
                    error = _rpc_error(aid, method, answer, resp.status)
                    if error is not None and error.rpc_code in _NO_STREAMING:
                        return None
                    if error is not None:
                        raise error
                    stream.apply(answer["result"])
                    return stream.reply()
                buffer = bytearray()
                async for chunk in resp:
                    buffer += chunk
                    for data in _sse_data(buffer):
                        try:
                            event = json.loads(data)
                        except ValueError:
                            continue
                        error = _rpc_error(aid, method, event, resp.status)
                        if error is not None:
                            raise error
                        update = stream.apply(event.get("result"))
                        if update is not None:
                            await on_update(update)
            finally:
                await resp.aclose()
    except RequestTimeout as exc:
        raise RequestTimeout(f"{aid} took over {timeout_s:g} s to answer {method}", aid=aid,
                             operation=method, hint="a task may still be running there (see "
                             "get_agent_task)") from exc  # fmt: skip
    except TimeoutError as exc:
        raise RequestTimeout(f"{aid} was still streaming after {timeout_s:g} s", aid=aid,
                             operation=method, hint="a task may still be running there (see "
                             "get_agent_task)") from exc  # fmt: skip
    return stream.reply()


async def send_message(
    node: Node,
    aid: Aid,
    text: str,
    *,
    task_id: str = "",
    context_id: str = "",
    local: Aid | None = None,
    timeout_s: float = 60.0,
    return_immediately: bool = False,
    connect_timeout_s: float = 15.0,
    message_id: str = "",
    on_update: OnUpdate | None = None,
) -> AgentReply:
    """Send a text message (``SendMessage``) and return the agent's reply or task. With
    ``return_immediately`` the agent answers with the task as soon as it exists (poll it
    with :func:`get_task`); otherwise it answers when the task is done or needs input.
    ``message_id`` is the A2A ``messageId`` (default: a new one).

    With ``on_update`` the message goes as ``SendStreamingMessage``: each status and
    artifact update the agent streams is passed to ``on_update`` (an :class:`Update`) as it
    comes, and the reply is the task as it ended (or the message). An agent that does not
    stream is sent ``SendMessage`` instead (no updates then).

    Raises:
        NotFound: the agent has no live endpoint record (suggests send_mailbox).
        Unreachable: it did not answer a connection (suggests send_mailbox).
        RequestTimeout: it connected but did not answer within ``timeout_s``.
        AgentCallError: it answered with an error or not as an A2A agent.
    """
    params = _message_params(text, task_id=task_id, context_id=context_id,
                             message_id=message_id,
                             return_immediately=return_immediately)  # fmt: skip
    if on_update is not None:
        streamed = await _send_streaming(node, aid, params, local=local, timeout_s=timeout_s,
                                         connect_timeout_s=connect_timeout_s,
                                         on_update=on_update)  # fmt: skip
        if streamed is not None:
            return streamed
    result = await _rpc(node, aid, "SendMessage", params, local=local, timeout_s=timeout_s,
                        connect_timeout_s=connect_timeout_s)  # fmt: skip
    for kind in ("task", "message"):
        if isinstance(result, dict) and isinstance(result.get(kind), dict):
            return _reply(aid, kind, result[kind])
    raise AgentCallError(f"{aid} answered SendMessage with neither a task nor a message",
                         aid=aid, operation="SendMessage")  # fmt: skip


_CARDS: collections.OrderedDict[str, tuple[float, Any]] = collections.OrderedDict()
"""Cards of agents called by URL whose card allowed caching: URL -> (fresh until, card)."""
CARDS_KEPT: Final = 64
CARD_KEEP_MAX_S: Final = 3600.0


def _max_age(cache_control: str) -> float:
    """The ``max-age`` a card's ``Cache-Control`` allows (0: none, or not to be kept)."""
    words = [w.strip().lower() for w in cache_control.split(",")]
    if any(w in ("no-store", "no-cache", "private") for w in words):
        return 0.0
    for word in words:
        name, _, value = word.partition("=")
        if name.strip() == "max-age":
            try:
                return min(max(float(value.strip().strip('"')), 0.0), CARD_KEEP_MAX_S)
            except ValueError:
                return 0.0
    return 0.0


async def _url_card(http: Any, url: str, clock: Clock) -> Any:
    """The agent card at ``url`` (``<url>/.well-known/agent-card.json``), as the SDK's card
    resolver reads it, kept as long as its ``Cache-Control: max-age`` says (A2A §8.6.1;
    an agent that sends none is asked every time).

    Raises:
        a2a.client.errors.AgentCardResolutionError: no card there (an HTTP error, not JSON,
            not a card).
    """
    from a2a.client.card_resolver import parse_agent_card
    from a2a.client.errors import AgentCardResolutionError

    now = clock.monotonic()
    kept = _CARDS.get(url)
    if kept is not None and kept[0] > now:
        return kept[1]
    _CARDS.pop(url, None)
    resp = await http.get(url.rstrip("/") + CARD_PATH)
    if resp.status_code >= 400:
        raise AgentCardResolutionError(f"HTTP {resp.status_code} for the card at {url}")
    try:
        card = parse_agent_card(resp.json())
    except Exception as exc:  # the SDK's own errors for a bad card vary (JSON, protobuf)
        raise AgentCardResolutionError(f"no valid agent card at {url}: {exc}") from exc
    age = _max_age(resp.headers.get("cache-control", ""))
    if age > 0:
        _CARDS[url] = (now + age, card)
        while len(_CARDS) > CARDS_KEPT:
            _CARDS.popitem(last=False)
    return card


@functools.cache
def _tls_context() -> Any:
    """The TLS context of calls by URL (verified, as httpx's default, SSL_CERT_FILE and all),
    made once: making one reads the CA certificates, about 30 ms, which was most of a call."""
    import httpx

    return httpx.create_ssl_context()


async def send_message_url(
    url: str,
    text: str,
    *,
    task_id: str = "",
    context_id: str = "",
    timeout_s: float = 60.0,
    return_immediately: bool = False,
    clock: Clock | None = None,
) -> AgentReply:
    """:func:`send_message` to an A2A agent over plain HTTP(S) at ``url`` (its base URL: the
    card is read from ``<url>/.well-known/agent-card.json`` and kept for as long as its
    ``Cache-Control: max-age`` allows, at most an hour, by ``clock``), with the official
    a2a-sdk client over httpx, whichever binding its card names. Same reply, with ``agent``
    the URL.

    Raises:
        UsageError: the a2a-sdk (the ``a2a`` extra) is not installed.
        Unreachable: nothing answers at ``url``.
        RequestTimeout: it did not answer within ``timeout_s``.
        AgentCallError: it serves no agent card, answered with an error or not as A2A.
    """
    try:
        import httpx
        from a2a.client import ClientConfig, ClientFactory
        from a2a.client.errors import A2AClientTimeoutError, AgentCardResolutionError
        from a2a.types import Message, Part, Role, SendMessageConfiguration, SendMessageRequest
        from a2a.utils.errors import A2AError
        from google.protobuf.json_format import MessageToDict
    except ImportError as exc:
        raise UsageError("calling an A2A agent by URL needs the a2a-sdk: "
                         f'pip install "a2al-mcp[a2a]" ({exc})') from exc  # fmt: skip
    message = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=text)],
                      task_id=task_id, context_id=context_id)  # fmt: skip
    request = SendMessageRequest(message=message, configuration=SendMessageConfiguration(
        return_immediately=return_immediately))  # fmt: skip
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=timeout_s, verify=_tls_context(),
                                 headers={"A2A-Version": A2A_VERSION}) as http:  # fmt: skip
        try:
            factory = ClientFactory(ClientConfig(httpx_client=http, streaming=False))
            client = factory.create(await _url_card(http, url, clock or SystemClock()))
            try:
                events.extend([MessageToDict(e) async for e in client.send_message(request)])
            finally:
                await client.close()
        except (A2AClientTimeoutError, httpx.TimeoutException) as exc:
            raise RequestTimeout(f"{url} took over {timeout_s:g} s to answer SendMessage",
                                 operation="SendMessage") from exc  # fmt: skip
        except httpx.TransportError as exc:
            raise Unreachable(f"nothing answers at {url} ({exc!r})",
                              operation="SendMessage") from exc  # fmt: skip
        except A2AError as exc:
            if isinstance(exc.__cause__, httpx.TransportError):
                raise Unreachable(f"nothing answers at {url} ({exc.__cause__!r})",
                                  operation="SendMessage") from exc  # fmt: skip
            if isinstance(exc, AgentCardResolutionError):
                raise AgentCallError(f"{url} serves no A2A agent card ({exc})",
                                     operation="get_card") from exc  # fmt: skip
            raise AgentCallError(f"{url} answered SendMessage with an error: {exc}",
                                 operation="SendMessage") from exc  # fmt: skip
    for event in reversed(events):  # the last task or message is the answer
        for kind in ("task", "message"):
            if isinstance(event.get(kind), dict):
                return _reply(url, kind, event[kind])
    raise AgentCallError(f"{url} answered SendMessage with neither a task nor a message",
                         operation="SendMessage")  # fmt: skip


async def get_task(
    node: Node, aid: Aid, task_id: str, *, local: Aid | None = None, timeout_s: float = 30.0
) -> AgentReply:
    """The current state of a task the agent runs (``GetTask``)."""
    result = await _rpc(node, aid, "GetTask", {"id": task_id}, local=local, timeout_s=timeout_s)
    if not isinstance(result, dict):
        raise AgentCallError(f"{aid} answered GetTask without a task", aid=aid,
                             operation="GetTask")  # fmt: skip
    return _reply(aid, "task", result)


async def cancel_task(
    node: Node, aid: Aid, task_id: str, *, local: Aid | None = None, timeout_s: float = 30.0
) -> AgentReply:
    """Ask the agent to cancel a task (``CancelTask``); returns the task as it now stands."""
    result = await _rpc(node, aid, "CancelTask", {"id": task_id}, local=local,
                        timeout_s=timeout_s)  # fmt: skip
    if not isinstance(result, dict):
        raise AgentCallError(f"{aid} answered CancelTask without a task", aid=aid,
                             operation="CancelTask")  # fmt: skip
    return _reply(aid, "task", result)


async def _card_bytes(
    node: Node, aid: Aid, *, local: Aid | None, timeout_s: float
) -> tuple[bytes, dict[str, Any]]:
    await _reach(node, aid, local, timeout_s)
    resp = await node.fetch(aid, "GET", CARD_PATH, local=local, timeout_s=timeout_s)
    try:
        card = json.loads(resp.body) if resp.status == 200 else None
    except ValueError:
        card = None
    if not isinstance(card, dict):
        raise AgentCallError(f"{aid} serves no agent card (HTTP {resp.status})",
                             http_status=resp.status, aid=aid, operation="get_card")  # fmt: skip
    return resp.body, card


async def get_card(
    node: Node, aid: Aid, *, local: Aid | None = None, timeout_s: float = 30.0
) -> dict[str, Any]:
    """The agent card (JSON) the agent serves at ``/.well-known/agent-card.json``."""
    return (await _card_bytes(node, aid, local=local, timeout_s=timeout_s))[1]


@dataclasses.dataclass(frozen=True, slots=True)
class CheckedCard:
    """An agent card as served, and what it was checked against."""

    agent: Aid
    card: Mapping[str, Any]
    card_hash: bytes
    """SHA-256 of the card bytes served."""
    checked: bool
    """True when the agent's signed profile record names this hash; False when it publishes
    no profile or no card hash in it (nothing to check against)."""

    def to_dict(self) -> dict[str, Any]:
        return {"agent": str(self.agent), "card": dict(self.card),
                "card_hash": self.card_hash.hex(), "checked": self.checked}  # fmt: skip


async def get_checked_card(
    node: Node, aid: Aid, *, local: Aid | None = None, timeout_s: float = 30.0
) -> CheckedCard:
    """The agent card ``aid`` serves, checked against the card hash in its signed profile
    record (rec_type 0x02, as :func:`~a2al_mcp.adapters.a2a.serve_a2a` publishes it).

    Raises:
        VerificationError: the served card's SHA-256 is not the profile's card hash.
        NotFound / Unreachable: the agent is not online.
        AgentCallError: it serves no agent card.
    """
    raw, card = await _card_bytes(node, aid, local=local, timeout_s=timeout_s)
    digest = hashlib.sha256(raw).digest()
    try:
        expected = (await node.profile(aid)).card_hash
    except NotFound:
        expected = b""
    if expected and expected != digest:
        raise VerificationError(f"the card {aid} serves does not match the card hash in its "
                                f"signed profile (sha256 {digest.hex()[:16]}… served, "
                                f"{expected.hex()[:16]}… published)", aid=aid,
                                operation="get_agent_card")  # fmt: skip
    return CheckedCard(aid, card, digest, bool(expected))


async def candidates(node: Node, skill: str) -> list[ServiceEntry]:
    """Agents registered under ``skill`` that speak A2A, our own identities left out, best
    first: those we hold a live connection to, then the most recently registered."""
    found = await node.discover(skill, protocols=["a2a"])
    mine = {ident.aid for ident in node.identities()}
    live = {pc.peer_aid for pc in node.connections()}
    return sorted((e for e in found if e.aid not in mine),
                  key=lambda e: (e.aid not in live, -e.seq))  # seq: Unix ns  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    aid: Aid
    error: str


async def call_skill(
    node: Node,
    skill: str,
    text: str,
    *,
    local: Aid | None = None,
    max_tries: int = 5,
    timeout_s: float = 60.0,
    connect_timeout_s: float = 5.0,
    return_immediately: bool = False,
    exclude: Sequence[Aid] = (),
    on_update: OnUpdate | None = None,
) -> tuple[AgentReply, list[Attempt]]:
    """Send ``text`` to one agent that offers ``skill`` (anycast): candidates in order
    (:func:`candidates`) until one answers; a candidate that does not take a connection
    within ``connect_timeout_s`` is skipped. Returns the reply and the failed attempts.

    Raises:
        NotFound: nobody offers the skill (over A2A).
        Unreachable: no candidate answered; the message says who was tried.
    """
    found = [e for e in await candidates(node, skill) if e.aid not in exclude]
    if not found:
        raise NotFound(f"no A2A agent offers {skill!r}", operation="call_skill",
                       hint="discover lists what is registered")  # fmt: skip
    failed: list[Attempt] = []
    for entry in found[:max_tries]:
        try:
            reply = await send_message(node, entry.aid, text, local=local, timeout_s=timeout_s,
                                       connect_timeout_s=connect_timeout_s,
                                       return_immediately=return_immediately,
                                       on_update=on_update)  # fmt: skip
        except (NotFound, Unreachable) as exc:
            failed.append(Attempt(entry.aid, exc.message))  # without the hint
            continue
        return reply, failed
    tried = ", ".join(f"{a.aid.short()} ({a.error})" for a in failed)
    raise Unreachable(f"none of the agents offering {skill!r} answered: {tried}",
                      operation="call_skill")  # fmt: skip


# -- the outbox: messages for agents that are offline ------------------------------------------


def queue_message(
    node: Node,
    aid: Aid,
    text: str,
    *,
    task_id: str = "",
    context_id: str = "",
    local: Aid | None = None,
    ttl_s: float | None = None,
    message_id: str = "",
) -> Delivery:
    """Keep a ``SendMessage`` for ``aid`` in the node's durable outbox
    (:mod:`~a2al_mcp.node.outbox`): sent when it comes back, at least once, with one A2A
    ``messageId`` on every try (the delivery id), until ``ttl_s`` (at most the outbox's TTL,
    24 h by default). The request asks the agent to answer at once with its task
    (``returnImmediately``): :func:`delivery_reply` reads the answer, :func:`get_task`
    follows the task.

    Raises:
        LimitExceeded: the outbox holds its most messages for ``aid``, or in all.
        UsageError: ``local`` is not one of the node's identities.
    """
    sender = local or node.aid
    if sender not in {i.aid for i in node.identities()}:
        raise UsageError(f"{sender} is not an identity of this node", operation="outbox")
    mid = message_id or uuid.uuid4().hex
    params = _message_params(text, task_id=task_id, context_id=context_id, message_id=mid,
                             return_immediately=True)  # fmt: skip
    body = json.dumps({"jsonrpc": "2.0", "id": mid, "method": "SendMessage", "params": params})
    return node.outbox().enqueue(sender=sender, target=aid, body=body.encode(),
                                 headers=(*_JSON_HEADERS, (DELIVERY_HEADER, mid)),
                                 delivery_id=mid, ttl_s=ttl_s)  # fmt: skip


def delivery_reply(delivery: Delivery) -> AgentReply | None:
    """The agent's reply to a delivered message (None before it was delivered, or when the
    answer held no task or message)."""
    if delivery.state != "delivered":
        return None
    try:
        result = json.loads(delivery.reply).get("result")
    except (ValueError, AttributeError):
        return None
    for kind in ("task", "message"):
        if isinstance(result, dict) and isinstance(result.get(kind), dict):
            return _reply(delivery.target, kind, result[kind])
    return None


# -- fan-out: one message to several agents ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FanOut:
    """What :func:`call_agents` gathered: the replies (in candidate order) and who failed."""

    replies: list[AgentReply]
    failed: list[Attempt]


async def call_agents(
    node: Node,
    skill: str,
    text: str,
    *,
    n: int = 3,
    mode: str = "all",
    local: Aid | None = None,
    timeout_s: float = 60.0,
    connect_timeout_s: float = 5.0,
    return_immediately: bool = False,
) -> FanOut:
    """Send ``text`` to up to ``n`` agents offering ``skill`` over A2A (:func:`candidates`
    order) at the same time. ``mode="all"`` waits for each (a reply, an error or
    ``timeout_s``); ``mode="first"`` returns with the first reply (the others are not waited
    for and are listed as such). A partial result is a result: who failed is in ``failed``.

    Raises:
        NotFound: nobody offers the skill (over A2A).
        Unreachable: not one of them replied (the message says why for each).
        UsageError: ``mode`` is neither ``all`` nor ``first``, or ``n`` is below 1.
    """
    if mode not in ("all", "first") or n < 1:
        raise UsageError("mode is 'all' or 'first' and n at least 1", operation="call_agents")
    chosen = (await candidates(node, skill))[:n]
    if not chosen:
        raise NotFound(f"no A2A agent offers {skill!r}", operation="call_agents",
                       hint="discover lists what is registered")  # fmt: skip
    replies: dict[Aid, AgentReply] = {}
    failed: dict[Aid, str] = {}

    async def one(aid: Aid, tg: anyio.abc.TaskGroup) -> None:
        try:
            reply = await send_message(node, aid, text, local=local, timeout_s=timeout_s,
                                       connect_timeout_s=connect_timeout_s,
                                       return_immediately=return_immediately)  # fmt: skip
        except A2ALError as exc:
            failed[aid] = f"{exc.code}: {exc.message}"
            return
        if mode == "all" or not replies:  # "first": a reply in the same instant comes too late
            replies[aid] = reply
        if mode == "first":
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for entry in chosen:
            tg.start_soon(one, entry.aid, tg)
    order = [e.aid for e in chosen]
    attempts = [Attempt(a, failed.get(a, "not waited for (mode=first)"))
                for a in order if a not in replies]  # fmt: skip
    if not replies:
        tried = ", ".join(f"{a.aid.short()} ({a.error})" for a in attempts)
        raise Unreachable(f"none of the agents offering {skill!r} replied: {tried}",
                          operation="call_agents")  # fmt: skip
    return FanOut([replies[a] for a in order if a in replies], attempts)
