"""Issue 16, "installable the way MCP users install": server.json for the official MCP
registry, the Dockerfile, ``install --public`` and ``--launcher uvx``, the token from the
environment, and ``--help`` with examples. Each is checked against the CLI it starts, so none
can name an option or a variable the code does not have."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from a2al_mcp import __version__
from a2al_mcp.cli import build_parser, main
from a2al_mcp.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _server_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    return data


def test_server_json_matches_the_package_and_the_cli() -> None:
    meta = _server_json()
    marker = re.search(r"<!-- mcp-name: (\S+) -->", (ROOT / "README.md").read_text("utf-8"))
    assert marker and marker.group(1) == meta["name"]  # the registry's PyPI ownership check
    assert re.fullmatch(r"io\.github\.[\w-]+/[\w.-]+", meta["name"])
    assert len(meta["description"]) <= 100  # the official registry's limit
    (pkg,) = meta["packages"]
    assert meta["version"] == pkg["version"] == __version__
    assert (pkg["registryType"], pkg["identifier"], pkg["transport"]) == (
        "pypi", "a2al-mcp", {"type": "stdio"})  # fmt: skip
    argv: list[str] = []
    for arg in pkg["packageArguments"]:
        if arg["type"] == "positional":
            argv.append(arg["value"])
        elif "choices" in arg:
            argv += [arg["name"], arg["choices"][-1]]
        elif arg.get("format") == "string":
            argv += [arg["name"], "127.0.0.1:4121"]
        else:
            argv.append(arg["name"])
    args = build_parser().parse_args(argv)  # every argument is one serve accepts
    assert args.command == "serve" and args.stdio and args.network == "public"
    network = next(a for a in pkg["packageArguments"] if a.get("name") == "--network")
    assert set(network["choices"]) == {"private", "public"} and network["default"] == "private"


def _dockerfile() -> tuple[list[str], dict[str, str], set[str], str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    entry = cmd = []
    env: dict[str, str] = {}
    exposed: set[str] = set()
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENTRYPOINT":
            entry = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "ENV":
            env.update(dict(part.split("=", 1) for part in shlex.split(rest)))
        elif word == "EXPOSE":
            exposed.update(rest.split())
    return entry + cmd, env, exposed, text


def test_dockerfile_runs_a_command_the_cli_accepts_with_variables_the_code_reads() -> None:
    argv, env, exposed, text = _dockerfile()
    assert argv[0] == "a2al-mcp"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.http == "0.0.0.0:8080"
    cfg = load_config(env=env)  # the image's environment is a valid configuration
    assert str(cfg.data_dir) == "/data" and cfg.listen_addr == "0.0.0.0:4121"
    assert exposed == {"8080/tcp", "4121/udp"}
    documented = set(re.findall(r"-e (A2AL_MCP_\w+)=", text))
    read = {"A2AL_MCP_TOKEN", "A2AL_MCP_ADVERTISE", "A2AL_MCP_BOOTSTRAP", "A2AL_MCP_NETWORK"}
    assert documented == read
    samples = {"A2AL_MCP_ADVERTISE": "192.0.2.1", "A2AL_MCP_BOOTSTRAP": "192.0.2.2:4121",
               "A2AL_MCP_NETWORK": "public"}  # fmt: skip
    cfg = load_config(env={**env, **samples})
    assert (cfg.advertise_host, cfg.bootstrap, cfg.network) == (
        "192.0.2.1", ("192.0.2.2:4121",), "public")  # fmt: skip


def test_the_http_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A2AL_MCP_TOKEN", "from-env")
    assert build_parser().parse_args(["serve", "--http", "0.0.0.0:8080"]).token == "from-env"
    monkeypatch.delenv("A2AL_MCP_TOKEN")
    assert build_parser().parse_args(["serve", "--http", "0.0.0.0:8080"]).token is None


def test_install_public_and_uvx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["install", "claude"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "only to the peers you give it" in shown["network"]
    assert main(["install", "cursor", "--public", "--launcher", "uvx"]) == 0
    shown = json.loads(capsys.readouterr().out)
    block = shown["add"]["mcpServers"]["a2al"]
    assert block == {"command": "uvx",
                     "args": ["a2al-mcp", "serve", "--stdio", "--network", "public"]}  # fmt: skip
    assert build_parser().parse_args(block["args"][1:]).network == "public"
    assert "public A2AL seeds" in shown["network"]
    # run from uv's cache (what `uvx a2al-mcp install ...` does): uvx is chosen by itself
    monkeypatch.setenv("UV_CACHE_DIR", str(Path(sys.prefix).parent))
    assert main(["install", "windsurf"]) == 0
    assert json.loads(capsys.readouterr().out)["add"]["mcpServers"]["a2al"]["command"] == "uvx"
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert main(["install", "windsurf"]) == 0
    assert json.loads(capsys.readouterr().out)["add"]["mcpServers"]["a2al"]["command"] != "uvx"


def test_help_has_examples_that_parse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    commands: list[list[str]] = []
    for line in out.split("examples:")[1].splitlines():
        command = re.split(r"\s{2,}", line.strip())[0]
        command = re.sub(r"^A2AL_MCP_\w+=\S+ ", "", command)
        if not command.startswith("a2al-mcp "):
            continue
        for part in command.removeprefix("a2al-mcp ").split(" | "):
            words = [w.replace("HOST:PORT", "127.0.0.1:1") for w in part.split()]
            words = ["192.0.2.1" if w == "HOST" else w for w in words]
            commands.append(words)
    assert len(commands) >= 8
    aid = "A056475aa75463474C0285df5Dbf2bcAB73Da65135"
    for words in commands:  # every example is a command line the CLI accepts
        build_parser().parse_args([aid if w == "AID" else w for w in words])
