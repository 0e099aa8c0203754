"""The bucket-refresh target: a random NodeID in exactly the bucket being refreshed."""

from __future__ import annotations

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.dht.maintenance import random_id_in_bucket
from a2al_mcp.dht.routing import RoutingTable
from a2al_mcp.identity import Identity


@pytest.mark.parametrize("bucket", [0, 1, 7, 128, 254, 255])
def test_random_id_in_bucket_shares_exactly_that_many_leading_bits(bucket: int) -> None:
    own = Identity.generate(SeededRng(5)).aid.node_id
    table = RoutingTable(own)
    rng = SeededRng(9)
    targets = {random_id_in_bucket(own, bucket, rng) for _ in range(8)}
    assert {table.bucket_index(t) for t in targets} == {bucket}
    if bucket <= 128:  # free bits enough: the draws differ
        assert len(targets) == len({int(t) for t in targets}) == 8
