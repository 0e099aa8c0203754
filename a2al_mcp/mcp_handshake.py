"""The node's answer to ``initialize``, built without the node or the SDK (standard library
only): shared by the stdio proxy (:mod:`a2al_mcp.hub.handshake`, which answers before a node
runs) and the node's own SDK-free MCP session (:mod:`a2al_mcp.mcp_server.session`). It lives
beside both layers, not in either: the hub and the MCP server do not import each other.

A desktop app shows the server as ready once ``initialize`` is answered. On a data directory
that no node runs on, a node must start first (Python, the MCP SDK, the node: about a second),
so the stdio proxy answers ``initialize`` itself with :func:`answer` and starts the node
meanwhile. The answer is what the node's MCP SDK builds (``mcp.server.runner``'s
``_handle_initialize``, given the server ``mcp_server.app.build_server`` makes):

- ``protocolVersion``: the client's, when the SDK negotiates it through ``initialize``; else
  the SDK's latest such version;
- ``capabilities``: what the SDK announces for our server (tools, resources with subscribe,
  prompts; none of them lists changes);
- ``serverInfo``: ``a2al``, its title and the package version; ``instructions``.

It depends on the client's protocol version, the package version and the SDK (its version
list and the capabilities it announces), and on nothing in the node's configuration
(``limits.mcp_message_max_bytes`` only decides whether the node takes the message at all). So it
is given only for an SDK whose answers were checked against the node (:data:`PROFILES`, by
the SDK's major.minor version, found without importing it), and only for a request the node
is sure to accept (:func:`plain_request`: a narrower check than the SDK's validation); in
every other case the proxy asks the node. tests/hub/test_handshake.py checks, for every
protocol version the SDK knows and a few it does not, that this answer is the node's.
The proxy still gives the node the client's ``initialize`` and compares the node's answer
with this one (see :mod:`.proxy`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from typing import Any, Final

from ._version import __version__

__all__ = [
    "INSTRUCTIONS",
    "NAME",
    "PROFILES",
    "TITLE",
    "Profile",
    "answer",
    "plain_request",
    "sdk_version",
]

NAME: Final = "a2al"
TITLE: Final = "A2AL agent network"
INSTRUCTIONS: Final = (
    "a2al-mcp connects this assistant to the A2AL agent network: every agent has a permanent "
    "cryptographic address (AID). Call status first. Use publish to announce yourself, "
    "discover to find agents by capability, resolve to check one is online, fetch or connect "
    "to talk to it directly, call_agent to message an A2A agent (by AID or skill), and "
    "send_mailbox when it is offline or unreachable; read_mailbox "
    "shows notes left for you (every result's unread_mail counts the unread ones). Errors "
    "are 'CODE: sentence' with a stable code (e.g. BAD_ARGUMENTS, NOT_FOUND, UNREACHABLE)."
)
"""The same text as ``mcp_server.app.INSTRUCTIONS`` (the test compares the answers)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """What one SDK version puts in its ``initialize`` answer."""

    handshake_versions: tuple[str, ...]
    """Protocol versions negotiated through ``initialize`` (the client's, if listed)."""
    capabilities: dict[str, Any]
    server_title: bool
    """``serverInfo`` carries the title."""

    @property
    def latest(self) -> str:
        return self.handshake_versions[-1]


_MCP2: Final = Profile(
    handshake_versions=("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"),
    capabilities={
        "prompts": {"listChanged": False},
        "resources": {"listChanged": False, "subscribe": True},
        "tools": {"listChanged": False},
    },
    server_title=True,
)

PROFILES: Final[dict[str, Profile]] = {"2.3": _MCP2}
"""By the SDK's ``major.minor`` version: the versions checked against the node."""

_DIST_INFO = re.compile(r"^mcp-(\d+)\.(\d+)(?:\.[^-]*)?\.dist-info$", re.IGNORECASE)


def sdk_version() -> str | None:
    """The ``major.minor`` version of the ``mcp`` SDK that ``import mcp`` would load here, from
    its ``dist-info`` directory beside it (nothing imported: that takes most of a second);
    None when it cannot be told for sure (not installed, no or several ``dist-info``)."""
    try:
        spec = importlib.util.find_spec("mcp")
    except (ImportError, ValueError):
        return None
    places = list(spec.submodule_search_locations or ()) if spec is not None else []
    if len(places) != 1:
        return None
    where = os.path.dirname(places[0])
    try:
        found = [m for name in os.listdir(where) if (m := _DIST_INFO.match(name))]
    except OSError:
        return None
    if len(found) != 1:
        return None
    return f"{int(found[0][1])}.{int(found[0][2])}"


