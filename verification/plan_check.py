"""The plan check: a task is tried before a dialogue is spent on it.

Its reference plan (`Subtask.steps`, with ResultRef arguments resolved from the plan's own results) runs
on the dialogue's own sandboxes (the run's pool holds them at the task's start, earlier tasks' writes
included) inside a savepoint that is rolled back, its diff read from their change logs; where a kind
cannot roll back (MCP servers), on scratch sandboxes brought to that state by replaying the recorded calls.
Each call is made as the tool executor makes it, at the dialogue's clock. A plan that fails, a subtask marked `changes_data` whose
plan changes nothing, or a read-only subtask whose plan writes is refused; so is a plan whose second run
gives another diff. What survives is the task's expected outcome: the goal diff (one per acceptable plan,
as the sandboxes' kinds state it) and the facts the user must be told (facts.py). The retry with the
backend and the stand-in tasks that follow a refusal are the task generator's (nodes/task_generator.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from environment.sources.base import CallContext
from environment.sources.dialogue_time import dialogue_clock, reference_time_for
from environment.sources.pool import DialogueSandboxes, current_pool
from state.config import Settings
from state.dialogue import DialogueState
from state.tasks import PlannedCall, ResultRef, Task
from state.tools import Tool, ToolResult
from state.verification import Fact, StateDiff, TaskExpectation
from verification.facts import Plan, facts_for
from verification.hard_cases import variant_problem


class PlanRefused(Exception):
    """Why a task's plan cannot stand as its reference."""


