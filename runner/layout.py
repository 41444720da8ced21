"""A run folder's file layout and read-only access to it: what the code reading finished runs (results/)
needs of the runner, and nothing more. `RunFolder` (run_folder.py) adds ownership and writing on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Literal

from environment.errors import InputError, read_json_input
from state.tools import Tool

CONFIG = "config.json"
TOOLSET = "toolset.json"
TOOLSET_REPORT = "toolset_report.json"
TOOLSETS_DIR = "toolsets"  # a run over several databases: toolsets/<name>.json each
DIALOGUES = "dialogues.jsonl"
REJECTED = "rejected.jsonl"
TIMINGS = "timings.jsonl"
STATS = "stats.json"
PERSONAS = "personas.json"  # the run's user personas, per source (--personas)
CHECKPOINTS = "checkpoints.sqlite"
LLM_CACHE = "llm_cache.sqlite"
OWNER_LOCK = ".owner.lock"
# an evaluation folder: the tasks it plays, one line per trial, and its figures
TASKS = "tasks.jsonl"
TRIALS = "trials.jsonl"
SUMMARY = "summary.json"

RunKind = Literal["dialogues", "toolprep", "reasoning", "ablate", "optimize", "evaluate"]
# config.json's "command" of the runs that hold no dialogue lines; a dialogue run's config has no command
OTHER_KINDS: tuple[RunKind, ...] = ("toolprep", "reasoning", "ablate", "optimize", "evaluate")


def run_labels(run_dirs: list[Path]) -> list[str]:
    """A short label per run folder: its name, or its path where an earlier run has the same name."""
    labels: list[str] = []
    for run_dir in run_dirs:
        labels.append(run_dir.name if run_dir.name not in labels else str(run_dir))
    return labels


def report_file_of(toolset_file: str) -> str:
    """toolset.json keeps its report in toolset_report.json; toolsets/x.json in toolsets/x.report.json."""
    return TOOLSET_REPORT if toolset_file == TOOLSET else toolset_file.removesuffix(".json") + ".report.json"


def load_toolset(path: Path) -> list[Tool]:
    """Tools from a toolset.json written by an earlier run."""
    entries = read_json_input(path, "toolset")
    try:
        return [Tool.model_validate(e) for e in entries]
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a toolset.json (a JSON list of tools with sql and mode): {path}: "
                         f"{str(exc).splitlines()[0]}") from None


class RunFiles:
    """A run folder read, never written: its files by name, whole JSON files, and JSONL files a line at a time
    (a torn last line, from a run killed mid-write, is passed over)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def read_json(self, name: str) -> Any:
        return read_json_input(self.file(name), "run file")

    def iter_raw_lines(self, name: str) -> Iterator[bytes]:
        """The complete, non-blank lines of a JSONL file as bytes."""
        path = self.file(name)
        if not path.exists():
            return
        with path.open("rb") as fh:
            yield from (raw for raw in fh if raw.endswith(b"\n") and raw.strip())

    def iter_lines(self, name: str) -> Iterator[dict[str, Any]]:
        """The complete lines of a JSONL file one at a time, so a large dataset is never held whole."""
        for n, raw in enumerate(self.iter_raw_lines(name), 1):
            try:
                yield json.loads(raw.decode("utf-8", errors="replace"))
            except ValueError:
                raise InputError(f"{self.file(name)} line {n} is not JSON; the run folder may be damaged") from None

    def read_lines(self, name: str) -> list[dict[str, Any]]:
        return list(self.iter_lines(name))

    def lines_with_tools(self, name: str = DIALOGUES) -> Iterator[tuple[dict[str, Any], dict[str, Tool]]]:
        """Each dialogue line with the tools, by name, of the toolset it names (each toolset read once)."""
        toolsets: dict[str, dict[str, Tool]] = {}
        for line in self.iter_lines(name):
            toolset = line.get("metadata", {}).get("toolset") or TOOLSET
            if toolset not in toolsets:
                if not self.file(toolset).exists():
                    raise InputError(f"{self.path}: the toolset {toolset} that dialogue {line.get('id')} names is "
                                     f"missing")
                toolsets[toolset] = {t.name: t for t in load_toolset(self.file(toolset))}
            yield line, toolsets[toolset]

    def finished_ids(self) -> set[str]:
        return {r["id"] for name in (DIALOGUES, REJECTED) for r in self.iter_lines(name)}


def run_kind(run_dir: Path) -> RunKind | None:
    """What made a run folder (its config.json says); None where there is no readable configuration."""
    try:
        config = json.loads((Path(run_dir) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    command = config.get("command")
    return command if command in OTHER_KINDS else "dialogues"


def dialogue_run_config(run_dir: Path, works_on: str) -> dict[str, Any]:
    """The config.json of a dialogue run folder, or one line saying why the folder is not one
    (`works_on` names the command, e.g. "export and report work on dialogue runs")."""
    files = RunFiles(run_dir)
    if not files.file(CONFIG).exists():
        raise InputError(f"not a run folder (no {CONFIG}): {run_dir}")
    config = files.read_json(CONFIG)
    if not isinstance(config, dict):
        raise InputError(f"{files.file(CONFIG)} is not a run configuration; the run folder may be damaged")
    kind = run_kind(run_dir)
    if kind != "dialogues":
        raise InputError(f"{run_dir} is a {kind} run folder; {works_on}")
    return config
