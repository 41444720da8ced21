"""The tools a dialogue's assistant is offered: its toolset, less the tools its task withholds (missing-tool),
plus the decoys drawn for it (crowded). The executor, the validator's replay and the export see the same list."""

from __future__ import annotations

from langgraph.runtime import Runtime

from environment.decoys import decoys_named
from nodes.stored_values import schema_of, tools_of
from state.dialogue import DialogueState
from state.schema import DatabaseSchema
from state.tasks import Task
from state.tools import Tool


def offered(tools: list[Tool], task: Task | None, schema: DatabaseSchema | None) -> list[Tool]:
    """The toolset as the task offers it (unchanged for a task that withholds nothing and draws no decoys)."""
    if task is None or not (task.withheld_tools or task.decoys):
        return tools
    kept = [t for t in tools if t.name not in task.withheld_tools]
    return kept + decoys_named(schema, tools, task.decoys)


async def offered_tools(state: DialogueState, runtime: Runtime | None) -> list[Tool]:
    task = state.current_task
    tools = await tools_of(state, runtime)
    if task is None or not (task.withheld_tools or task.decoys):
        return tools
    return offered(tools, task, await schema_of(state, runtime))
