"""The two halves of running: runner/ makes runs, results/ reads finished ones. results/ may use the run
folder's file layout (runner.layout) and nothing else of runner/; runner/ uses nothing of results/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function; `from a import b` counts as a.b too,
    since b may be a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_imports(package: str) -> dict[str, set[str]]:
    return {str(path.relative_to(ROOT)): imported_modules(path) for path in sorted((ROOT / package).rglob("*.py"))}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_imports_are_parsed_everywhere_in_a_file(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import a.b\nfrom c import d\n\ndef f():\n    from e.f import g\n", encoding="utf-8")
    assert imported_modules(sample) == {"a.b", "c", "c.d", "e.f", "e.f.g"}


def test_runner_imports_nothing_from_results() -> None:
    crossing = {f: sorted(m for m in mods if _within(m, "results")) for f, mods in package_imports("runner").items()}
    assert {f: m for f, m in crossing.items() if m} == {}


def test_results_imports_only_the_layout_from_runner() -> None:
    crossing = {f: sorted(m for m in mods if _within(m, "runner") and m not in ("runner", "runner.layout")
                          and not _within(m, "runner.layout"))
                for f, mods in package_imports("results").items()}
    assert {f: m for f, m in crossing.items() if m} == {}
    assert any("runner.layout" in mods for mods in package_imports("results").values())  # the walk saw them
