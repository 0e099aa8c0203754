"""Skip a test whose environment is missing, or fail it when CI says it must run.

Interop (``A2AL_MCP_REQUIRE_INTEROP``) and the NAT testbed (``A2AL_MCP_REQUIRE_NAT``) need
things a developer's machine may lack; CI sets the variable to 1 so their coverage cannot
silently vanish.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def skip_or_fail(require_env: str, what: str, reason: str, how_to_run: str) -> NoReturn:
    """Skip the requesting test, or fail it when ``require_env`` is ``1``."""
    message = f"{reason}\n{how_to_run}"
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{require_env}=1 but {what} cannot run: {message}", pytrace=False)
    pytest.skip(message)
