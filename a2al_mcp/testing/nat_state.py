"""The testbed's record of every process it started, and stopping them by that record.

Each testbed run owns a directory ``<base>/run-<owner pid>-<owner start>-<n>`` with a ``pids``
file (``pid start-time label`` per line, appended as processes start).  A PID is only ever
signalled when its start time still matches the record, so a reused PID is never hit.  A run
whose owner process is gone (a crashed test run) is cleaned up by the next testbed that starts:
its recorded processes are stopped, which also destroys its namespaces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from a2al_mcp._clock import SystemClock

from .nat_netns import proc_start_time

__all__ = ["DEFAULT_BASE", "ProcessRecord", "RunState", "clean_stale_runs", "stop_processes"]

log = logging.getLogger(__name__)

DEFAULT_BASE: Final = Path(tempfile.gettempdir()) / "a2al-mcp-nat-testbed"
_RUN_RE: Final = re.compile(r"run-(\d+)-(\d+)-(\d+)")
_CLOCK: Final = SystemClock()
_counter_lock = threading.Lock()
_counter = [0]


@dataclass(frozen=True)
class ProcessRecord:
    """One process started by a testbed."""

    pid: int
    start: int
    label: str

    @property
    def alive(self) -> bool:
        """True while the recorded process (same PID *and* start time) still exists."""
        return proc_start_time(self.pid) == self.start


def _signal(record: ProcessRecord, sig: signal.Signals) -> None:
    if record.alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, sig)


def stop_processes(records: Iterable[ProcessRecord], *, grace: float = 5.0) -> list[str]:
    """SIGTERM every live record, wait up to ``grace`` s, SIGKILL the rest; wait until gone.

    Returns the labels of processes that needed SIGKILL.
    """
    records = [r for r in records if r.alive]
    for record in records:
        _signal(record, signal.SIGTERM)
    deadline = _CLOCK.monotonic() + grace
    while any(r.alive for r in records) and _CLOCK.monotonic() < deadline:
        time.sleep(0.02)
    killed = []
    for record in records:
        if record.alive:
            killed.append(record.label)
            _signal(record, signal.SIGKILL)
    deadline = _CLOCK.monotonic() + grace
    while any(r.alive for r in records) and _CLOCK.monotonic() < deadline:
        time.sleep(0.02)  # zombies of our own children are reaped by their Popen objects
    return killed


class RunState:
    """The state directory of one testbed run and its process record."""

    def __init__(self, base: Path = DEFAULT_BASE) -> None:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = os.getpid()
        with _counter_lock:
            _counter[0] += 1
            n = _counter[0]
        self.dir = base / f"run-{owner}-{proc_start_time(owner)}-{n}"
        self.dir.mkdir(mode=0o700)
        self._pids = self.dir / "pids"
        self._lock = threading.Lock()

    def record(self, pid: int, label: str) -> ProcessRecord:
        """Append a started process to the record (before anything can fail)."""
        start = proc_start_time(pid)
        rec = ProcessRecord(pid, start if start is not None else -1, label)
        with self._lock, open(self._pids, "a", encoding="utf-8") as fh:
            fh.write(f"{rec.pid} {rec.start} {rec.label}\n")
        return rec

    def records(self) -> list[ProcessRecord]:
        """Every process recorded so far, in start order."""
        return read_records(self._pids)

    def remove(self) -> None:
        """Delete the state directory."""
        shutil.rmtree(self.dir, ignore_errors=True)


def read_records(path: Path) -> list[ProcessRecord]:
    """The records of a ``pids`` file (missing file: none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        pid, start, label = [*line.split(" ", 2), "", ""][:3]
        if pid.isdigit() and start.lstrip("-").isdigit():
            out.append(ProcessRecord(int(pid), int(start), label))
    return out


def clean_stale_runs(base: Path = DEFAULT_BASE) -> list[str]:
    """Stop the processes of every run whose owner is gone and remove its directory.

    Returns the labels of the processes stopped.  Runs of live owners (another testbed in
    another process, or this one) are left alone.
    """
    stopped: list[str] = []
    if not base.is_dir():
        return stopped
    for run in sorted(base.iterdir()):
        match = _RUN_RE.fullmatch(run.name)
        if match is None:
            continue
        owner, owner_start = int(match.group(1)), int(match.group(2))
        if proc_start_time(owner) == owner_start:
            continue
        records = [r for r in read_records(run / "pids") if r.alive]
        if records:
            log.warning("stopping %d leftover testbed processes of %s", len(records), run.name)
            stop_processes(reversed(records), grace=2.0)
            stopped.extend(r.label for r in records)
        shutil.rmtree(run, ignore_errors=True)
    return stopped
