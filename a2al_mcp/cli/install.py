"""``a2al-mcp install claude|cursor|windsurf``: print (or ``--write``) the MCP client config.

The block starts ``a2al-mcp serve --stdio``: this installation's script by its absolute path,
or ``uvx a2al-mcp`` when this one runs from uv's throw-away cache (``uvx a2al-mcp install …``),
where no lasting script exists (``--launcher`` chooses by hand). ``--write`` merges it into the
client's config file under ``mcpServers.a2al`` (other servers are kept; the old file is saved as
``.bak`` first).

The node is private by default: it talks only to the peers given with ``--bootstrap`` and those
they tell it about. ``--public`` writes ``--network public``: it also asks the public A2AL seeds.
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


PRIVATE_NOTE = (
    "private network: the node talks only to the peers you give it (--bootstrap HOST:PORT) and "
    "those they tell it about; nothing contacts a public address. Use --public to also join "
    "the public A2AL network."
)
PUBLIC_NOTE = "public network: the node also asks the public A2AL seeds (--network public)."


def _in_uv_cache() -> bool:
    """True when this interpreter is one of uv's throw-away tool environments (``uvx``)."""
    roots = [os.environ.get("UV_CACHE_DIR", "")]
    try:
        import platformdirs

        roots.append(platformdirs.user_cache_dir("uv", appauthor=False))
    except ImportError:  # pragma: no cover - a dependency
        pass
    prefix = Path(sys.prefix).resolve()
    return any(root and prefix.is_relative_to(Path(root).resolve()) for root in roots)


def server_block(extra_args: list[str] | None = None, *, launcher: str = "auto") -> dict[str, Any]:
    """The ``mcpServers`` entry: this installation's ``a2al-mcp`` (``a2al-mcp.exe`` beside
    the interpreter on Windows, where pip puts console scripts in ``Scripts``), or ``uvx``."""
    args = ["serve", "--stdio", *(extra_args or [])]
    if launcher == "uvx" or (launcher == "auto" and _in_uv_cache()):
        return {"command": "uvx", "args": ["a2al-mcp", *args]}
    script = "a2al-mcp.exe" if sys.platform == "win32" else "a2al-mcp"
    exe = shutil.which("a2al-mcp") or str(Path(sys.executable).with_name(script))
    return {"command": exe, "args": args}


def add_install_parser(sub: Any) -> None:
    p = sub.add_parser("install", help="print or write the MCP config for an assistant app")
    p.add_argument("client", choices=CLIENTS)
    p.add_argument("--write", action="store_true", help="merge into the client's config file")
    p.add_argument("--bootstrap", help="HOST:PORT seeds to put in the server's arguments")
    p.add_argument("--public", action="store_true",
                   help="join the public A2AL network too (writes --network public)")  # fmt: skip
    p.add_argument("--launcher", choices=("auto", "path", "uvx"), default="auto",
                   help="how the app starts the server: this installation's script (path), "
                   "uvx, or auto (uvx only when this runs from uv's cache)")  # fmt: skip
    p.set_defaults(func=_cmd_install)


def _cmd_install(args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--bootstrap", args.bootstrap] if args.bootstrap else []
    if args.public:
        extra += ["--network", "public"]
    block = {"mcpServers": {"a2al": server_block(extra, launcher=args.launcher)}}
    path = client_config_path(args.client)
    network = PUBLIC_NOTE if args.public else PRIVATE_NOTE
    if not args.write:
        return {"config_file": str(path), "add": block, "network": network}
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
    return {"written": str(path), "mcpServers": sorted(current["mcpServers"]), "network": network}
