"""Task making aimed at what a model fails: the slices of an evaluation's tasks, a weight per slice from its
failure rate, and the aim one task is drawn toward.

A task belongs to one slice per axis (database, write or read-only, difficulty, number of subtasks, variant)
and to one slice per tool its reference plan calls. A slice's weight is its failure rate smoothed toward the
evaluation's overall one, (failed + overall) / (scored + 1), with the overall rate kept within
[0.02, 0.98]: a slice with few trials stays near the average, one never seen gets it, and none vanishes.
Simulator faults and infrastructure failures are the simulator's or the server's, not the model's: they count
neither way.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, Field

from state.tasks import Task

Axis = Literal["database", "writes", "difficulty", "subtasks", "tool", "variant"]
AXES: tuple[Axis, ...] = ("database", "writes", "difficulty", "subtasks", "tool", "variant")
PRIOR_TRIALS = 1.0
FLOOR = 0.02
# values a new run can always be aimed at, whether or not the evaluation had a task in them
KNOWN_VALUES: dict[str, tuple[str, ...]] = {"writes": ("read-only", "write"), "difficulty": ("easy", "medium", "hard")}


def task_writes(task: Task) -> bool:
    """A task that asks for a change of data: a subtask says so, or its expected outcome changes something."""
    expected = task.expected
    return any(s.changes_data for s in task.subtasks) or bool(
        expected and any(not d.is_empty() for d in expected.alternatives))


def task_slices(task: Task, database: str, writes: bool | None = None) -> dict[str, list[str]]:
    """The slices one task belongs to, per axis (several on `tool`, one on every other axis)."""
    tools = sorted({c.tool for s in task.subtasks for step in s.steps for c in step if c.tool})
    return {"database": [database or "?"], "writes": ["write" if (task_writes(task) if writes is None else writes)
                                                      else "read-only"],
            "difficulty": [task.difficulty], "subtasks": [str(len(task.subtasks))], "tool": tools,
            "variant": [str(getattr(task, "variant", None) or "standard")]}


class SliceFigures(BaseModel):
    tasks: int = Field(0, description="The evaluation's tasks in the slice.")
    scored: int = Field(0, description="Their trials scored, simulator faults and infrastructure failures aside.")
    failed: int = Field(0, description="Of those, the ones the model failed.")
    pass_rate: float | None = Field(None, description="passed / scored; None where no trial was scored.")
    weight: float = Field(description="The smoothed failure rate: how strongly task making leans toward the slice.")


class Targeting(BaseModel):
    """Where a run's task making leans, and why: recorded in the run's config.json (settings.targeting)."""

    source: str = Field(description="The evaluation folder the weights come from.")
    model: str = Field("", description="The model that evaluation tested.")
    overall_failure: float = Field(description="The evaluation's failure rate over every scored trial.")
    smoothing: str = Field(f"(failed + {PRIOR_TRIALS:g} * overall) / (scored + {PRIOR_TRIALS:g}), overall kept "
                           f"within [{FLOOR}, {1 - FLOOR}]")
    slices: dict[str, dict[str, SliceFigures]] = Field(default_factory=dict, description="Axis -> slice -> figures.")

    def shares(self, axis: str, among: list[str] | None = None) -> dict[str, float]:
        """The share of tasks each slice of an axis should get (among the given values only, where given; a value
        the evaluation never saw gets the overall rate)."""
        figures = self.slices.get(axis, {})
        values = among if among is not None else list(figures)
        weights = {v: figures[v].weight if v in figures else self.prior for v in values}
        total = sum(weights.values())
        return {v: w / total for v, w in weights.items()} if total else {}

    @property
    def prior(self) -> float:
        return min(max(self.overall_failure, FLOOR), 1 - FLOOR)

    def draw(self, axis: str, rng: random.Random, among: list[str] | None = None) -> str | None:
        shares = self.shares(axis, among)
        if not shares:
            return None
        return rng.choices(list(shares), weights=list(shares.values()))[0]


def slice_figures(tasks: list[tuple[dict[str, list[str]], list[int]]],
                  prior: float) -> dict[str, dict[str, SliceFigures]]:
    """Per axis and slice, the figures of tasks given as (their slices, the rewards of their counted trials)."""
    counts: dict[str, dict[str, list[int]]] = {}
    for slices, rewards in tasks:
        for axis, values in slices.items():
            for value in values:
                entry = counts.setdefault(axis, {}).setdefault(value, [0, 0, 0])
                entry[0] += 1
                entry[1] += len(rewards)
                entry[2] += sum(1 for r in rewards if not r)
    for axis, values in KNOWN_VALUES.items():
        for value in values:
            counts.setdefault(axis, {}).setdefault(value, [0, 0, 0])
    out: dict[str, dict[str, SliceFigures]] = {}
    for axis in AXES:
        for value, (n_tasks, scored, failed) in sorted(counts.get(axis, {}).items()):
            out.setdefault(axis, {})[value] = SliceFigures(
                tasks=n_tasks, scored=scored, failed=failed,
                pass_rate=round((scored - failed) / scored, 4) if scored else None,
                weight=round((failed + PRIOR_TRIALS * prior) / (scored + PRIOR_TRIALS), 6))
    return out


class TaskAim(BaseModel):
    """What one task is drawn toward (each None: as the builder would choose)."""

    writes: bool | None = Field(None, description="A task that changes data (True) or only reads (False).")
    subtasks: int | None = Field(None, ge=1, description="How many subtasks.")
    tool: str | None = Field(None, description="A tool its plan should use.")
    variant: str | None = Field(None, description="The task variant (standard, missing-info, ...).")

    def sentence(self) -> str:
        """The aim in words, for a model that writes the task."""
        parts = []
        if self.writes is not None:
            parts.append("it must ask for a change to the data (at least one subtask with changes_data true)"
                         if self.writes else "it must only read: no subtask may change data")
        if self.subtasks is not None:
            parts.append(f"it has exactly {self.subtasks} subtask{'s' if self.subtasks != 1 else ''}")
        if self.tool:
            parts.append(f"its plan uses the tool {self.tool}")
        return ("This task is aimed at what the assistant under training gets wrong: " + "; ".join(parts) + "."
                if parts else "")
