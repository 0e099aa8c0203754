"""The documentation tells the truth: generated pages are current, snippets run.

- docs/errors.md and docs/configuration.md equal what docs/gen_reference.py renders now
  (run ``python docs/gen_reference.py`` after changing errors.py or config.py);
- every error code is unique;
- the TOML layout in docs/configuration.md loads to the default configuration;
- every ``python`` block of every page runs (blocks of one page share a namespace, in
  order), and every ``console`` block that runs ``a2al-mcp`` prints what it shows.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

from a2al_mcp import NodeConfig, errors, load_config
from a2al_mcp.cli import main as cli_main
from a2al_mcp.errors import ExtraMissing

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_reference", module)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.S | re.M)


def _page_id(path: Path) -> str:
    return str(path.relative_to(DOCS))


# -- generated reference pages ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(gen.OUTPUTS))
def test_generated_page_is_current(name: str) -> None:
    path = DOCS / name
    assert path.exists(), f"docs/{name} is missing: run python docs/gen_reference.py"
    assert path.read_text(encoding="utf-8") == gen.OUTPUTS[name](), (
        f"docs/{name} is stale: run python docs/gen_reference.py"
    )


def test_render_functions_are_deterministic() -> None:
    assert gen.render_errors() == gen.render_errors()
    assert gen.render_configuration() == gen.render_configuration()


def test_check_mode_passes_on_the_committed_pages() -> None:
    assert gen.main(["--check"]) == 0


def test_every_error_code_is_unique() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes), sorted(c for c in codes if codes.count(c) > 1)


def test_every_error_class_is_on_the_errors_page() -> None:
    page = (DOCS / "errors.md").read_text(encoding="utf-8")
    for name in errors.__all__:
        assert f"| `{name}` | `{getattr(errors, name).code}` |" in page


def test_toml_layout_loads_to_the_defaults(tmp_path: Path) -> None:
    (toml,) = _blocks((DOCS / "configuration.md").read_text(encoding="utf-8"), "toml")
    path = tmp_path / "a2al-mcp.toml"
    path.write_text(toml, encoding="utf-8")
    assert load_config(path, env={}) == NodeConfig()


# -- hand-written pages ------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_python_snippets_run(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, code in enumerate(_blocks(page.read_text(encoding="utf-8"), "python")):
        try:
            exec(compile(code, f"{_page_id(page)}[python block {i}]", "exec"), namespace)
        except ExtraMissing as exc:  # pragma: no cover - the test extra installs coincurve
            pytest.skip(f"optional dependency missing: {exc}")
    capsys.readouterr()


def _cli_examples() -> list[tuple[str, list[str], str]]:
    out = []
    for page in PAGES:
        for block in _blocks(page.read_text(encoding="utf-8"), "console"):
            command, _, output = block.partition("\n")
            if command.startswith("$ a2al-mcp "):
                out.append((_page_id(page), shlex.split(command)[2:], output))
    return out


@pytest.mark.parametrize(("page", "argv", "expected"), _cli_examples())
def test_cli_examples_print_what_they_show(
    page: str, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(argv) == 0
    assert capsys.readouterr().out == expected, page


def _anchors(page: Path) -> set[str]:
    """GitHub-style heading anchors of a page."""
    text = re.sub(r"^```.*?^```$", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_between_pages_resolve() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([^)#:]*\.md)?(?:#([^)]*))?\)", text):
            dest = (page.parent / target).resolve() if target else page
            assert dest.exists(), f"{_page_id(page)} links to missing {target}"
            if anchor:
                assert anchor in _anchors(dest), f"{_page_id(page)} → {target}#{anchor}"
