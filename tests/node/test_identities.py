"""IdentityStore alone: the local identities and the agent key files behind them.

The file format, its 0600 mode and every corrupt-file shape are tested on the state module
(tests/node/test_state_files.py); here the store's own job: what it adds, keeps and refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.errors import ConfigError, UsageError
from a2al_mcp.identity.local import DelegatedIdentity, Identity
from a2al_mcp.node.identities import IdentityStore
from a2al_mcp.testing.clock import FakeClock

PASS = "correct horse battery staple"


def _store(
    data_dir: Path | None, seed: int = 1, added: list[Identity] | None = None
) -> IdentityStore:
    return IdentityStore(Identity.generate(SeededRng(seed)), data_dir=data_dir, clock=FakeClock(),
                         rng=SeededRng(seed + 100),
                         on_added=None if added is None else added.append)  # fmt: skip


def test_the_node_identity_must_be_native() -> None:
    agent = DelegatedIdentity.generate(SeededRng(3), issued_at=1_700_000_000).identity
    with pytest.raises(UsageError, match="native"):
        IdentityStore(agent, data_dir=None, clock=FakeClock(), rng=SeededRng(4))


def test_created_agents_are_kept_and_come_back_on_reload(tmp_path: Path) -> None:
    added: list[Identity] = []
    store = _store(tmp_path, added=added)
    made = [store.create_agent().identity for _ in range(2)]
    assert added == made
    assert list(store) == [store.node.aid, *(m.aid for m in made)]
    assert store.require(made[0].aid) is made[0] and store.require(None) is store.node

    again = _store(tmp_path)
    assert len(again) == 1  # nothing read before load_agents
    again.load_agents()
    assert {i.aid for i in again.identities()} == {again.node.aid, *(m.aid for m in made)}
    assert again[made[1].aid].key.seed == made[1].key.seed


def test_without_a_data_dir_nothing_is_written(tmp_path: Path) -> None:
    store = _store(None)
    made = store.create_agent().identity
    store.load_agents()
    assert made.aid in store and list(tmp_path.iterdir()) == []


def test_a_corrupt_agent_file_refuses_the_load_naming_it(tmp_path: Path) -> None:
    _store(tmp_path).create_agent()
    bad = tmp_path / "agents" / "a2al1corrupt.json"
    bad.write_text('{"aid": "')
    store = _store(tmp_path)
    with pytest.raises(ConfigError, match=str(bad)):
        store.load_agents()


def test_an_unknown_aid_is_a_usage_error() -> None:
    other = Identity.generate(SeededRng(9)).aid
    with pytest.raises(UsageError, match="not a local identity"):
        _store(None).require(other)


@pytest.mark.anyio
async def test_export_then_import_moves_an_agent_to_another_store(tmp_path: Path) -> None:
    source = _store(None)
    agent = source.create_agent().identity
    blob = await source.export(PASS, agent.aid)
    target = _store(tmp_path, seed=2)
    back = await target.import_sealed(blob, PASS)
    assert back.aid == agent.aid and target.require(agent.aid) is back
    assert (tmp_path / "agents" / f"{agent.aid}.json").exists()


@pytest.mark.anyio
async def test_a_node_key_export_is_not_imported_as_an_agent(tmp_path: Path) -> None:
    blob = await _store(None).export(PASS)
    target = _store(tmp_path, seed=2)
    with pytest.raises(UsageError, match="only delegated agents"):
        await target.import_sealed(blob, PASS)
    assert len(target) == 1 and not (tmp_path / "agents").exists()
