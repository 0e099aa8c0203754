"""The operating system the package decides by, in one place the test mode can set.

Most platform differences are decided by asking for the capability itself (``import fcntl``
or ``msvcrt``, ``hasattr(socket, "AF_UNIX")``, ``loop.add_reader`` raising
``NotImplementedError``). What no capability check can tell — UDP GSO/GRO exist only in
Linux kernels although macOS sockets have ``sendmsg``, which flags start a detached process
on Windows, where the configuration files of desktop apps live — is decided by
:data:`PLATFORM`: ``sys.platform``, unless the test mode that simulates another system
(``.ci/simulate-os``, ``tests/simos``) names one in ``A2AL_MCP_SIMULATE_OS``. Code that
needs ``sys.platform`` for type checking (mypy narrows on the literal) keeps it there, but
never to choose a behaviour the simulation should reach.
"""

from __future__ import annotations

import os
import sys
from typing import Final

__all__ = ["IS_LINUX", "IS_MACOS", "IS_WINDOWS", "PLATFORM", "SIMULATED", "SIMULATE_ENV"]

SIMULATE_ENV: Final = "A2AL_MCP_SIMULATE_OS"
"""Names the system the test mode simulates (``win32`` or ``darwin``); tests only."""

_SIMULABLE: Final = frozenset({"win32", "darwin", "linux"})


def _simulated() -> str | None:
    name = os.environ.get(SIMULATE_ENV, "")
    return name if name in _SIMULABLE else None


SIMULATED: Final = _simulated()
"""The simulated system's name, or None (the normal case)."""

PLATFORM: Final[str] = SIMULATED or sys.platform
"""``sys.platform``, or the simulated system's name."""

IS_WINDOWS: Final = PLATFORM == "win32"
IS_MACOS: Final = PLATFORM == "darwin"
IS_LINUX: Final = PLATFORM.startswith("linux")
