"""``a2al-mcp install claude|cursor|windsurf``: print (or ``--write``) the MCP client config.

The block starts this installation's ``a2al-mcp serve --stdio``. ``--write`` merges it into the
client's config file under ``mcpServers.a2al`` (other servers are kept; the old file is saved as
``.bak`` first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["add_install_parser", "client_config_path", "server_block"]

CLIENTS = ("claude", "cursor", "windsurf")


def client_config_path(client: str, *, home: Path | None = None) -> Path:
    """Where ``client`` keeps its MCP server list on this platform."""
    home = home or Path.home()
    if client == "claude":
        if sys.platform == "darwin":
            return home / "Library/Application Support/Claude/claude_desktop_config.json"
        if sys.platform == "win32":
            return Path(os.environ.get("APPDATA", home)) / "Claude/claude_desktop_config.json"
        return home / ".config/Claude/claude_desktop_config.json"
    if client == "cursor":
        return home / ".cursor/mcp.json"
    if client == "windsurf":
        return home / ".codeium/windsurf/mcp_config.json"
    raise ConfigError(f"unknown client {client!r}; choose one of {', '.join(CLIENTS)}")


def server_block(extra_args: list[str] | None = None) -> dict[str, Any]:
    """The ``mcpServers`` entry: this installation's ``a2al-mcp`` (``a2al-mcp.exe`` beside
    the interpreter on Windows, where pip puts console scripts in ``Scripts``)."""
    script = "a2al-mcp.exe" if sys.platform == "win32" else "a2al-mcp"
    exe = shutil.which("a2al-mcp") or str(Path(sys.executable).with_name(script))
    return {"command": exe, "args": ["serve", "--stdio", *(extra_args or [])]}


def add_install_parser(sub: Any) -> None:
    p = sub.add_parser("install", help="print or write the MCP config for an assistant app")
    p.add_argument("client", choices=CLIENTS)
    p.add_argument("--write", action="store_true", help="merge into the client's config file")
    p.add_argument("--bootstrap", help="HOST:PORT seeds to put in the server's arguments")
    p.set_defaults(func=_cmd_install)


def _cmd_install(args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--bootstrap", args.bootstrap] if args.bootstrap else []
    block = {"mcpServers": {"a2al": server_block(extra)}}
    path = client_config_path(args.client)
    if not args.write:
        return {"config_file": str(path), "add": block}
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {path} as JSON ({exc}); fix or move it first") from exc
        shutil.copy2(path, path.with_suffix(path.suffix + ".bak"))
    current.setdefault("mcpServers", {})["a2al"] = block["mcpServers"]["a2al"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return {"written": str(path), "mcpServers": sorted(current["mcpServers"])}
