"""Make this Linux process look like Windows or macOS to a2al-mcp (tests only).

CI here cannot run macOS or Windows, so ``.ci/simulate-os`` runs the demo, the CLI and the
node, MCP and hub tests with ``A2AL_MCP_SIMULATE_OS=win32|darwin`` and this folder on
``PYTHONPATH``: its ``sitecustomize`` calls :func:`activate` in every Python process of the
run before anything else is imported, subprocesses included (and, through
:func:`_pass_through_mcp_stdio`, the servers the mcp SDK's stdio client spawns with its
filtered environment).

What it takes away or changes, and why it stands for the real system:

``win32``
    * ``import fcntl`` fails (but for the modules of :data:`FCNTL_BY_NAME`, which choose it
      by ``sys.platform``); a ``msvcrt`` module with ``locking`` (``LK_NBLCK``,
      ``LK_UNLCK``, ...) exists, built on the real ``flock`` of this process, so the
      ``msvcrt`` branch of the data directory's lock runs (one lock per open file, as
      ``LockFile`` is per handle).
    * ``socket.AF_UNIX``, ``socket.CMSG_SPACE`` and ``socket.CMSG_LEN`` are gone (Python on
      Windows has none of them); ``socket.socketpair()`` still works (Windows emulates it
      over loopback TCP, here it stays a Unix pair); sockets have an ``ioctl`` method that
      refuses every code, as Python's on Windows does for all but three (``ctypes`` has no
      ``windll``, so turning ICMP reports off finds no Winsock and the reads read past them).
    * event loops are :class:`ProactorLikeEventLoop`: ``add_reader``/``add_writer``/
      ``remove_reader``/``remove_writer`` and ``add_signal_handler``/
      ``remove_signal_handler`` raise ``NotImplementedError`` for any caller outside
      asyncio itself, as on Windows' ``ProactorEventLoop`` (asyncio's own ``sock_recv``
      & co keep working, as they do there through overlapped I/O).
    * ``os.open`` of a directory fails with ``PermissionError`` (Windows cannot open one),
      and ``shutil.rmtree`` takes its path-based walk, as on Windows.
    * stdout and stderr are cp1252 (``PYTHONIOENCODING``, or reconfigured here when a
      parent filtered the environment), as when Windows output goes to a pipe or file.
``darwin``
    * binding or connecting an ``AF_UNIX`` socket to a path longer than 104 bytes fails
      ("AF_UNIX path too long", macOS's ``sun_path``).
both
    * ``a2al_mcp._platform.PLATFORM`` is the simulated name (read from the environment), so
      what only the system's name can decide (UDP GSO/GRO: off) follows it.

Not simulated: ``sys.platform`` and ``os.name`` (the standard library and third-party code
would take Windows paths that cannot run here), the locale encoding ``open()`` uses without
an ``encoding`` (cp1252 on Windows: C-level, not reachable from Python), the ``sendmsg``/
``recvmsg`` methods of sockets (C methods: ``hasattr`` still finds them), file paths and
permissions (POSIX modes, ``/`` separators, no drive letters, no ``.exe``), named pipes,
process creation flags and signals sent to other processes, macOS's kqueue and its other
socket options.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.abc
import importlib.machinery
import os
import socket
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

ENV = "A2AL_MCP_SIMULATE_OS"
SYSTEMS = ("win32", "darwin")
PASSED_ON = (ENV, "PYTHONPATH", "PYTHONIOENCODING", "A2AL_MCP_SIMULATE_SKIP")
"""What a simulated process hands to the servers the mcp stdio client spawns."""
DARWIN_SUN_PATH = 104
SKIP_ENV = "A2AL_MCP_SIMULATE_SKIP"
"""Debugging aid: a comma-separated list of parts not to simulate (only ``signals`` so far),
to tell which part of the simulation a failure comes from."""
ACTIVE_MARK = "_a2al_simulated_os"
"""``sys`` attribute set once :func:`activate` has run (what the self-tests check)."""


def requested() -> str | None:
    name = os.environ.get(ENV, "")
    if not name:
        return None
    if name not in SYSTEMS:
        raise RuntimeError(f"{ENV}={name!r}: the simulation knows {', '.join(SYSTEMS)}")
    return name


def activate(name: str) -> None:
    """Simulate ``name`` in this process (idempotent)."""
    if getattr(sys, ACTIVE_MARK, None) == name:
        return
    if name == "win32":
        _no_fcntl_but_msvcrt()
        _windows_sockets()
        _windows_loops()
        _windows_directories()
        _cp1252_output()
    elif name == "darwin":
        _darwin_unix_paths()
    else:
        raise ValueError(name)
    _pass_through_mcp_stdio()
    setattr(sys, ACTIVE_MARK, name)


# ---------------------------------------------------------------------------- win32: locks


def fake_msvcrt() -> types.ModuleType:
    """A ``msvcrt`` module with ``locking`` and its ``LK_*`` modes, over this process's flock:
    Windows' ``_locking`` of ``nbytes`` from the current position becomes a lock of the whole
    file (per open file, as ``LockFile`` is per handle); a refused non-blocking lock raises
    ``PermissionError`` (EACCES), as there."""
    import fcntl

    flock, lock_ex, lock_nb, lock_un = fcntl.flock, fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN
    msvcrt = types.ModuleType("msvcrt", "simulated msvcrt (tests/simos): locking() only")
    lk_unlck, lk_lock, lk_nblck, lk_rlck, lk_nbrlck = 0, 1, 2, 3, 4

    def locking(fd: int, mode: int, nbytes: int) -> None:
        if nbytes <= 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        if mode == lk_unlck:
            flock(fd, lock_un)
            return
        try:
            flock(fd, lock_ex | (lock_nb if mode in (lk_nblck, lk_nbrlck) else 0))
        except BlockingIOError:
            raise PermissionError(errno.EACCES, "Permission denied") from None

    msvcrt.locking = locking  # type: ignore[attr-defined]
    for attr, value in (("LK_UNLCK", lk_unlck), ("LK_LOCK", lk_lock), ("LK_NBLCK", lk_nblck),
                        ("LK_RLCK", lk_rlck), ("LK_NBRLCK", lk_nbrlck)):  # fmt: skip
        setattr(msvcrt, attr, value)
    return msvcrt


FCNTL_BY_NAME = ("mcp.server.stdio",)
"""Third-party modules that import fcntl when ``sys.platform != "win32"`` (which the simulation
cannot change): they get the real one while they load, as on Windows they would take their
own Windows branch instead."""


def _no_fcntl_but_msvcrt() -> None:
    import fcntl

    msvcrt = fake_msvcrt()  # captures flock before fcntl goes
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # `import fcntl` -> ImportError
    sys.modules["msvcrt"] = msvcrt

    def real_fcntl_while(load: Callable[[], None]) -> None:
        sys.modules["fcntl"] = fcntl
        try:
            load()
        finally:
            sys.modules["fcntl"] = None  # type: ignore[assignment]

    for name in FCNTL_BY_NAME:
        sys.meta_path.insert(0, _WrapImport(name, around=real_fcntl_while))


# ---------------------------------------------------------------------------- win32: sockets


def _windows_sockets() -> None:
    unix = socket.AF_UNIX
    real_socketpair = socket.socketpair

    def socketpair(
        family: int | None = None, type: int = socket.SOCK_STREAM, proto: int = 0
    ) -> tuple[socket.socket, socket.socket]:
        return real_socketpair(unix if family is None else family, type, proto)

    socket.socketpair = socketpair  # type: ignore[assignment]

    def ioctl(self: socket.socket, control: int, option: object) -> None:
        """Windows sockets have ``ioctl`` (WSAIoctl for three codes; none we could use)."""
        raise ValueError(f"invalid ioctl command {control}")

    socket.socket.ioctl = ioctl  # type: ignore[attr-defined]
    for name in ("AF_UNIX", "CMSG_SPACE", "CMSG_LEN", "UDP_SEGMENT", "UDP_GRO"):
        if hasattr(socket, name):
            delattr(socket, name)


# ---------------------------------------------------------------------------- win32: loops


def _from_asyncio() -> bool:
    """Whether the caller of the caller is asyncio itself (the loop's own internals)."""
    module = sys._getframe(2).f_globals.get("__name__", "")
    return isinstance(module, str) and module.startswith("asyncio.")


class ProactorLikeEventLoop(asyncio.SelectorEventLoop):
    """A loop without ``add_reader`` & co and without signal handlers, as Windows' Proactor."""

    def add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:
        if not _from_asyncio():
            raise NotImplementedError("add_reader: no such thing on a Proactor loop")
        super().add_reader(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        if not _from_asyncio():
            raise NotImplementedError("remove_reader: no such thing on a Proactor loop")
        return super().remove_reader(fd)

    def add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:
        if not _from_asyncio():
            raise NotImplementedError("add_writer: no such thing on a Proactor loop")
        super().add_writer(fd, callback, *args)

    def remove_writer(self, fd: Any) -> bool:
        if not _from_asyncio():
            raise NotImplementedError("remove_writer: no such thing on a Proactor loop")
        return super().remove_writer(fd)

    signals = True
    """Whether signal handlers are refused (``A2AL_MCP_SIMULATE_SKIP=signals`` keeps them)."""

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        if self.signals and not _from_asyncio():
            raise NotImplementedError("add_signal_handler: not on Windows")
        super().add_signal_handler(sig, callback, *args)

    def remove_signal_handler(self, sig: int) -> bool:
        if self.signals and not _from_asyncio():
            raise NotImplementedError("remove_signal_handler: not on Windows")
        return super().remove_signal_handler(sig)


class ProactorLikePolicy(asyncio.DefaultEventLoopPolicy):
    _loop_factory = ProactorLikeEventLoop  # type: ignore[assignment]


def _windows_loops() -> None:
    if "signals" in os.environ.get(SKIP_ENV, "").split(","):
        ProactorLikeEventLoop.signals = False
    asyncio.set_event_loop_policy(ProactorLikePolicy())


# ---------------------------------------------------------------------------- win32: files


def _windows_directories() -> None:
    real_open = os.open

    def open_no_directories(path: Any, flags: int, mode: int = 0o777, *,
                            dir_fd: int | None = None) -> int:  # fmt: skip
        if dir_fd is None and os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    os.open = open_no_directories
    shutil = sys.modules.get("shutil")  # imported later, it sees os.open lacks dir_fd support
    if shutil is not None:
        shutil._use_fd_functions = False  # type: ignore[attr-defined]


def _cp1252_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        reconfigure = getattr(stream, "reconfigure", None)
        if encoding and encoding.lower() != "cp1252" and reconfigure is not None:
            reconfigure(encoding="cp1252")
    os.environ.setdefault("PYTHONIOENCODING", "cp1252")


# ---------------------------------------------------------------------------- darwin


def _darwin_unix_paths() -> None:
    cls = socket.socket
    real_bind, real_connect, real_connect_ex = cls.bind, cls.connect, cls.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family == socket.AF_UNIX and isinstance(address, (str, bytes, os.PathLike)):
            raw = os.fsencode(address)
            if raw and raw[0] != 0 and len(raw) > DARWIN_SUN_PATH:
                raise OSError("AF_UNIX path too long")

    def bind(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_bind(self, address)

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    cls.bind = bind  # type: ignore[method-assign]
    cls.connect = connect  # type: ignore[method-assign]
    cls.connect_ex = connect_ex  # type: ignore[method-assign]


# ---------------------------------------------------------------------------- subprocesses


class _WrapImport(importlib.abc.MetaPathFinder):
    """Loads ``fullname`` through ``around(load)`` and then runs ``after(module)``."""

    def __init__(
        self,
        fullname: str,
        *,
        around: Callable[[Callable[[], None]], None] | None = None,
        after: Callable[[types.ModuleType], None] | None = None,
    ) -> None:
        self._fullname = fullname
        self._around = around
        self._after = after

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self._fullname:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module
        around, after = self._around, self._after

        def exec_module(module: types.ModuleType) -> None:
            if around is None:
                real_exec(module)
            else:
                around(lambda: real_exec(module))
            if after is not None:
                after(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _pass_through_mcp_stdio() -> None:
    """The mcp stdio client gives the servers it spawns only a few variables (HOME, LOGNAME,
    PATH, SHELL, TERM, USER; on Windows APPDATA, PATH, TEMP, USERPROFILE and a few more)
    unless told others: add the simulation's own, so those servers are simulated too."""

    def patch(module: types.ModuleType) -> None:
        inherited = getattr(module, "DEFAULT_INHERITED_ENV_VARS", None)
        if isinstance(inherited, list):
            inherited.extend(name for name in PASSED_ON if name not in inherited)

    if "mcp.client.stdio" in sys.modules:
        patch(sys.modules["mcp.client.stdio"])
    else:
        sys.meta_path.insert(0, _WrapImport("mcp.client.stdio", after=patch))
