"""The adapters are installed as ``a2al_mcp.adapters`` and use only the public facade."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_directory_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])  # fmt: skip
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "a2al_mcp").rglob(
        "__init__.py")}  # fmt: skip
    found |= {"a2al_mcp." + ".".join(p.parent.relative_to(ROOT).parts)
              for p in (ROOT / "adapters").rglob("__init__.py")}  # fmt: skip
    assert found == listed


def _runtime_imports(tree: ast.Module) -> list[str]:
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue  # annotations only
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                out.append(sub.module)
            elif isinstance(sub, ast.Import):
                out.extend(alias.name for alias in sub.names)
    return out


def test_adapters_use_only_the_public_facade_at_run_time() -> None:
    for path in (ROOT / "adapters").rglob("*.py"):
        for module in _runtime_imports(ast.parse(path.read_text())):
            if module.startswith("a2al_mcp"):
                assert module == "a2al_mcp", f"{path.name} imports {module}"
