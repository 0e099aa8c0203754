"""Shared settings of the fuzz tests in ``tests/fuzz`` (hostile-input property tests).

Every test in this directory takes its hypothesis settings from :func:`fuzz_settings`, so one
environment variable scales the whole suite:

``A2AL_MCP_FUZZ_EXAMPLES``
    examples per test (default 200: the suite stays a few seconds per test in CI).

The by-hand long mode is that variable set high, for example::

    A2AL_MCP_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -p no:cacheprovider tests/fuzz

Failing examples are printed with ``@reproduce_failure`` blobs; ``--hypothesis-seed=N`` replays
a run. Hypothesis keeps no example database here (``database=None``), so runs leave no files.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = ["EXAMPLES", "cbor_scalars", "cbor_values", "fuzz_settings"]

DEFAULT_EXAMPLES = 200


def _examples() -> int:
    raw = os.environ.get("A2AL_MCP_FUZZ_EXAMPLES", "")
    try:
        n = int(raw)
    except ValueError:
        return DEFAULT_EXAMPLES
    return max(1, n)


EXAMPLES = _examples()
"""Examples per test in this run."""


def fuzz_settings(scale: float = 1.0, **overrides: Any) -> settings:
    """Hypothesis settings for one fuzz test: ``EXAMPLES * scale`` examples (at least 10), no
    deadline (CI machines are slow and shared), no example database, no too-slow check."""
    kwargs: dict[str, Any] = {
        "max_examples": max(10, int(EXAMPLES * scale)),
        "deadline": None,
        "database": None,
        # the default run (CI) is the same every time; the long mode explores new inputs
        "derandomize": "A2AL_MCP_FUZZ_EXAMPLES" not in os.environ,
        "suppress_health_check": [
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    }
    kwargs.update(overrides)
    return settings(**kwargs)


# --------------------------------------------------------------------- shared strategies

cbor_scalars: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.floats()
)
"""Every CBOR scalar a peer may send (no tags: they are refused)."""


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(
        st.integers(0, 10) | st.text(max_size=3), inner, max_size=6
    )


def cbor_values(scalars: st.SearchStrategy[Any] = cbor_scalars) -> st.SearchStrategy[Any]:
    """Nested CBOR values (lists and maps) over ``scalars``."""
    return st.recursive(scalars, _containers, max_leaves=25)
