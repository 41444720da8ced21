"""What a targeted run made: the share of its tasks in each slice, beside the evaluation's pass rate there and
the share the weights aimed at (`stats` of a run made with `generate --target EVAL_DIR`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from rich.table import Table

from runner import layout
from state.targeting import AXES, Targeting, task_slices
from state.tasks import Task

TOOLS_SHOWN = 8  # the tool axis has a slice per tool: the most aimed-at ones are shown


class SliceShare(BaseModel):
    axis: str
    slice: str
    tasks: int = Field(description="The run's tasks (in valid dialogues) in the slice.")
    share: float = Field(description="Their share of the run's tasks.")
    aimed: float = Field(description="The share the weights gave the slice.")
    pass_rate: float | None = Field(description="The evaluation's pass rate there (None: no scored trial).")


def _tasks(run_dir: Path) -> list[tuple[Task, str]]:
    from environment.sources.registry import label_of  # the source kinds load with it: only a targeted run's stats

    out = []
    for line in layout.RunFiles(run_dir).iter_lines(layout.DIALOGUES):
        source = str(line.get("metadata", {}).get("source_database") or "")
        for task in line.get("metadata", {}).get("tasks", []):
            out.append((Task.model_validate(task), label_of(source) if source else "simulated"))
    return out


def slice_shares(run_dir: Path) -> tuple[Targeting, list[SliceShare]] | None:
    """The targeted run's slices; None for a run made without --target."""
    config = layout.RunFiles(run_dir).read_json(layout.CONFIG)
    recorded = (config.get("settings") or {}).get("targeting") if isinstance(config, dict) else None
    if not recorded:
        return None
    targeting = Targeting.model_validate(recorded)
    tasks = [task_slices(task, database) for task, database in _tasks(run_dir)]
    rows = []
    for axis in AXES:
        figures = targeting.slices.get(axis, {})
        made = sorted({v for slices in tasks for v in slices.get(axis, [])})
        aimed = targeting.shares(axis, list(dict.fromkeys([*figures, *made])))
        order = sorted(aimed, key=lambda v: -aimed[v])[:TOOLS_SHOWN] if axis == "tool" else list(aimed)
        for value in order:
            count = sum(value in slices.get(axis, []) for slices in tasks)
            rows.append(SliceShare(axis=axis, slice=value, tasks=count,
                                   share=round(count / len(tasks), 4) if tasks else 0.0, aimed=round(aimed[value], 4),
                                   pass_rate=figures[value].pass_rate if value in figures else None))
    return targeting, rows


def slice_table(run_label: str, targeting: Targeting, rows: list[SliceShare]) -> Table:
    table = Table(title=f"{run_label}: tasks per slice, aimed by {targeting.source}")
    for column in ("axis", "slice", "tasks", "share", "aimed share", "evaluation pass rate"):
        table.add_column(column, justify="left" if column in ("axis", "slice") else "right")
    for r in rows:
        table.add_row(r.axis, r.slice, str(r.tasks), f"{r.share:.0%}", f"{r.aimed:.0%}",
                      "-" if r.pass_rate is None else f"{r.pass_rate:.0%}")
    return table