# --- plain_request: what the SDK's validation surely accepts (a narrower check)
_BOOL = "bool"
_MAP = "map"  # an object whose values are all objects
_CAPABILITIES: Final[dict[str, Any]] = {
    "experimental": _MAP,
    "extensions": _MAP,
    "roots": {"listChanged": _BOOL},
    "sampling": {"context": {}, "tools": {}},
    "elicitation": {"form": {}, "url": {}},
    "tasks": {
        "list": {},
        "cancel": {},
        "requests": {"sampling": {"createMessage": {}}, "elicitation": {"create": {}}},
    },
}
_ENVELOPE: Final = frozenset({"jsonrpc", "id", "method", "params"})
_PARAMS: Final = frozenset({"protocolVersion", "capabilities", "clientInfo"})
_CLIENT_INFO_TEXT: Final = ("title", "description", "websiteUrl")
_ICON: Final = frozenset({"src", "mimeType", "sizes", "theme"})
_INT_MAX: Final = 10**19 - 1
"""The node's front refuses longer integers (``guard._INT_DIGITS``)."""
_DEPTH_MAX: Final = 64


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), name)


def _fits(value: Any, spec: Any) -> bool:
    """``value`` is surely valid for ``spec`` (a dict of optional typed fields, where an
    unknown key is ignored but a field's snake_case alias is refused, ``_BOOL`` or ``_MAP``)."""
    if value is None:
        return True
    if spec == _BOOL:
        return isinstance(value, bool)
    if not isinstance(value, dict):
        return False
    if spec == _MAP:
        return all(isinstance(v, dict) for v in value.values())
    for key, item in value.items():
        if key in spec:
            if not _fits(item, spec[key]):
                return False
        elif any(key == _snake(k) for k in spec):
            return False
    return True


def _plain_json(value: Any) -> bool:
    """Only what the node's front accepts as it is: text, integers it takes, booleans, null,
    objects and arrays nested at most 64 deep (no floats at all: NaN, huge ones); no
    recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate
                return False
        elif isinstance(item, int) and not isinstance(item, bool):
            if abs(item) > _INT_MAX:
                return False
        elif isinstance(item, dict | list):
            if depth > _DEPTH_MAX:
                return False
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)  # keys are text (json.loads)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif not (isinstance(item, bool) or item is None):
            return False
    return True


def _client_info(info: Any) -> bool:
    if not isinstance(info, dict):
        return False
    if not (isinstance(info.get("name"), str) and isinstance(info.get("version"), str)):
        return False
    if "website_url" in info:  # the SDK's snake_case alias: validated too
        return False
    if not all(isinstance(info.get(k), str | None) for k in _CLIENT_INFO_TEXT):
        return False
    icons = info.get("icons")
    if icons is None:
        return True
    if not isinstance(icons, list):
        return False
    for icon in icons:
        if not isinstance(icon, dict) or not isinstance(icon.get("src"), str):
            return False
        if "mime_type" in icon or not isinstance(icon.get("mimeType"), str | None):
            return False
        sizes = icon.get("sizes")
        if sizes is not None and not (isinstance(sizes, list)
                                      and all(isinstance(s, str) for s in sizes)):  # fmt: skip
            return False
        if icon.get("theme") not in (None, "light", "dark"):
            return False
    return True


def plain_request(msg: Any, size: int, *, max_bytes: int) -> bool:
    """``msg`` (a line of ``size`` bytes) is an ``initialize`` request the node's front and
    SDK accept for sure, so :func:`answer` is the node's answer to it. Narrower than the
    node's checks on purpose: what this refuses simply goes to the node."""
    if size > max_bytes or not isinstance(msg, dict) or not _ENVELOPE.issuperset(msg):
        return False
    if msg.get("jsonrpc") != "2.0" or msg.get("method") != "initialize":
        return False
    msg_id = msg.get("id")
    if isinstance(msg_id, bool) or not isinstance(msg_id, int | str):
        return False
    params = msg.get("params")
    if not isinstance(params, dict) or not _PARAMS.issuperset(params):
        return False  # also: no _meta, no snake_case aliases of the fields
    return (
        _plain_json(msg)
        and isinstance(params.get("protocolVersion"), str)
        and isinstance(params.get("capabilities"), dict)
        and _fits(params["capabilities"], _CAPABILITIES)
        and _client_info(params.get("clientInfo"))
    )


def answer(
    params: dict[str, Any], *, sdk: str | None, version: str = __version__
) -> dict[str, Any] | None:
    """The node's ``initialize`` result for ``params`` (of a :func:`plain_request`), the node
    running package ``version`` on SDK ``sdk`` (``major.minor``); None for an SDK not in
    :data:`PROFILES`."""
    profile = PROFILES.get(sdk) if sdk is not None else None
    if profile is None:
        return None
    asked = params.get("protocolVersion")
    negotiated = asked if asked in profile.handshake_versions else profile.latest
    info: dict[str, Any] = {"name": NAME, "version": version}
    if profile.server_title:
        info["title"] = TITLE
    return {
        "capabilities": {k: dict(v) for k, v in profile.capabilities.items()},
        "instructions": INSTRUCTIONS,
        "protocolVersion": negotiated,
        "serverInfo": info,
    }
