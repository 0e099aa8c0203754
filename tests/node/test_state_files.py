"""The state module: every file the node keeps is written atomically, 0600 from creation, and a
corrupt or half-written one is reported with its path (issue 15)."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from a2al_mcp import NodeConfig, SystemRng, _platform
from a2al_mcp.errors import ConfigError, UsageError
from a2al_mcp.identity.local import DelegatedIdentity, Identity
from a2al_mcp.node import Node, state
from a2al_mcp.node import home as home_module
from a2al_mcp.node.home import LOCK_INFO, DataHome
from a2al_mcp.node.seeds import load_peer_cache, save_peer_cache
from tests.simos.a2al_simos import fake_msvcrt

posix_only = pytest.mark.skipif(_platform.IS_WINDOWS, reason="POSIX file modes and directories")
TEMP = ".node.key.0123456789abcdef.tmp"


def _agent(expires_at: int = 0) -> Identity:
    return DelegatedIdentity.generate(SystemRng(), issued_at=1_700_000_000,
                                      expires_at=expires_at).identity  # fmt: skip


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if state.is_temp(p))


# -- write_atomic ------------------------------------------------------------------------------


@posix_only
def test_write_atomic_creates_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        state.write_atomic(tmp_path / "f", "hello\n")
    finally:
        os.umask(old)
    assert (tmp_path / "f").read_bytes() == b"hello\n"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temp file left


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    state.write_atomic(path, b"x" * 100_000)
    state.write_atomic(path, b"short")
    assert path.read_bytes() == b"short"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


@posix_only
def test_write_atomic_order_temp_is_private_synced_then_renamed_then_dir_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data is fsync-ed in a 0600 temp file next to the target before the rename, and
    the directory is fsync-ed after it."""
    steps: list[Any] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if os.stat(tmp_path).st_ino == st.st_ino:
            steps.append("fsync dir")
        else:
            temps = [p for p in tmp_path.iterdir() if p.stat().st_ino == st.st_ino]
            assert [state.is_temp(p) for p in temps] == [True]
            steps.append(("fsync temp", temps[0].read_bytes(), st.st_mode & 0o777))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        steps.append(("replace", Path(src).parent == Path(dst).parent, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    state.write_atomic(tmp_path / "node.key", "ab\n")
    assert steps == [("fsync temp", b"ab\n", 0o600), ("replace", True, "node.key"), "fsync dir"]


def test_write_atomic_where_a_directory_cannot_be_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows cannot open a directory: the directory fsync is skipped, the write stands."""
    real_open = os.open

    def no_dirs(path: Any, flags: int, *args: Any) -> int:
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_dirs)
    state.write_atomic(tmp_path / "f", "data")
    assert (tmp_path / "f").read_text() == "data"
    assert _leftovers(tmp_path) == []


def test_write_atomic_error_names_the_path_and_leaves_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "f"
    with pytest.raises(ConfigError, match=f"cannot write {missing}") as info:
        state.write_atomic(missing, "x")
    assert isinstance(info.value.__cause__, OSError)
    # the rename fails (the target is a non-empty directory): no temp file stays behind
    target = tmp_path / "d"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"cannot write {target}"):
        state.write_atomic(target, "x")
    assert target.is_dir() and _leftovers(tmp_path) == []


def test_clean_temp_removes_only_leftovers_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keep = ["node.key", "x.tmp", ".hidden", "a.json", ".a.json.0123.tmp", "inbox.db"]
    gone = [TEMP, ".a2al1abc.json.fedcba9876543210.tmp", "peers.tmp"]
    for name in keep + gone:
        (tmp_path / name).write_text("half")
    with caplog.at_level(logging.WARNING, logger="a2al_mcp.node.state"):
        removed = state.clean_temp(tmp_path)
    assert sorted(p.name for p in removed) == sorted(gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert all(str(tmp_path / name) in logged for name in gone)
    assert state.clean_temp(tmp_path / "missing") == []


# -- the data directory: lock info and node key -------------------------------------------------


def test_data_home_lock_info_and_temp_cleanup(tmp_path: Path) -> None:
    (tmp_path / TEMP).write_text("12")  # a crash while making the node key
    (tmp_path / "lock").write_text("4242")  # what an earlier version wrote
    with DataHome(tmp_path) as home:
        assert _leftovers(tmp_path) == []
        assert (tmp_path / LOCK_INFO).read_text() == f"{os.getpid()}\n"
        assert (tmp_path / "lock").read_text() == ""
        with pytest.raises(UsageError, match=f"in use by process {os.getpid()};"):
            DataHome(tmp_path)
        made = home.identity(SystemRng()).aid
    assert not (tmp_path / LOCK_INFO).exists()  # removed on close, while still locked
    with DataHome(tmp_path) as home:
        assert home.identity(SystemRng()).aid == made


def test_data_home_locks_with_msvcrt_where_there_is_no_fcntl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows' branch: the lock file's first byte, locked through msvcrt.locking."""
    msvcrt: Any = sys.modules.get("msvcrt") or fake_msvcrt()  # the simulated one if win32
    calls: list[tuple[int, int]] = []
    real_locking = msvcrt.locking

    def locking(fd: int, mode: int, nbytes: int) -> None:
        calls.append((mode, os.lseek(fd, 0, os.SEEK_CUR)))
        real_locking(fd, mode, nbytes)

    monkeypatch.setattr(home_module, "_fcntl", None)
    fake = SimpleNamespace(locking=locking, LK_NBLCK=msvcrt.LK_NBLCK, LK_UNLCK=msvcrt.LK_UNLCK)
    monkeypatch.setattr(home_module, "_msvcrt", fake, raising=False)
    refused = pytest.raises(UsageError, match=f"in use by process {os.getpid()};")
    with DataHome(tmp_path), refused:
        DataHome(tmp_path)
    with DataHome(tmp_path):
        pass
    lock, unlock = msvcrt.LK_NBLCK, msvcrt.LK_UNLCK
    # every call at byte 0 (the file was opened for appending): lock, refused lock, unlock, ...
    assert calls == [(lock, 0), (lock, 0), (unlock, 0), (lock, 0), (unlock, 0)]


@pytest.mark.parametrize("content", ["", "12", "not hex at all\n", "00" * 31, "0" * 5000])
def test_data_home_refuses_a_corrupt_node_key(tmp_path: Path, content: str) -> None:
    (tmp_path / "node.key").write_text(content)
    with DataHome(tmp_path) as home, pytest.raises(ConfigError, match=str(tmp_path / "node.key")):
        home.identity(SystemRng())
    assert (tmp_path / "node.key").read_text() == content  # never overwritten


# -- agent keys ----------------------------------------------------------------------------------


def test_agents_round_trip_0600_and_temp_leftovers_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    agents = [_agent() for _ in range(3)]
    for a in agents:
        path = state.save_agent(folder, a)
        assert path == folder / f"{a.aid}.json"
        if sys.platform != "win32":
            assert path.stat().st_mode & 0o777 == 0o600
    half = folder / f".{agents[0].aid}.json.0123456789abcdef.tmp"
    half.write_text('{"aid": "')  # a crash in the middle of writing a fourth
    loaded = state.load_agents(folder, 1_700_000_100)
    assert {i.aid for i in loaded} == {a.aid for a in agents}
    assert all(i.key.seed == a.key.seed for i, a in zip(sorted(loaded, key=lambda i: str(i.aid)),
               sorted(agents, key=lambda a: str(a.aid)), strict=True))  # fmt: skip
    assert not half.exists()
    assert state.load_agents(tmp_path / "none", 0) == []
    with pytest.raises(UsageError):
        state.save_agent(folder, Identity.generate(SystemRng()))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content",
    ["", '{"aid": "a', "[]", '{"aid": "x"}',
     '{"aid": "x", "operational_seed_hex": "zz", "delegation_proof_hex": "00"}',
     '{"aid": "' + "a" * 70_000 + '"}'],  # over state.AGENT_FILE_MAX: not read whole
)  # fmt: skip
async def test_a_corrupt_agent_file_refuses_the_start_naming_it(
    tmp_path: Path, content: str
) -> None:
    folder = tmp_path / "agents"
    state.save_agent(folder, _agent())
    bad = folder / "a2al1corrupt.json"
    bad.write_text(content)
    with pytest.raises(ConfigError, match=str(bad)):
        state.load_agents(folder, 1_700_000_100)
    cfg = NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path)
    with pytest.raises(ConfigError, match=str(bad)):
        async with Node(cfg):
            pass
    assert bad.read_text() == content  # reported, left for the owner to look at


