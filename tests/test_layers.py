"""The code's layering (docs/layout.md): no import circle between the project's modules, and each package
imports only the packages below it. Imports inside functions count: deferring an import hides a circle, it
does not remove it. Each rule is also shown to catch a planted breach on a tree of its own."""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
NOT_LAYERED = {"tests", "benchmarks", "examples", "docs", "runs"}  # they may use anything; nothing uses them

# graphs/ holds the CLI and the graph wiring; these modules only wire nodes into graphs (what the public API and
# the CLI build runs from); every other module of graphs/ is the CLI's
WIRING = {"graphs.dialogue", "graphs.task_oriented", "graphs.toolprep", "graphs.user_agent", "graphs.reasoning",
          "graphs.optimize"}
BELOW_RUNNER = {"nodes", "backends", "verification", "environment", "state", "prompts", "metrics", "knowledge"}
# what each layer may import besides itself (docs/layout.md); a package missing here fails the test
MAY_IMPORT: dict[str, set[str]] = {
    "cli": {"dialogue_forge", "wiring", "runner", "results", "rl"} | BELOW_RUNNER,
    "dialogue_forge": {"wiring", "runner", "results", "rl"} | BELOW_RUNNER,
    "results": {"runner", "rl"} | BELOW_RUNNER,  # of runner/, only its layout (ONLY below)
    "rl": {"runner"} | BELOW_RUNNER,
    "runner": BELOW_RUNNER,
    "wiring": {"nodes", "state"},
    "nodes": {"backends", "verification", "environment", "state", "prompts", "metrics", "knowledge"},
    # the quality metrics ask a judge through the backend protocol: metrics sits above backends
    "metrics": {"backends", "knowledge", "state"},
    "backends": {"verification", "environment", "state", "prompts", "knowledge"},
    "verification": {"environment", "state"},
    "knowledge": {"environment", "state"},
    "environment": {"state", "prompts"},
    "prompts": {"state"},  # templates render state's models
    "state": set(),
}
# where a layer may reach into another package only through some of its modules
ONLY: dict[tuple[str, str], tuple[str, ...]] = {
    ("nodes", "backends"): ("backends.protocols", "backends.registry"),  # nodes never know which backend runs
    ("metrics", "backends"): ("backends.protocols",),
    ("results", "runner"): ("runner.layout",),  # results/ reads finished runs; runner/ makes them
}
# Known breaches, each with its reason; every one must still occur (a stale allowance fails too).
ALLOWED: dict[tuple[str, str], str] = {
    # MetricNode (a saved optimizer state's tree) validates its leaves against metrics.base: moving the model into
    # state/ needs metrics/ split into data and scoring, which is metrics' own restructuring.
    ("state.optimize", "metrics.tree"): "the optimizer's state holds metric trees",
}


