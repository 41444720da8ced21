"""Regenerate the golden datasets: `python -m tests.golden.make [OUT_DIR]` (default: this folder).

Four offline runs under fixed seeds, whose dataset files must stay byte-identical across refactors:
a one-database run, a simulated-toolset run, a run over two databases and a method-B reasoning run.
Absolute paths of this checkout are written as `{ROOT}`, so the files compare on any machine.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CLINIC = ROOT / "examples" / "clinic.sqlite"
SCENARIO = ROOT / "examples" / "scenarios" / "household_budget"
SEEDS = [
    {"type": "function", "function": {
        "name": "get_user", "description": "Look up a customer account by id.",
        "parameters": {"type": "object", "properties": {"user_id": {"type": "string"}}, "required": ["user_id"]}}},
    {"type": "function", "function": {
        "name": "search_books", "description": "Search the catalogue by title words and optional author.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "author": {"type": "string"}},
                       "required": ["query"]}}},
]
# name -> (file the run writes, the arguments of `python -m graphs.run`, with {work} for a scratch folder)
RUNS: dict[str, tuple[str, list[str]]] = {
    "db": ("dialogues.jsonl", ["generate", "--db", str(CLINIC), "--dialogues", "3", "--seed", "11"]),
    "simulated": ("dialogues.jsonl", ["generate", "--toolset", "{work}/tools/toolset.json", "--dialogues", "3",
                                      "--seed", "12"]),
    "many": ("dialogues.jsonl", ["generate", "--db", "{work}/dbs", "--dialogues", "4", "--seed", "13",
                                 "--tasks-per-dialogue", "1"]),
    "reasoning": ("items.jsonl", ["reasoning", "--scenario", str(SCENARIO / "scenario.md"), "--corpus",
                                  str(SCENARIO / "corpus"), "--users", "3", "--dialogues", "3", "--seed", "14"]),
}


def _portable(text: str, work: Path) -> str:
    return text.replace(str(work), "{WORK}").replace(str(ROOT), "{ROOT}")


def produce(name: str, work: Path) -> str:
    """Run one golden run in `work` and return its dataset file's text, paths made portable."""
    from graphs.run import main

    file, argv = RUNS[name]
    if name == "simulated" and not (work / "tools" / "toolset.json").exists():
        (work / "seeds.json").write_text(json.dumps(SEEDS))
        with redirect_stdout(io.StringIO()):
            assert main(["toolprep", "--tools", str(work / "seeds.json"), "--domain", "online bookstore",
                         "--seed", "12", "--out", str(work / "tools")]) == 0
    if name == "many":
        for db in ("north", "south"):
            (work / "dbs").mkdir(exist_ok=True)
            shutil.copy(CLINIC, work / "dbs" / f"{db}.sqlite")
    out = work / f"run-{name}"
    with redirect_stdout(io.StringIO()):
        code = main([a.replace("{work}", str(work)) for a in argv] + ["--out", str(out)])
    assert code == 0, f"golden run {name} failed with exit code {code}"
    return _portable((out / file).read_text(), work)


def main(target: Path = HERE) -> None:
    with tempfile.TemporaryDirectory(prefix="forge-golden-") as tmp:
        for name in RUNS:
            (target / f"{name}.jsonl").write_text(produce(name, Path(tmp)))
            print(f"wrote {target / f'{name}.jsonl'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
