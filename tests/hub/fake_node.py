"""A stand-in for ``a2al-mcp node run`` that the stdio proxy can start: the hub's channel (a
loopback TCP port, ``mcp.channel``, the hello) and a scripted MCP side, standard library only.

    python fake_node.py DATA_DIR [CHANGES]

It answers ``initialize`` with the answer :mod:`a2al_mcp.hub.handshake` builds, updated with
``CHANGES`` (a JSON object: a node that answers otherwise), every other request with
``{"method": <method>}``, and appends every line it gets to ``DATA_DIR/received.jsonl`` (the
proxy's replays included). It serves until killed.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from a2al_mcp.hub.channel import CHANNEL_FILE, ChannelInfo, parse_hello
from a2al_mcp.hub.handshake import answer, sdk_version


def serve_client(conn: socket.socket, home: Path, token: str, changes: dict[str, Any]) -> None:
    with conn:
        serve_lines(conn, home, token, changes)


def serve_lines(conn: socket.socket, home: Path, token: str, changes: dict[str, Any]) -> None:
    reader = conn.makefile("rb")
    hello = parse_hello(reader.readline(256))
    if hello is None or hello[1] != token:
        conn.sendall(b"NO hello: bad hello or token\n")
        return
    conn.sendall(b"OK " + json.dumps({"pid": os.getpid()}).encode() + b"\n")
    for line in reader:
        with (home / "received.jsonl").open("ab") as f:
            f.write(line)
        msg = json.loads(line)
        if "id" not in msg or "method" not in msg:
            continue
        if msg["method"] == "initialize":
            result = answer(msg["params"], sdk=sdk_version())
            assert result is not None
            result.update(changes)
        else:
            result = {"method": msg["method"]}
        reply = {"jsonrpc": "2.0", "id": msg["id"], "result": result}
        conn.sendall(json.dumps(reply).encode() + b"\n")


def main() -> None:
    home = Path(sys.argv[1])
    changes = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # every OS has this one
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    info = ChannelInfo(kind="tcp", token=token, pid=os.getpid(), host="127.0.0.1", port=port)
    tmp = home / (CHANNEL_FILE + ".tmp")
    tmp.write_text(info.to_json())
    os.replace(tmp, home / CHANNEL_FILE)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_client, args=(conn, home, token, changes),
                         daemon=True).start()  # fmt: skip


if __name__ == "__main__":
    main()
