"""The facade: exactly the public names, and `import a2al_mcp` stays light."""

from __future__ import annotations

import subprocess
import sys

import a2al_mcp


def test_all_is_sorted_and_complete() -> None:
    assert a2al_mcp.__all__ == sorted(a2al_mcp.__all__)
    import types

    public = {
        n
        for n in dir(a2al_mcp)
        if not n.startswith("_") and not isinstance(getattr(a2al_mcp, n), types.ModuleType)
    }
    assert set(a2al_mcp.__all__) == public | {"__version__"}


def test_import_does_not_load_the_mcp_sdk() -> None:
    code = "import sys, a2al_mcp; print('mcp' in sys.modules, 'anyio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_whole_error_tree_is_exported() -> None:
    from a2al_mcp import errors

    tree = {
        name
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, errors.A2ALError)
    }
    assert tree <= set(a2al_mcp.__all__)
    assert tree == set(errors.__all__)
    assert all(getattr(a2al_mcp, name) is getattr(errors, name) for name in tree)


def test_the_stdio_proxy_loads_no_crypto_no_network_stack_and_no_sdk() -> None:
    """Issue 16's weight: ``serve --stdio`` is a relay; it imports the CLI and the hub's
    stdlib modules, and through the facade nothing heavier than the config."""
    code = (
        "import sys, a2al_mcp.cli, a2al_mcp.cli.serve, a2al_mcp.hub.proxy\n"
        "heavy = ('cryptography', 'cbor2', 'anyio', 'pydantic', 'mcp', 'aioquic', 'qh3')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_node_loads_the_quic_stacks_with_its_first_connection() -> None:
    """A process that only uses the DHT (a CLI lookup, a DHT-only service) does not load the
    QUIC stacks: importing the node loads neither aioquic's TLS, qh3, nor our modules over
    them (the cold-start regression of 60d6529: ~150 ms and ~7 MiB at every start)."""
    code = (
        "import sys, a2al_mcp.node\n"
        "heavy = ('aioquic.tls', 'qh3', 'a2al_mcp.transport.tls', 'a2al_mcp.transport.tls_qh3',"
        " 'a2al_mcp.transport.flow', 'OpenSSL')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
