"""The plan check: a task is tried before a dialogue is spent on it.

Its reference plan (`Subtask.steps`, with ResultRef arguments resolved from the plan's own results) runs
on a scratch copy of the dialogue's sandbox as it stands at the task's start (earlier tasks' writes
included), or, for simulated tools, on a copy of the simulator's world. A plan that fails, a subtask
marked `changes_data` whose plan changes nothing, or a read-only subtask whose plan writes is refused;
so is a plan whose second run gives another diff. What survives is the task's expected outcome: the
goal diff (one per acceptable plan) and the facts the user must be told.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from typing import Any

from backends.base import TaskRequest
from backends.offline.tasks import generate_task as offline_task
from environment.clock import dialogue_clock
from environment.diff import diff, snapshot
from environment.sandbox import Sandbox, check_arguments
from environment.simulator import id_field, reference_time_for, simulate, validation_error
from state.config import Settings
from state.dialogue import DialogueState, SimulatedWorld, Usage, WriteRecord
from state.tasks import PlannedCall, ResultRef, Task
from state.tools import Tool, ToolError, ToolResult
from state.verification import ColumnChange, Fact, RowChange, StateDiff, TableDiff, TaskExpectation

REPLACEMENTS = 5  # offline-built stand-ins tried after the model's task and its one retry are refused

Plan = list[list[list[PlannedCall]]]  # per subtask, its steps


class PlanRefused(Exception):
    """Why a task's plan cannot stand as its reference."""


def _first_row(result: ToolResult) -> dict[str, Any] | None:
    if result.rows:
        return result.rows[0]
    if isinstance(result.value, dict):
        return result.value
    if isinstance(result.value, list) and result.value and isinstance(result.value[0], dict):
        return result.value[0]
    return None


