"""Which hard case a task is (docs/hard-cases.md), and what of it the whole dialogue keeps.

The mix comes from the settings (`--variants`); a draw uses a random stream of its own, so a run without
variants draws exactly what it drew before they existed. The tool-list cases (missing-tool, crowded)
change the tools the assistant is offered, so they are drawn for a dialogue's first task and kept by its
later ones: a dataset line has one tool list.
"""

from __future__ import annotations

import random

from environment.decoys import draw_decoys
from state.personas import Persona
from state.schema import DatabaseSchema
from state.tasks import Task, Variant
from state.tools import Tool

DIALOGUE_WIDE = ("missing-tool", "crowded")


def draw_variant(mix: dict[str, float], key: str, first: bool) -> Variant:
    """The hard case to make of this task ('standard' when none is drawn or none is configured)."""
    if not mix:
        return "standard"
    draw = random.Random(f"{key}:variant").random()
    total = 0.0
    for name in ("missing-info", "missing-tool", "out-of-scope", "crowded"):
        share = float(mix.get(name, 0.0))
        if share <= 0:
            continue
        total += share
        if draw < total:
            return name if first or name not in DIALOGUE_WIDE else "standard"  # type: ignore[return-value]
    return "standard"


def dialogue_wide(task: Task, earlier: Task | None, variant: Variant, tools: list[Tool],
                  schema: DatabaseSchema | None, crowd: int, key: str, persona: Persona | None = None) -> Task:
    """The task with what its dialogue keeps: its persona, an earlier task's withheld tools and decoys, or, for a
    crowded first task, its decoys drawn now (a database without any leaves the task standard)."""
    if persona is not None and task.persona is None:
        task = task.model_copy(update={"persona": persona})
    if earlier is not None and (earlier.withheld_tools or earlier.decoys):
        update: dict = {"withheld_tools": list(earlier.withheld_tools), "decoys": list(earlier.decoys)}
        if earlier.decoys and task.variant == "standard":
            update["variant"] = "crowded"  # still offered among the decoys
        return task.model_copy(update=update)
    if variant == "crowded" and task.variant == "standard":
        names = draw_decoys(schema, tools, crowd, random.Random(f"{key}:decoys"))
        if names:
            return task.model_copy(update={"variant": "crowded", "decoys": names})
    return task
