"""What a2ald is launched with: its binary, its ``config.toml`` and its environment."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

__all__ = ["A2ALD_VERSION", "daemon_env", "find_a2ald", "render_config"]


A2ALD_VERSION: Final = "0.3.5"
"""The daemon version these helpers were written and verified against."""

# Environment variables removed from the daemon's environment: INVOCATION_ID/JOURNAL_STREAM make
# a2ald believe it runs under a service manager (enables the self-updater); proxies would send
# its (failing anyway) HTTP probes somewhere else; every A2AL_* variable (A2AL_LISTEN_ADDR,
# A2AL_SIGNAL_LISTEN_ADDR, ...) would override config.toml.
_SCRUBBED_ENV_PREFIX: Final = "A2AL_"
_SCRUBBED_ENV: Final = frozenset(
    {
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    }
)


def find_a2ald() -> Path | None:
    """Locate the a2ald binary: ``$A2ALD_BIN``, else ``<site-packages>/a2al/bin/a2ald``.

    Returns None when it is missing or not executable.
    """
    override = os.environ.get("A2ALD_BIN")
    if override:
        candidate: Path | None = Path(override)
    else:
        candidate = _wheel_binary()
    if candidate is None or not candidate.is_file() or not os.access(candidate, os.X_OK):
        return None
    return candidate


def _wheel_binary() -> Path | None:
    """Return the binary shipped in the ``a2al`` wheel, if the package is importable."""
    try:
        spec = importlib.util.find_spec("a2al")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "bin" / "a2ald"


def _toml_str(value: str) -> str:
    """Render a TOML basic string (JSON escaping is a valid subset for these values)."""
    return json.dumps(value)


def _toml_list(values: Iterable[str]) -> str:
    """Render a TOML array of strings."""
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def render_config(
    *,
    udp_port: int,
    api_port: int,
    bootstrap: Sequence[str],
    log_level: str = "info",
    listen_host: str = "127.0.0.1",
    fallback_host: str | None = "127.0.0.1",
    min_observed_peers: int | None = 1,
    stun_urls: Sequence[str] = ("stun:127.0.0.1:3478",),
    turn_servers: Sequence[tuple[str, str, str]] = (),
    disable_upnp: bool = True,
    signal_listen_addr: str = "off",
    disable_relay: bool = True,
) -> str:
    """``config.toml`` for a test peer (see a2al-wire.md §7.3).

    The defaults make a sealed loopback peer.  A peer in the NAT testbed listens on
    ``0.0.0.0``, keeps a2ald's own fallback and observation threshold (None: line omitted),
    uses the testbed's STUN and TURN (``(url, username, credential)``) and may use UPnP,
    run an embedded signalling hub (``signal_listen_addr=""``) and relay.
    """
    lines = [
        "# written by a2al_mcp.testing.a2ald: sealed loopback test peer"
        if listen_host == "127.0.0.1"
        else "# written by a2al_mcp.testing.a2ald: test peer in the sealed NAT testbed",
        f'listen_addr = "{listen_host}:{udp_port}"',
        'quic_listen_addr = ""',
        f"bootstrap = {_toml_list(bootstrap)}",
    ]
    if min_observed_peers is not None:
        lines.append(f"min_observed_peers = {min_observed_peers}")
    if fallback_host is not None:
        # a2ald drops loopback from its endpoint list unless it is the fallback host
        lines.append(f"fallback_host = {_toml_str(fallback_host)}")
    lines += [
        f"disable_upnp = {'true' if disable_upnp else 'false'}",
        f'api_addr = "127.0.0.1:{api_port}"',
        'api_token = ""',
        "require_local_token = false",
        'log_format = "text"',
        f"log_level = {_toml_str(log_level)}",
        'ice_signal_url = ""',
        "ice_signal_urls = []",
        f"ice_stun_urls = {_toml_list(stun_urls)}",
        "ice_turn_urls = []",
    ]
    if turn_servers:
        lines.append("ice_publish_turns = []")
    else:
        lines += ["turn_servers = []", "ice_publish_turns = []"]
    lines += [
        # "off": no embedded signalling hub at all ("" would listen on [::]:<listen port>/tcp)
        f"signal_listen_addr = {_toml_str(signal_listen_addr)}",
        "auto_publish = true",
        "open_browser = false",
        "beacon_mode = false",
        f"disable_relay = {'true' if disable_relay else 'false'}",
        "",
    ]
    for url, username, credential in turn_servers:
        lines += [
            "[[turn_servers]]",
            f"url = {_toml_str(url)}",
            'credential_type = "static"',
            f"username = {_toml_str(username)}",
            f"credential = {_toml_str(credential)}",
            "",
        ]
    lines += ["[update]", "auto = false", ""]
    return "\n".join(lines)


def daemon_env() -> dict[str, str]:
    """Return the caller's environment minus variables that change a2ald's behaviour."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED_ENV and not k.startswith(_SCRUBBED_ENV_PREFIX)
    }