@dataclass
class Tree:
    """The project's modules under a root, with what each one imports (of the project)."""

    root: Path
    packages: set[str]
    files: dict[str, Path] = field(default_factory=dict)  # module -> file

    @classmethod
    def read(cls, root: Path) -> "Tree":
        packages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file() and p.name not in NOT_LAYERED}
        tree = cls(root, packages)
        for package in sorted(packages):
            for path in sorted((root / package).rglob("*.py")):
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                tree.files[".".join(parts)] = path
        return tree

    def _resolved(self, name: str) -> str | None:
        """The project module an imported name stands for (a name from a module: that module)."""
        while name and name not in self.files:
            name = name.rpartition(".")[0]
        return name or None

    def imports(self, module: str) -> set[str]:
        """The project modules `module` imports, at its top or inside a function."""
        path = self.files[module]
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: set[str] = set()
        for node in _executed(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from a import b`: the module a.b where there is one, else a (b is a name of it)
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in self.files else base
                         for alias in node.names]
            for name in names:
                target = self._resolved(name)
                if target is not None and target != module:
                    found.add(target)
        return found

    def graph(self) -> dict[str, set[str]]:
        """Who imports whom. Importing a.b.c runs a and a.b first, so those count too, except a module's own
        packages: they are already being imported when it runs (a package's __init__ may import its modules)."""
        edges: dict[str, set[str]] = {}
        for module in self.files:
            own = _ancestors(module)
            targets = set()
            for target in self.imports(module):
                targets.add(target)
                targets.update(p for p in _ancestors(target) if p in self.files and p not in own)
            edges[module] = targets - {module}
        return edges


def _executed(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that may run, functions' bodies included; `if TYPE_CHECKING:` blocks never run (annotations
    only), so an import there makes no circle."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    if top == "graphs":
        return "wiring" if module in WIRING else "cli"
    return top


def circles(tree: Tree) -> list[list[str]]:
    """Every group of modules that import each other, round and round (Tarjan's strongly connected components)."""
    graph = tree.graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative: a deep chain of imports must not hit the recursion limit
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def forbidden_imports(tree: Tree, allowed: dict[tuple[str, str], str] | None = None) -> list[str]:
    """Each import that goes against the table: 'importer -> imported (why)'."""
    allowed = ALLOWED if allowed is None else allowed
    out = []
    for module in sorted(tree.files):
        source = layer_of(module)
        for target in sorted(tree.imports(module)):
            dest = layer_of(target)
            if dest == source or (module, target) in allowed:
                continue
            if source not in MAY_IMPORT:
                out.append(f"{module} -> {target} (the package {source} has no place in the layering table)")
            elif dest not in MAY_IMPORT[source]:
                out.append(f"{module} -> {target} ({source} may not import {dest})")
            elif (source, target.split(".")[0]) in ONLY and \
                    not any(target == m or target.startswith(m + ".") for m in ONLY[(source, target.split(".")[0])]):
                out.append(f"{module} -> {target} ({source} reaches {dest} only through "
                           f"{', '.join(ONLY[(source, target.split('.')[0])])})")
    return out


# -- the real tree -------------------------------------------------------------------------------------

def test_no_module_imports_itself_round_a_circle() -> None:
    assert circles(Tree.read(ROOT)) == []


def test_every_import_goes_down_the_layers() -> None:
    tree = Tree.read(ROOT)
    assert tree.packages <= set(MAY_IMPORT) - {"cli", "wiring"} | {"graphs"}, "place every package in the table"
    assert forbidden_imports(tree) == []


def test_every_allowance_is_still_needed() -> None:
    tree = Tree.read(ROOT)
    stale = [pair for pair in ALLOWED if pair[1] not in tree.imports(pair[0]) if pair[0] in tree.files] + \
        [pair for pair in ALLOWED if pair[0] not in tree.files]
    assert stale == [], "remove allowances for breaches that are gone"


def test_the_walk_sees_the_imports_it_judges() -> None:
    tree = Tree.read(ROOT)
    assert "runner.layout" in tree.imports("results.stats")  # `from runner import layout`: the module
    assert "environment.sources.registry" in tree.imports("environment.sources.run_hooks")
    assert "verification.plan_check" in tree.imports("nodes.task_generator")


def test_every_package_is_installed() -> None:
    """The wheel holds every layered package (setuptools' include patterns)."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert [p for p in sorted(Tree.read(ROOT).packages) if not any(fnmatch(p, pattern) for pattern in include)] == []


# -- the rules catch planted breaches --------------------------------------------------------------------

def _plant(root: Path, files: dict[str, str]) -> Tree:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in {(root / name).parent for name in files}:
        while folder != root:
            (folder / "__init__.py").touch()
            folder = folder.parent
    return Tree.read(root)


def test_a_planted_circle_is_caught_even_through_an_import_inside_a_function(tmp_path: Path) -> None:
    tree = _plant(tmp_path, {
        "environment/sources/registry.py": "from environment.sources.kinds import Kind\n",
        "environment/sources/kinds.py": "class Kind:\n    def f(self):\n        from environment.sources import runs\n",
        "environment/sources/runs.py": "def g():\n    from .registry import kind_of\n",  # relative, deferred
        "state/tasks.py": "import json\n",
    })
    assert circles(tree) == [["environment.sources.kinds", "environment.sources.registry",
                              "environment.sources.runs"]]
    (tmp_path / "environment/sources/runs.py").write_text(  # for annotations only: never run, no circle
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .registry import kind_of\n", encoding="utf-8")
    assert circles(Tree.read(tmp_path)) == []


def test_a_planted_forbidden_import_is_caught(tmp_path: Path) -> None:
    tree = _plant(tmp_path, {
        "state/tasks.py": "from environment.errors import InputError\n",  # state imports nothing of the project
        "environment/errors.py": "from state.tasks import Task\n",
        "nodes/task_generator.py": "from backends.protocols import TaskRequest\nfrom backends.registry import b\n"
                                   "def f():\n    from backends.offline.tasks import generate_task\n",
        "backends/protocols.py": "", "backends/registry.py": "", "backends/offline/tasks.py": "",
        "results/stats.py": "from runner import layout\nfrom runner.batch import Batch\n",
        "runner/layout.py": "", "runner/batch.py": "import results.stats\n",
        "graphs/dialogue.py": "from runner.batch import Batch\n",  # wiring only wires nodes
        "graphs/run.py": "from runner.batch import Batch\nfrom graphs.dialogue import build\n",  # the CLI: fine
    })
    assert forbidden_imports(tree, allowed={}) == [
        "graphs.dialogue -> runner.batch (wiring may not import runner)",
        "nodes.task_generator -> backends.offline.tasks (nodes reaches backends only through backends.protocols, "
        "backends.registry)",
        "results.stats -> runner.batch (results reaches runner only through runner.layout)",
        "runner.batch -> results.stats (runner may not import results)",
        "state.tasks -> environment.errors (state may not import environment)",
    ]
    assert forbidden_imports(tree, allowed={("state.tasks", "environment.errors"): "planted"})[-1].startswith("runner")


def test_a_package_outside_the_table_is_caught(tmp_path: Path) -> None:
    tree = _plant(tmp_path, {"extras/tool.py": "from state.tasks import Task\n", "state/tasks.py": ""})
    assert [re.sub(r" \(.*", "", v) for v in forbidden_imports(tree, allowed={})] == ["extras.tool -> state.tasks"]
