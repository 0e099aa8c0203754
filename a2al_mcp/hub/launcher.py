"""Find the node of a data directory, or start one, and open the channel to it.

:func:`attach` is what every stdio proxy does: read ``mcp.channel``, connect; if no node
answers, start ``a2al-mcp node run`` on the same data directory as a detached process (its
own session on POSIX, a detached process group on Windows, so closing the client that started
it never stops it) and wait for its channel, at most ``start_timeout_s``. Two clients that
start at once both spawn a node; the data directory's lock lets one of them run and the other
exits, and both clients attach to the one that runs.

The node's stderr goes to ``<data dir>/node.log`` (truncated at each start: a node log is a
diagnosis aid, not a store); when the node cannot start, the error names that file and quotes
its last line.

Standard library only (the proxy imports it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from .._clock import SystemClock
from .channel import ChannelError, ChannelInfo, Verb, connect, read_info

__all__ = ["LOG_FILE", "attach", "node_command", "spawn_node"]

LOG_FILE: Final = "node.log"
LOG_TAIL_MAX: Final = 4096
"""Bytes of ``node.log`` read to quote why a node did not start."""
POLL_S: Final = 0.05
IN_USE: Final = "is in use by process"
"""What a node that lost the race for the data directory's lock says (node/home.py)."""
CONNECT_TIMEOUT_S: Final = 5.0
"""How long one connection attempt (connect, hello, answer) may take."""


def node_command(data_dir: Path, node_args: Sequence[str], *, grace_s: float | None) -> list[str]:
    """The command line of a node process for ``data_dir`` (this interpreter, this package);
    ``-v`` in ``node_args`` (a global option) goes before the command."""
    rest = [a for a in node_args if a != "-v"]
    verbose = ["-v"] if len(rest) != len(node_args) else []
    cmd = [sys.executable, "-m", "a2al_mcp", *verbose, "node", "run", "--data-dir", str(data_dir)]
    if grace_s is not None:
        cmd += ["--grace", repr(grace_s)]
    return cmd + rest


def spawn_node(data_dir: Path, command: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``command`` detached from this process, stderr to ``node.log``."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_fd = os.open(data_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    kwargs: dict[str, Any] = {}
    if sys.platform == "win32":
        flags = 0
        for name in ("DETACHED_PROCESS", "CREATE_NEW_PROCESS_GROUP", "CREATE_NO_WINDOW"):
            flags |= getattr(subprocess, name, 0)
        kwargs["creationflags"] = flags
    else:
        kwargs["start_new_session"] = True
    try:
        return subprocess.Popen(  # our own interpreter and arguments
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,
            close_fds=True,
            **kwargs,
        )
    finally:
        os.close(log_fd)


def _log_tail(data_dir: Path) -> str:
    try:
        with (data_dir / LOG_FILE).open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_MAX))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def attach(
    data_dir: Path,
    verb: Verb,
    *,
    command: Sequence[str] | None,
    start_timeout_s: float,
) -> tuple[socket.socket, dict[str, Any], subprocess.Popen[bytes] | None]:
    """Connect to the node of ``data_dir``; start one with ``command`` if none answers
    (``command=None``: never start one).

    Returns the connected socket, the node's hello answer and the process started (or None).

    Raises:
        ChannelError: no node answers and none could be started in time (the reason names
            ``node.log`` and quotes its last line).
    """
    child: subprocess.Popen[bytes] | None = None
    clock = SystemClock()
    deadline = clock.monotonic() + start_timeout_s
    last = "no node is running"
    while True:
        try:
            info: ChannelInfo | None = read_info(data_dir)
        except ChannelError as exc:  # half-written by a node starting right now? retry
            info, last = None, exc.reason
        if info is not None:
            try:
                sock, hello = connect(info, verb, timeout_s=CONNECT_TIMEOUT_S)
            except ChannelError as exc:
                if exc.refused == "busy":
                    raise
                last = exc.reason
                if exc.refused is not None and clock.monotonic() < deadline:
                    time.sleep(POLL_S)  # a live node, whose new token we read too early:
                    continue  # read the channel file again, start no other node
            else:
                return sock, hello, child
        if command is None:
            raise ChannelError(last)
        if child is None:
            child = spawn_node(data_dir, command)
        elif child.poll() is not None and IN_USE not in _log_tail(data_dir):
            break  # it failed, and not because another node (which we wait for) runs here
        if clock.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    code = child.poll()
    tail = _log_tail(data_dir)
    state = (f"did not open its channel within {start_timeout_s:g} s" if code is None
             else f"exited with status {code}")  # fmt: skip
    why = f"; it says: {tail}" if tail else ""
    raise ChannelError(f"the a2al-mcp node for {data_dir} {state} (see {data_dir / LOG_FILE}){why}")