def test_an_agent_file_under_the_wrong_name_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    path = state.save_agent(folder, _agent())
    doc = json.loads(path.read_text())
    other = _agent()
    doc["aid"] = str(other.aid)
    path.rename(folder / f"{other.aid}.json")
    (folder / f"{other.aid}.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=f"holds the agent {path.stem}, not {other.aid}"):
        state.load_agents(folder, 1_700_000_100)


def test_an_expired_agent_is_skipped_with_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "agents"
    live, expired = _agent(), _agent(expires_at=1_700_000_050)
    state.save_agent(folder, live)
    gone = state.save_agent(folder, expired)
    with caplog.at_level(logging.WARNING, logger="a2al_mcp.node.state"):
        loaded = state.load_agents(folder, 1_800_000_000)
    assert [i.aid for i in loaded] == [live.aid]
    assert any(str(gone) in r.getMessage() and "expired" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert gone.exists()  # intact: kept


@pytest.mark.anyio
async def test_node_persists_created_agents_and_cleans_leftovers(tmp_path: Path) -> None:
    cfg = NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp_path)
    async with Node(cfg) as node:
        made = node.create_agent().identity
    (tmp_path / "agents" / f".{made.aid}.json.00000000000000ff.tmp").write_text("")
    (tmp_path / ".peers.cache.00000000000000ff.tmp").write_text("{")
    async with Node(cfg) as node:
        assert made.aid in {i.aid for i in node.identities()}
        assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "agents") == []


# -- peer cache -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '{"peers": 5}', '{"peers": ["' + "1" * 70_000 + '"]}'],
)
def test_a_bad_peer_cache_is_ignored_with_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    (tmp_path / "peers.cache").write_text(content)
    with caplog.at_level(logging.WARNING, logger="a2al_mcp.node.seeds"):
        assert load_peer_cache(tmp_path) == []
    assert any(str(tmp_path / "peers.cache") in r.getMessage() for r in caplog.records)


def test_peer_cache_write_error_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "peers.cache").mkdir()
    (tmp_path / "peers.cache" / "x").write_text("")
    with pytest.raises(ConfigError, match=str(tmp_path / "peers.cache")):
        save_peer_cache(tmp_path, ["127.0.0.1:1"])
    assert _leftovers(tmp_path) == []
