"""The simulated-OS self-tests: which system this run simulates (``.ci/simulate-os``)."""

from __future__ import annotations

import os

import pytest

from tests.simos.a2al_simos import ENV, SYSTEMS


@pytest.fixture
def simulated() -> str:
    """The system this process simulates; the test is skipped in a normal run."""
    name = os.environ.get(ENV, "")
    if not name:
        pytest.skip(f"not a simulated run ({ENV} unset; .ci/simulate-os sets it)")
    assert name in SYSTEMS, f"{ENV}={name!r}"
    return name
