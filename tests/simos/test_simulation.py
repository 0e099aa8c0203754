"""The simulated-OS mode really simulates: a broken ``sitecustomize`` must not pass unnoticed.

Two ways: in a simulated run (``.ci/simulate-os``) the process itself is checked; in every run
(a normal one included) a child Python is started with the simulation asked for and reports
what it sees.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.simos.a2al_simos import ENV, SYSTEMS

HERE = Path(__file__).parent

# What a process sees of its system: run here and in the child (kept stdlib + a2al_mcp only).
PROBE = r"""
import asyncio, json, os, socket, sys, tempfile

facts = {"mark": getattr(sys, "_a2al_simulated_os", None), "encoding": sys.stdout.encoding}
try:
    import fcntl  # noqa: F401
    facts["fcntl"] = True
except ImportError:
    facts["fcntl"] = False
try:
    import msvcrt
    facts["msvcrt"] = hasattr(msvcrt, "locking")
except ImportError:
    facts["msvcrt"] = False
facts["af_unix"] = hasattr(socket, "AF_UNIX")
facts["cmsg_space"] = hasattr(socket, "CMSG_SPACE")
loop = asyncio.new_event_loop()
a, b = socket.socketpair()
try:
    loop.add_reader(a.fileno(), print)
    loop.remove_reader(a.fileno())
    facts["add_reader"] = True
except NotImplementedError:
    facts["add_reader"] = False
async def echo():
    b.send(b"x")
    return await loop.sock_recv(a, 1)
facts["sock_recv"] = loop.run_until_complete(echo()).decode()
loop.close()
a.close(); b.close()
with tempfile.TemporaryDirectory() as d:
    try:
        os.close(os.open(d, os.O_RDONLY))
        facts["open_dir"] = True
    except PermissionError:
        facts["open_dir"] = False
    if facts["af_unix"]:
        path = os.path.join(d, "s" * (105 - len(d) - 1))  # 105 bytes: over macOS's 104
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.bind(path)
                facts["long_unix_path"] = True
            except OSError:
                facts["long_unix_path"] = False
from a2al_mcp import _platform
from a2al_mcp.node import home
from a2al_mcp.transport import udp_offload
facts["platform"] = _platform.PLATFORM
facts["gso"] = udp_offload.gso_supported()
facts["gro"] = udp_offload.gro_supported()
facts["home_lock"] = "flock" if home._fcntl is not None else "msvcrt"
facts["socket_ioctl"] = hasattr(socket.socket, "ioctl")
from mcp.client.stdio import get_default_environment
facts["mcp_child_env"] = get_default_environment().get("A2AL_MCP_SIMULATE_OS")
print(json.dumps(facts))
"""

EXPECTED: dict[str, dict[str, Any]] = {
    "win32": {
        "mark": "win32", "encoding": "cp1252", "fcntl": False, "msvcrt": True,
        "af_unix": False, "cmsg_space": False, "add_reader": False, "sock_recv": "x",
        "open_dir": False, "platform": "win32", "gso": False, "gro": False,
        "home_lock": "msvcrt", "mcp_child_env": "win32", "socket_ioctl": True,
    },
    "darwin": {
        "mark": "darwin", "fcntl": True, "msvcrt": False, "af_unix": True, "add_reader": True,
        "sock_recv": "x", "open_dir": True, "long_unix_path": False, "platform": "darwin",
        "gso": False, "gro": False, "home_lock": "flock", "mcp_child_env": "darwin",
        "socket_ioctl": False,
    },
}  # fmt: skip


def _probe_child(name: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "PYTHONIOENCODING")}
    env[ENV] = name
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    facts: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return facts


@pytest.mark.parametrize("name", SYSTEMS)
def test_a_child_asked_to_simulate_does(name: str) -> None:
    facts = _probe_child(name)
    assert {k: facts.get(k) for k in EXPECTED[name]} == EXPECTED[name]


def test_an_unknown_system_stops_the_child() -> None:
    env = dict(os.environ, **{ENV: "plan9", "PYTHONPATH": str(HERE)})
    out = subprocess.run([sys.executable, "-c", "print('ran')"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode != 0 and "plan9" in out.stderr and "ran" not in out.stdout


def test_this_process_is_simulated(simulated: str) -> None:
    """Run by .ci/simulate-os first: the pytest process itself simulates what it was asked."""
    assert getattr(sys, "_a2al_simulated_os", None) == simulated
    namespace: dict[str, Any] = {}
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(PROBE, "<probe>", "exec"), namespace)
    facts = json.loads(buf.getvalue().splitlines()[-1])
    expected = dict(EXPECTED[simulated])
    expected.pop("encoding", None)  # stdout is redirected here; the child test checks it
    assert {k: facts.get(k) for k in expected} == expected
    if simulated == "win32":
        assert sys.stdout.encoding == "cp1252" or "PYTHONIOENCODING" in os.environ


def test_the_fake_msvcrt_locks_per_open_file(tmp_path: Path) -> None:
    from tests.simos.a2al_simos import fake_msvcrt

    msvcrt: Any = sys.modules.get("msvcrt") or fake_msvcrt()  # the installed one if simulated
    path = tmp_path / "lock"
    with open(path, "a+") as first, open(path, "a+") as second:
        msvcrt.locking(first.fileno(), msvcrt.LK_NBLCK, 1)
        with pytest.raises(PermissionError) as refused:
            msvcrt.locking(second.fileno(), msvcrt.LK_NBLCK, 1)
        assert refused.value.errno == errno.EACCES
        msvcrt.locking(first.fileno(), msvcrt.LK_UNLCK, 1)
        msvcrt.locking(second.fileno(), msvcrt.LK_NBLCK, 1)


def test_the_proactor_like_loop_keeps_asyncio_socket_calls() -> None:
    from tests.simos.a2al_simos import ProactorLikeEventLoop

    loop = ProactorLikeEventLoop()
    a, b = socket.socketpair()
    try:
        with pytest.raises(NotImplementedError):
            loop.add_reader(a.fileno(), print)
        with pytest.raises(NotImplementedError):
            loop.add_signal_handler(2, print)

        async def echo() -> bytes:
            await loop.sock_sendall(b, b"ping")
            return await loop.sock_recv(a, 4)

        assert loop.run_until_complete(echo()) == b"ping"
    finally:
        a.close()
        b.close()
        loop.close()
