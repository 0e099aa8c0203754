from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from a2al_mcp.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_aid_and_decode(capsys: pytest.CaptureFixture[str], vectors: dict[str, Any]) -> None:
    code, out, _ = _run(capsys, "aid", vectors["aid_a_text"].lower())
    assert code == 0 and out["aid"] == vectors["aid_a_text"]
    assert out["node_id"] == vectors["node_id_a"]
    code, out, _ = _run(capsys, "decode", vectors["ping"]["datagram"])
    assert code == 0 and out["type"] == "PING" and out["signature"] == "valid"
    code, out, _ = _run(capsys, "decode", "--record", vectors["endpoint_record"]["record"])
    assert code == 0 and out["record"]["seq"] == 1


def test_errors_go_to_stderr_with_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "aid", "not-an-aid")
    assert code == 4 and out is None and err.startswith("error: DECODE:")
    bad = "a4" + "00" * 10
    code, out, err = _run(capsys, "decode", bad)
    assert code == 4 and "DECODE" in err


def test_identity_new(capsys: pytest.CaptureFixture[str]) -> None:
    from a2al_mcp import DelegationProof, SigningKey

    code, out, _ = _run(capsys, "id", "new", "--delegated")
    assert code == 0
    proof = DelegationProof.from_bytes(bytes.fromhex(out["delegation_proof_hex"]))
    op = SigningKey.from_go_bytes(bytes.fromhex(out["operational_private_key_hex"]))
    proof.verify(proof.issued_at, op_pub=bytes(op.public))
    assert str(proof.agent) == out["aid"]
    code, out, _ = _run(capsys, "id", "new")
    assert code == 0 and len(out["private_key_hex"]) == 128


def test_install_prints_and_merges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import json

    from a2al_mcp.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["install", "cursor"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config_file"] == str(tmp_path / ".cursor/mcp.json")
    assert shown["add"]["mcpServers"]["a2al"]["args"] == ["serve", "--stdio"]
    cfg = tmp_path / ".cursor/mcp.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}}))
    assert main(["install", "cursor", "--write", "--bootstrap", "127.0.0.1:4121"]) == 0
    merged = json.loads(cfg.read_text())
    assert set(merged["mcpServers"]) == {"other", "a2al"}
    assert merged["mcpServers"]["a2al"]["args"][-2:] == ["--bootstrap", "127.0.0.1:4121"]
    assert (tmp_path / ".cursor/mcp.json.bak").exists()
    cfg.write_text("{not json")
    assert main(["install", "cursor", "--write"]) == 3  # CONFIG error, file untouched
    assert cfg.read_text() == "{not json"


@pytest.mark.parametrize(("platform", "script"), [("win32", "a2al-mcp.exe"), ("linux", "a2al-mcp")])
def test_install_names_the_script_of_the_platform(monkeypatch: pytest.MonkeyPatch, platform: str,
                                                  script: str) -> None:  # fmt: skip
    """Off PATH (an assistant app's environment), the entry names the script beside the
    interpreter: on Windows pip writes ``Scripts/a2al-mcp.exe``."""
    import shutil
    import sys

    from a2al_mcp.cli.install import server_block

    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(sys, "platform", platform)
    assert Path(server_block()["command"]).name == script


def test_demo_runs_on_a_cp1252_console() -> None:
    """A Windows console's cp1252 cannot encode the demo's check marks: they are escaped,
    the demo completes (it ended with UnicodeEncodeError before)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    done = subprocess.run([sys.executable, "-m", "a2al_mcp", "demo", "--nodes", "3"], env=env,
                          capture_output=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode("cp1252", "replace")[-2000:]
    out = done.stdout.decode("cp1252")
    assert "\\u2713" in out and "Done." in out
