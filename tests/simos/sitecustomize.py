"""Python imports this at start-up when ``tests/simos`` is on ``PYTHONPATH`` (``.ci/simulate-os``
puts it there): with ``A2AL_MCP_SIMULATE_OS=win32|darwin`` set, the process simulates that
system before anything else is imported (:mod:`a2al_simos`). Without the variable it does
nothing; with an unknown value it stops the process, so a typo cannot pass as a simulation.
"""

import os

if os.environ.get("A2AL_MCP_SIMULATE_OS"):
    import a2al_simos

    try:
        a2al_simos.activate(a2al_simos.requested() or "")
    except Exception as exc:  # site.py would print it and go on unsimulated: stop instead
        raise SystemExit(f"tests/simos/sitecustomize: {exc}") from exc
