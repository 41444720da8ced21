"""The dialogues of one or more finished runs, read once for exporting and reporting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from environment.errors import InputError
from runner import layout
from runner.layout import RunFiles, dialogue_run_config, run_labels

Selection = Literal["valid", "rejected", "all"]


class SourceDialogue(BaseModel):
    """One dialogue line of a run, with where it came from and whether it was accepted."""

    id: str
    run: str = Field(description="Label of the run it came from.")
    valid: bool
    reason: str | None = None
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    metadata: dict[str, Any]

    @property
    def database(self) -> str:
        """The source database: its file name, or the toolset's folder for runs with simulated tools only."""
        source = str(self.metadata.get("source_database") or "")
        return Path(source).name if source else "(simulated tools)"


class SourceRun(BaseModel):
    label: str
    path: Path
    config: dict[str, Any]
    dialogues: list[SourceDialogue] = Field(description="Accepted, then rejected, each in id order.")

    @property
    def accepted(self) -> list[SourceDialogue]:
        return [d for d in self.dialogues if d.valid]

    @property
    def rejected(self) -> list[SourceDialogue]:
        return [d for d in self.dialogues if not d.valid]


def _lines(folder: RunFiles, name: str, label: str, valid: bool) -> list[SourceDialogue]:
    dialogues = []
    for n, line in enumerate(folder.read_lines(name), 1):
        if not isinstance(line, dict) or not isinstance(line.get("id"), str) or not isinstance(line.get("messages"), list):
            raise InputError(f"{folder.file(name)} line {n} is not a dialogue (no id or messages); "
                             "the run folder may be damaged")
        dialogues.append(SourceDialogue(id=line["id"], run=label, valid=valid, reason=line.get("reason"),
                                        messages=line["messages"], tools=line.get("tools") or [],
                                        metadata=line.get("metadata") or {}))
    return sorted(dialogues, key=lambda d: d.id)  # a stable order, whatever order the workers finished in


def load_run(run_dir: Path, label: str) -> SourceRun:
    folder = RunFiles(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder not found: {run_dir}")
    config = dialogue_run_config(run_dir, "export and report work on dialogue runs")
    if not folder.file(layout.DIALOGUES).exists() and not folder.file(layout.REJECTED).exists():
        raise InputError(f"{run_dir} holds no dialogues yet (no {layout.DIALOGUES}); finish it with "
                         f"`python -m graphs.run resume {run_dir}`")
    dialogues = _lines(folder, layout.DIALOGUES, label, True) + _lines(folder, layout.REJECTED, label, False)
    return SourceRun(label=label, path=run_dir, config=config, dialogues=dialogues)


def load_runs(run_dirs: list[Path]) -> list[SourceRun]:
    """Every given run; a dialogue id found twice (the same run given twice, say) is refused in one line."""
    runs = [load_run(Path(d), label) for d, label in zip(run_dirs, run_labels([Path(d) for d in run_dirs]))]
    seen: dict[str, str] = {}
    for run in runs:
        for d in run.dialogues:
            if d.id in seen:
                raise InputError(f"dialogue {d.id} is in both {seen[d.id]} and {run.path}; give each run once "
                                 "(runs merged into one dataset need distinct run names)")
            seen[d.id] = str(run.path)
    return runs


def select(runs: list[SourceRun], only: Selection) -> list[SourceDialogue]:
    """The dialogues to export, runs in the order given."""
    keep = {"valid": (True,), "rejected": (False,), "all": (True, False)}[only]
    return [d for run in runs for d in run.dialogues if d.valid in keep]