def _resolve(call: PlannedCall, results: dict[tuple[int, int], ToolResult]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for name, value in call.arguments.items():
        if isinstance(value, ResultRef):
            result = results.get((value.subtask, value.step))
            row = result.first_row() if result is not None else None
            if row is None or value.field not in row:
                raise PlanRefused(f"{call.tool}: argument {name} refers to {value.field} of subtask "
                                  f"{value.subtask + 1} step {value.step + 1}, which returned no such row")
            args[name] = row[value.field]
        else:
            args[name] = value
    return args


class PlanRun:
    """One run of a plan: its diff, the first call's result of each step, and whether any result was simulated."""

    def __init__(self) -> None:
        self.diff = StateDiff()
        self.results: dict[tuple[int, int], ToolResult] = {}
        self.reads: dict[tuple[int, int, int], ToolResult] = {}  # each read call's result, by subtask, step, call
        self.simulated = False


class PlanRunner:
    """Runs plans of one dialogue's task at its start, each on fresh sandboxes of the dialogue's sources."""

    def __init__(self, state: DialogueState, tools: list[Tool], settings: Settings) -> None:
        self.state, self.settings = state, settings
        self.tools = {t.name: t for t in tools}
        self.reference = state.reference_time or reference_time_for(state.seed)

    def _tool(self, name: str) -> Tool:
        if name not in self.tools:
            raise PlanRefused(f"the plan calls {name!r}, which is not a tool of this dialogue")
        return self.tools[name]

    def _own(self, used: list[Tool]) -> DialogueSandboxes:
        """The dialogue's own sandboxes at the task's start, from the run's pool (blocking: they may be opened)."""
        boxes = current_pool().checkout(self.state.dialogue_id, self.state.sources, self.state.seed,
                                        self.state.calls, self.tools)
        boxes.open_for(used)
        return boxes

    def _scratch(self, used: list[Tool]) -> DialogueSandboxes:
        """Sandboxes holding the dialogue's state at the task's start (blocking: opening copies a source)."""
        boxes = DialogueSandboxes(self.state.sources, self.state.seed)
        boxes.replay(self.state.calls, self.tools)
        boxes.open_for(used)
        return boxes

    def _context(self, serial: int) -> CallContext:
        # the clock the call would have in the dialogue; simulated tools draw from the schema under a plan key
        return CallContext(reference_time=self.reference, clock=dialogue_clock(self.reference, serial),
                           rng_key=f"{self.state.seed}:plan:{serial}", max_rows=self.settings.max_result_rows,
                           max_argument_chars=self.settings.max_argument_chars)

    async def run(self, task: Task, plan: Plan, answered: PlanRun | None = None) -> PlanRun:
        """One run of a plan; with `answered` (a first run's) its reads are answered as they were then: the
        state is the same, so only the writes run again (what the determinism check is about)."""
        used = [self._tool(c.tool) for steps in plan for step in steps for c in step]
        writes = any(t.mode == "write" for t in used)
        own = await asyncio.to_thread(self._own, used)
        if own.rolls_back(used):
            point = await asyncio.to_thread(own.savepoint)
            try:
                return await self._run(task, plan, own, writes, answered)
            finally:
                await asyncio.to_thread(own.rollback_to, point)
        boxes = await asyncio.to_thread(self._scratch, used)
        try:
            return await self._run(task, plan, boxes, writes, answered)
        finally:
            boxes.close()

    async def _run(self, task: Task, plan: Plan, boxes: DialogueSandboxes, writes: bool,
                   answered: PlanRun | None) -> PlanRun:
        out = PlanRun()
        start = before = await asyncio.to_thread(boxes.mark) if writes else None
        serial = len(self.state.calls)
        for i, steps in enumerate(plan):
            subtask = task.subtasks[i]
            for k, step in enumerate(steps):
                for j, call in enumerate(step):
                    tool = self._tool(call.tool)
                    args = _resolve(call, out.results)
                    known = answered.reads.get((i, k, j)) if answered is not None and tool.mode == "read" else None
                    if known is not None:
                        result, simulated = known, answered.simulated  # type: ignore[union-attr]
                    else:
                        outcome = await boxes.call(tool, args, self._context(serial))
                        result, simulated = outcome.result, outcome.simulated
                    serial += 1
                    out.simulated = out.simulated or simulated
                    if tool.mode == "read":
                        out.reads[(i, k, j)] = result
                    if not result.ok:
                        message = result.error.message if result.error else "failed"
                        raise PlanRefused(f"subtask {i + 1}, step {k + 1}: {call.tool}({json.dumps(args, default=str)})"
                                          f" fails: {message}")
                    if j == 0:
                        out.results[(i, k)] = result
            changed = False
            if before is not None and any(self._tool(c.tool).mode == "write" for step in steps for c in step):
                changed = not (await asyncio.to_thread(boxes.since, before)).is_empty()  # only writes change it
                before = await asyncio.to_thread(boxes.mark)
            if subtask.changes_data and not changed:
                raise PlanRefused(f"subtask {i + 1} asks for a change, but its plan changes nothing")
            if not subtask.changes_data and changed:
                raise PlanRefused(f"subtask {i + 1} is read-only, but its plan writes")
        if start is not None:
            out.diff = await asyncio.to_thread(boxes.since, start)
        return out


def plans_of(task: Task) -> list[Plan]:
    """The main plan, then one plan per alternative of a subtask (the other subtasks as planned)."""
    main = [s.steps for s in task.subtasks]
    plans = [main]
    for i, subtask in enumerate(task.subtasks):
        for alternative in subtask.alternative_steps:
            plans.append([*main[:i], alternative, *main[i + 1:]])
    return plans


async def expectation(runner: PlanRunner, task: Task) -> TaskExpectation:
    """The task's expected outcome, or PlanRefused with the reason. Each plan that writes runs twice: the same
    diff or none."""
    if not task.subtasks or not any(s.steps or s.cannot for s in task.subtasks):
        raise PlanRefused("the task has no reference plan: give each subtask the tool calls that carry it out")
    for i, subtask in enumerate(task.subtasks):
        if not subtask.steps and not subtask.cannot:
            raise PlanRefused(f"subtask {i + 1} has no reference plan")
        if subtask.cannot and (subtask.steps or subtask.changes_data):  # a part that cannot be done changes nothing
            raise PlanRefused(f"subtask {i + 1} cannot be done ({subtask.cannot}), so it has no plan and no change")
    alternatives: list[StateDiff] = []
    facts: list[Fact] = []
    simulated = False
    for n, plan in enumerate(plans_of(task)):
        first = await runner.run(task, plan)
        # a plan that writes runs again (its reads answered as before): the same diff, or it is refused; a plan
        # of reads alone changes nothing either time
        writes = any(runner.tools[c.tool].mode == "write" for steps in plan for step in steps for c in step)
        second = await runner.run(task, plan, answered=first) if writes else first
        if first.diff.model_dump_json() != second.diff.model_dump_json():
            raise PlanRefused("the plan gives a different outcome when run again")
        if n == 0:  # simulated values are drawn anew in the dialogue: its facts are read from its results
            simulated = first.simulated
            facts = facts_for(task, plan, first.results, simulated)
        if all(a.model_dump_json() != first.diff.model_dump_json() for a in alternatives):
            alternatives.append(first.diff)
    return TaskExpectation(source="simulated" if simulated else "sql", alternatives=alternatives, facts=facts)


async def check(state: DialogueState, tools: list[Tool], settings: Settings, task: Task) -> TaskExpectation | str:
    """The task's expectation, or why it is refused."""
    try:
        if problem := variant_problem(task, tools):
            raise PlanRefused(problem)
        offered = [t for t in tools if t.name not in task.withheld_tools]  # a withheld tool is no tool of the plan
        return await expectation(PlanRunner(state, offered, settings), task)
    except PlanRefused as refusal:
        return str(refusal)