def _resolve(call: PlannedCall, results: dict[tuple[int, int], ToolResult]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for name, value in call.arguments.items():
        if isinstance(value, ResultRef):
            result = results.get((value.subtask, value.step))
            row = _first_row(result) if result is not None else None
            if row is None or value.field not in row:
                raise PlanRefused(f"{call.tool}: argument {name} refers to {value.field} of subtask "
                                  f"{value.subtask + 1} step {value.step + 1}, which returned no such row")
            args[name] = row[value.field]
        else:
            args[name] = value
    return args


def simulated_diff(calls: list[tuple[Tool, dict[str, Any], ToolResult]]) -> StateDiff:
    """What simulated writes did to the simulator's world, per entity. Its ids are drawn by the simulator, so
    every change is matched by its values."""
    tables: dict[str, TableDiff] = {}
    for tool, args, result in calls:
        if tool.mode != "write" or not result.ok:
            continue
        idf = id_field(tool)
        row = _first_row(result) or {}
        ident = args.get(idf, row.get(idf))
        values = {k: v for k, v in sorted(args.items()) if k != idf}
        table = tables.setdefault(tool.table, TableDiff(assigned_keys="all"))
        if tool.kind == "insert":
            table.inserted.append(RowChange(key={idf: ident}, values=values))
        elif tool.kind == "delete":
            table.deleted.append(RowChange(key={idf: ident}))
        else:
            table.updated.append(RowChange(key={idf: ident},
                                           changes={k: ColumnChange(new=v) for k, v in values.items()}))
    return StateDiff(tables=tables)


def merged(*diffs: StateDiff) -> StateDiff:
    return StateDiff(tables={name: table for d in diffs for name, table in d.tables.items()})


class PlanRunner:
    """Runs plans of one dialogue's task at its start: SQL tools on a scratch sandbox, the rest simulated."""

    def __init__(self, state: DialogueState, tools: list[Tool], settings: Settings, writes: list[WriteRecord],
                 reference: str) -> None:
        self.state, self.settings, self.writes, self.reference = state, settings, writes, reference
        self.tools = {t.name: t for t in tools}

    def run(self, task: Task, plan: Plan) -> tuple[StateDiff, dict[tuple[int, int], ToolResult]]:
        sql = any(not self._tool(c.tool).simulated for steps in plan for step in steps for c in step)
        sandbox = Sandbox(self.state.source_db) if sql and self.state.source_db else None
        if sql and sandbox is None:
            raise PlanRefused("the plan calls SQL tools but the dialogue has no database")
        world = (self.state.world or SimulatedWorld(reference_time=self.reference)).model_copy(deep=True)
        try:
            if sandbox is not None:
                for write in self.writes:
                    sandbox.apply(write)
            return self._run(task, plan, sandbox, world)
        finally:
            if sandbox is not None:
                sandbox.close()

    def _tool(self, name: str) -> Tool:
        if name not in self.tools:
            raise PlanRefused(f"the plan calls {name!r}, which is not a tool of this dialogue")
        return self.tools[name]

    def _run(self, task: Task, plan: Plan, sandbox: Sandbox | None, world: SimulatedWorld) \
            -> tuple[StateDiff, dict[tuple[int, int], ToolResult]]:
        results: dict[tuple[int, int], ToolResult] = {}
        simulated: list[tuple[Tool, dict[str, Any], ToolResult]] = []
        writes = any(self._tool(c.tool).mode == "write" for steps in plan for step in steps for c in step)
        start = before = snapshot(sandbox.conn) if sandbox is not None and writes else None
        serial = len(self.state.calls)
        for i, steps in enumerate(plan):
            subtask = task.subtasks[i]
            sub_simulated = len(simulated)
            for k, step in enumerate(steps):
                for j, call in enumerate(step):
                    tool = self._tool(call.tool)
                    args = _resolve(call, results)
                    result = self._call(tool, args, sandbox, world, serial)
                    serial += 1
                    if not result.ok:
                        message = result.error.message if result.error else "failed"
                        raise PlanRefused(f"subtask {i + 1}, step {k + 1}: {call.tool}({json.dumps(args, default=str)})"
                                          f" fails: {message}")
                    if tool.simulated:
                        simulated.append((tool, args, result))
                    if j == 0:
                        results[(i, k)] = result
            changed = False
            writes_here = any(self._tool(c.tool).mode == "write" for step in steps for c in step)
            if before is not None and writes_here:  # only a write tool changes the database
                after = snapshot(sandbox.conn)  # type: ignore[union-attr]
                changed = not diff(before, after).is_empty()
                before = after
            changed = changed or not simulated_diff(simulated[sub_simulated:]).is_empty()
            if subtask.changes_data and not changed:
                raise PlanRefused(f"subtask {i + 1} asks for a change, but its plan changes nothing")
            if not subtask.changes_data and changed:
                raise PlanRefused(f"subtask {i + 1} is read-only, but its plan writes")
        sql_diff = diff(start, before) if start is not None and before is not None else StateDiff()
        return merged(sql_diff, simulated_diff(simulated)), results

    def _call(self, tool: Tool, args: dict[str, Any], sandbox: Sandbox | None, world: SimulatedWorld,
              serial: int) -> ToolResult:
        if not tool.simulated:
            assert sandbox is not None
            clock = dialogue_clock(world.reference_time, serial) if tool.mode == "write" else None
            return sandbox.run(tool, args, self.settings.max_result_rows, clock, self.settings.max_argument_chars)
        error = check_arguments(tool, args, self.settings.max_argument_chars)
        if error is not None:
            return ToolResult(ok=False, error=error)
        rng = random.Random(f"{self.state.seed}:plan:{serial}")
        value = simulate(tool, args, world, rng, dt.datetime.fromisoformat(world.reference_time))
        problem = validation_error(tool, value)
        if problem:
            return ToolResult(ok=False, error=ToolError(type="invalid_arguments", message=f"simulated result: {problem}"))
        rows = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]
        return ToolResult(ok=True, value=value, rows=rows, row_count=len(rows))


def label_field(row: dict[str, Any], window: int = 3) -> str | None:
    """The field a short answer names a record by: the first text among its first `window` values, else the
    first value that is not an id, else the first value."""
    present = [(k, v) for k, v in row.items() if v is not None and not (isinstance(v, str) and v.startswith("<BLOB"))]
    text = [k for k, v in present[:window] if isinstance(v, str)]
    if text:
        return text[0]
    plain = [k for k, _ in present[:window] if not (k.lower() == "id" or k.lower().endswith("_id"))]
    return (plain or [k for k, _ in present])[0] if present else None


