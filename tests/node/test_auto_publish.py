"""AutoPublisher alone, with a publisher whose stores wait for the test: a change that comes
while a publish is still waiting for its lookup starts the republish at once; the first
record waits (bounded) for a test under way; nothing spins while it waits."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from a2al_mcp import Identity, SystemRng
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.auto_publish import AutoPublisher

pytestmark = pytest.mark.anyio


class SlowPublisher:
    """The three Publisher methods AutoPublisher uses; each store waits for ``release``."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.calls: list[str] = []
        self._published: dict[Aid, int] = {}

    def published(self) -> tuple[Aid, ...]:
        return tuple(self._published)

    async def publish(self, aid: Aid) -> None:
        self._published[aid] = 1  # registered before the store, as Publisher does
        self.calls.append("publish")
        await self.release.wait()

    async def republish_endpoints(self) -> None:
        self.calls.append("republish")


async def _until(cond: object) -> None:
    with anyio.fail_after(5):
        for _ in range(500):
            if cond():  # type: ignore[operator]
                return
            await anyio.sleep(0.01)


async def test_a_change_during_a_slow_publish_is_republished_at_once() -> None:
    aid = Identity.generate(SystemRng()).aid
    pub = SlowPublisher()
    auto = AutoPublisher(pub, node_aid=aid, enabled=True, knows_address=lambda: True,  # type: ignore[arg-type]
                         joined=anyio.lowlevel.checkpoint, settle_max_s=0.0)  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(auto.run)
        await _until(lambda: pub.calls == ["publish"])
        auto.changed()  # the first store has not returned yet
        await _until(lambda: pub.calls == ["publish", "republish"])
        assert not pub.release.is_set()
        pub.release.set()
        await anyio.sleep(0.1)
        assert pub.calls == ["publish", "republish"]  # nothing more: no change since
        tg.cancel_scope.cancel()


async def test_the_first_record_waits_for_a_test_under_way_but_not_forever() -> None:
    aid = Identity.generate(SystemRng()).aid
    pub = SlowPublisher()
    pub.release.set()
    settling = [True]
    auto = AutoPublisher(pub, node_aid=aid, enabled=True,  # type: ignore[arg-type]
                         knows_address=lambda: True, joined=anyio.lowlevel.checkpoint,
                         settling=lambda: settling[0], settle_max_s=5.0)  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(auto.run)
        await anyio.sleep(0.3)
        assert pub.calls == []  # held while the test runs
        settling[0] = False
        await _until(lambda: pub.calls == ["publish"])
        tg.cancel_scope.cancel()
    never = SlowPublisher()
    never.release.set()
    held = AutoPublisher(never, node_aid=aid, enabled=True,  # type: ignore[arg-type]
                         knows_address=lambda: True, joined=anyio.lowlevel.checkpoint,
                         settling=lambda: True, settle_max_s=0.2)  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(held.run)
        await _until(lambda: never.calls == ["publish"])  # a test that never ends: 0.2 s
        tg.cancel_scope.cancel()
