"""Network namespaces held by processes: create, enter (per thread), run commands in, prove sealed.

A namespace here is owned by a *holder*: a ``sleep infinity`` started through ``unshare``.  It
lives exactly as long as that process; killing the holder (and every process started in the
namespace) destroys the namespace together with its veths and bridges.  Nothing is mounted on
``/run/netns``, so no trace is left in the root mount namespace.

- :func:`spawn_holder` starts a holder (``unshare -n`` or ``-n -m --propagation private``);
- :func:`ns_argv` prefixes a command with ``nsenter`` into a holder's namespaces;
- :func:`enter_netns` switches the *calling thread* into a holder's network namespace
  (``setns(2)``): sockets created meanwhile stay in that namespace for their whole life;
- :func:`netns_sealed_problems` runs :func:`~.a2ald_sealed.sealed_problems` for a namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final

from a2al_mcp._clock import SystemClock

from .a2ald_errors import A2aldError
from .a2ald_sealed import sealed_problems

__all__ = [
    "NatTestbedError",
    "NetnsError",
    "enter_netns",
    "netns_id",
    "netns_net_files",
    "netns_sealed_problems",
    "ns_argv",
    "parent_death_hook",
    "proc_net_interfaces",
    "proc_start_time",
    "spawn_holder",
]

_CLONE_NEWNET: Final = 0x40000000
_PR_SET_PDEATHSIG: Final = 1
_HOLDER_ARGV: Final = ("sleep", "infinity")
_CLOCK: Final = SystemClock()
# field 22 of /proc/PID/stat (1-based) is the start time; the fields after ") " start at 3
_STAT_STARTTIME_INDEX: Final = 22 - 3


class NetnsError(A2aldError):
    """A namespace could not be created, entered or checked."""


class NatTestbedError(NetnsError):
    """The NAT testbed could not be built, or a command in it failed."""


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (None when gone or a zombie).

    Recorded with every PID so that a reused PID is never mistaken for ours.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(") ")[2].split()
    if fields[:1] == ["Z"]:
        return None
    try:
        return int(fields[_STAT_STARTTIME_INDEX])
    except (IndexError, ValueError):
        return None


def netns_id(pid: int | str = "thread-self") -> str:
    """The network namespace identity of a process (``net:[inode]``)."""
    return os.readlink(f"/proc/{pid}/ns/net")


def parent_death_hook() -> Callable[[], None] | None:
    """``preexec_fn`` that SIGKILLs the child when the creating thread dies (main thread only).

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked dies, so it is only set up from
    the main thread; elsewhere teardown by recorded PID is the only cleanup.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def ns_argv(
    net_pid: int,
    argv: Sequence[str],
    *,
    mount_pid: int | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> list[str]:
    """``argv`` run through ``nsenter`` in the network namespace of ``net_pid``.

    With ``mount_pid`` the command also enters that process's mount namespace (the testbed's
    private one, where ``/etc/resolv.conf`` is the testbed's) and starts in ``cwd`` (default:
    the caller's working directory; ``nsenter`` would otherwise start it in ``/``).
    ``nsenter`` execs ``argv``: the PID of the started process is the PID of the command.
    """
    out = ["nsenter", f"--net=/proc/{net_pid}/ns/net"]
    if mount_pid is not None:
        workdir = os.path.abspath(cwd if cwd is not None else os.getcwd())
        out += [f"--mount=/proc/{mount_pid}/ns/mnt", f"--wd={workdir}"]
    return [*out, "--", *argv]


def spawn_holder(
    *,
    via: int | None = None,
    mount: bool = False,
    setup: str = "",
    timeout: float = 5.0,
) -> subprocess.Popen[bytes]:
    """Start a namespace holder and return it once its namespace exists and is set up.

    ``via``: the PID whose network and mount namespaces the holder is started from (the
    testbed's outer namespace); ``mount``: also give the holder a private mount namespace;
    ``setup``: shell commands (``sh -e``) run in the new namespace before the holder sleeps.
    """
    unshare = ["unshare", "--net"]
    if mount:
        unshare += ["--mount", "--propagation", "private"]
    argv = [*unshare, "--", "sh", "-ec", f"{setup}\nexec {' '.join(_HOLDER_ARGV)}"]
    if via is not None:
        argv = ns_argv(via, argv, mount_pid=via)
    parent_ns = netns_id(via) if via is not None else netns_id()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        close_fds=True,
        start_new_session=True,
        preexec_fn=parent_death_hook(),
    )
    deadline = _CLOCK.monotonic() + timeout
    while True:
        # exec of `sleep` happens only after unshare(2) succeeded: then the namespace is new
        try:
            exe = os.readlink(f"/proc/{proc.pid}/exe")
            ns = netns_id(proc.pid)
        except OSError:
            exe, ns = "", parent_ns
        if os.path.basename(exe) == _HOLDER_ARGV[0] and ns != parent_ns:
            if proc.stderr is not None:
                proc.stderr.close()
            return proc
        code = proc.poll()
        if code is not None or _CLOCK.monotonic() > deadline:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if code is None:
                proc.kill()
                proc.wait()
            raise NetnsError(f"namespace holder {argv} failed (status {code}): {err.strip()}")
        time.sleep(0.005)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def enter_netns(pid: int) -> Iterator[None]:
    """Run the block with the calling thread in the network namespace of ``pid``.

    Only this thread moves (``setns(2)`` is per thread), so other threads are unaffected and
    several threads may each be in a different namespace.  Sockets created inside the block
    stay in that namespace after it ends.  Do not ``await`` inside the block: other tasks of
    the event loop would create their sockets there too.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        except OSError as exc:
            raise NetnsError(f"namespace of pid {pid} is gone: {exc}") from exc
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def _thread_net_file(name: str) -> str | None:
    """A ``/proc/thread-self/net`` file (``/proc/net`` follows the main thread's namespace)."""
    try:
        with open(f"/proc/thread-self/net/{name}", encoding="ascii", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def netns_net_files(pids: Mapping[str, int], files: Sequence[str]) -> dict[str, dict[str, str]]:
    """``/proc/net`` files as seen in each namespace: ``{name: {file: text}}`` (read in a thread).

    A missing file reads as "".
    """
    out: dict[str, dict[str, str]] = {}
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for name, pid in pids.items():
                with enter_netns(pid):
                    out[name] = {f: _thread_net_file(f) or "" for f in files}
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=read, name="netns-files")
    worker.start()
    worker.join()
    if failure:
        raise NetnsError("cannot read the namespaces' /proc/net files") from failure[0]
    return out


def proc_net_interfaces(proc_net_dev: str) -> set[str]:
    """Interface names listed in a ``/proc/net/dev`` text."""
    names = set()
    for line in proc_net_dev.splitlines()[2:]:
        name, sep, _ = line.partition(":")
        if sep and name.strip():
            names.add(name.strip())
    return names


def netns_sealed_problems(pid: int) -> list[str]:
    """Every reason why the network namespace of ``pid`` is not sealed (empty: sealed).

    Runs the checks of :func:`~.a2ald_sealed.sealed_problems` from a thread inside that
    namespace, and adds that it must be neither the root namespace nor the caller's.
    """
    problems: list[str] = []
    ns = netns_id(pid)
    with contextlib.suppress(OSError):  # pid 1 may be out of reach (containers): then the
        if ns == netns_id(1):  # checks below still prove the namespace has no way out
            problems.append(f"namespace {ns} of pid {pid} is the root network namespace")
    if ns == netns_id():
        problems.append(f"namespace {ns} of pid {pid} is the caller's own")
    result: list[list[str]] = []
    failure: list[BaseException] = []

    def check() -> None:
        try:
            with enter_netns(pid):
                dev = _thread_net_file("dev")
                route = _thread_net_file("route")
                route6 = _thread_net_file("ipv6_route")
                result.append(
                    sealed_problems(
                        proc_net_dev=dev if dev is not None else "",
                        proc_net_route=route if route is not None else "",
                        proc_net_ipv6_route=route6,
                    )
                )
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=check, name=f"seal-check-{pid}")
    worker.start()
    worker.join()
    if failure:
        raise NetnsError(f"cannot check the namespace of pid {pid}") from failure[0]
    return problems + result[0]