def facts_for(task: Task, plan: Plan, results: dict[tuple[int, int], ToolResult], simulated: bool) -> list[Fact]:
    """What the user must be told: per subtask, from its last step's result, the fields it asks for (the
    record's label and, for several rows, their count), that nothing matched, or the confirmation of a write."""
    facts: list[Fact] = []
    for i, steps in enumerate(plan):
        if not steps:
            continue
        result = results[(i, len(steps) - 1)]
        subtask = task.subtasks[i]
        if result.rows is None and result.value is None:
            facts.append(Fact(subtask=i, kind="confirmation"))
            continue
        row = _first_row(result)
        if row is None:
            facts.append(Fact(subtask=i, kind="none"))
            continue
        # a single record is described in full (its first six values), several by their first three each
        window = 6 if (result.row_count or 1) == 1 else 3
        fields = subtask.answer_fields or [f for f in [label_field(row, window)] if f]
        for name in fields:
            facts.append(Fact(subtask=i, field=name, value=None if simulated else row.get(name),
                              resolved=not simulated))
        if not subtask.answer_fields and (result.row_count or 0) > 1 and not simulated:
            facts.append(Fact(subtask=i, kind="count", value=result.row_count))
    return facts


def plans_of(task: Task) -> list[Plan]:
    """The main plan, then one plan per alternative of a subtask (the other subtasks as planned)."""
    main = [s.steps for s in task.subtasks]
    plans = [main]
    for i, subtask in enumerate(task.subtasks):
        for alternative in subtask.alternative_steps:
            plans.append([*main[:i], alternative, *main[i + 1:]])
    return plans


def expectation(runner: PlanRunner, task: Task) -> TaskExpectation:
    """The task's expected outcome, or PlanRefused with the reason. Each plan runs twice: the same diff or none."""
    if not task.subtasks or not any(s.steps for s in task.subtasks):
        raise PlanRefused("the task has no reference plan: give each subtask the tool calls that carry it out")
    for i, subtask in enumerate(task.subtasks):
        if not subtask.steps:
            raise PlanRefused(f"subtask {i + 1} has no reference plan")
    alternatives: list[StateDiff] = []
    facts: list[Fact] = []
    simulated = any(runner.tools.get(c.tool) is not None and runner.tools[c.tool].simulated
                    for s in task.subtasks for step in s.steps for c in step)
    for n, plan in enumerate(plans_of(task)):
        first, results = runner.run(task, plan)
        second, _ = runner.run(task, plan)
        if first.model_dump_json() != second.model_dump_json():
            raise PlanRefused("the plan gives a different outcome when run again")
        if n == 0:
            facts = facts_for(task, plan, results, simulated)
        if all(a.model_dump_json() != first.model_dump_json() for a in alternatives):
            alternatives.append(first)
    return TaskExpectation(source="simulated" if simulated else "sql", alternatives=alternatives, facts=facts)


def check(state: DialogueState, tools: list[Tool], settings: Settings, task: Task) -> TaskExpectation | str:
    """The task's expectation, or why it is refused (blocking: run it in a worker thread)."""
    by_name = {t.name: t for t in tools}
    writes = state.writes(by_name)
    reference = state.world.reference_time if state.world else reference_time_for(state.seed)
    try:
        return expectation(PlanRunner(state, tools, settings, writes, reference), task)
    except PlanRefused as refusal:
        return str(refusal)


async def checked_task(state: DialogueState, tools: list[Tool], settings: Settings, backend: Any,
                       request: TaskRequest) -> tuple[Task, Usage]:
    """The backend's task once its plan passes; a refused one goes back once with the reason, then is replaced
    by a data-grounded task of the offline builder. Every refusal is recorded on the task that stands."""
    refused: list[str] = []
    task, usage = await backend.generate_task(request)
    outcome = await asyncio.to_thread(check, state, tools, settings, task)
    if isinstance(outcome, str):
        refused.append(outcome)
        task, more = await backend.generate_task(request.model_copy(update={"feedback": outcome}))
        usage = usage + more
        outcome = await asyncio.to_thread(check, state, tools, settings, task)
    for n in range(REPLACEMENTS):
        if not isinstance(outcome, str):
            break
        refused.append(outcome)
        task = offline_task(request.model_copy(update={"rng_key": f"{request.rng_key}:replacement:{n}",
                                                       "feedback": ""}))
        outcome = await asyncio.to_thread(check, state, tools, settings, task)
    if isinstance(outcome, str):
        raise RuntimeError(f"no task passed the plan check ({len(refused) + 1} tried); the last: {outcome}")
    return task.model_copy(update={"expected": outcome.model_copy(update={"refused": refused})}), usage
