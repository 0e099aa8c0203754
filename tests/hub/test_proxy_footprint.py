"""What the stdio proxy process loads (issue 16: each proxy ≤ 20 MB idle RSS). The proxy
relays bytes: it needs no event-loop library, no crypto, no models, and not OpenSSL's
``_hashlib``, which ``secrets``/``hmac``/``hashlib`` would pull in (~5.6 MiB of RSS)."""

from __future__ import annotations

import json
import subprocess
import sys

# the modules `a2al-mcp serve --stdio` imports on its way to StdioProxy.run (cli/serve.py)
PROXY_PATH = """
import json, sys
import a2al_mcp.cli
import a2al_mcp.cli.serve
import a2al_mcp.hub.launcher
import a2al_mcp.hub.proxy
from a2al_mcp.config import load_config
load_config(env={})
print(json.dumps(sorted(sys.modules)))
"""

NOT_LOADED = {
    "_hashlib", "hashlib", "hmac", "secrets", "ssl",  # OpenSSL
    "anyio", "asyncio", "pydantic", "cryptography", "cbor2", "mcp", "aioquic", "qh3",
}  # fmt: skip


def _modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_proxy_path_loads_no_openssl_and_no_heavy_library() -> None:
    loaded = _modules(PROXY_PATH)
    assert "a2al_mcp.hub.proxy" in loaded
    # what an empty interpreter of this environment loads is not the proxy's doing (the
    # simulated-OS runs of .ci/run bring a sitecustomize that imports asyncio)
    baseline = _modules("import json, sys\nprint(json.dumps(sorted(sys.modules)))")
    extra = NOT_LOADED & (loaded - baseline)
    assert not extra, sorted(extra)
