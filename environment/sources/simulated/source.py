"""The simulated kind: tools with an output schema and no backing data; results are made up, consistently.

The sandbox is the dialogue's world (every entity a result has shown) and the changes its writes asked for
(diff.py); replaying the recorded results through the same reconciliation rebuilds both exactly.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage

from environment.sources.arguments import check_arguments
from environment.sources.base import CallContext, CallOutcome, Catalog
from environment.sources.kind import SourceKind
from environment.sources.dialogue_time import reference_time_for, stated_date
from environment.sources.simulated.diff import diff, write_change
from environment.sources.simulated.simulator import reconcile, simulate, validation_error
from state.dialogue import ExecutedCall, SimulatedWorld
from state.tools import Tool, ToolResult
from state.verification import StateDiff


def _rows(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def reference_time(messages: list[AnyMessage], world: SimulatedWorld) -> str:
    """The dialogue's 'now', unless the user stated a date: the latest one the user wrote wins."""
    said = next((m.text for m in reversed(messages) if isinstance(m, HumanMessage) and stated_date(m.text)), "")
    date = stated_date(said)
    return f"{date}T{world.reference_time[11:16] or '09:00'}" if date else world.reference_time


class SimulatedSandbox:
    def __init__(self, seed: int) -> None:
        self.world = SimulatedWorld(reference_time=reference_time_for(seed))
        self.writes: list[dict[str, Any]] = []  # each successful write's change, in order (diff.py)

    def _record(self, tool: Tool, arguments: dict[str, Any], result: ToolResult) -> None:
        change = write_change(tool, arguments, result)
        if change is not None:
            self.writes.append(change)

    async def call(self, tool: Tool, arguments: dict[str, Any], context: CallContext) -> CallOutcome:
        error = check_arguments(tool, arguments, context.max_argument_chars)
        if error is not None:
            return CallOutcome(result=ToolResult(ok=False, error=error), simulated=True)
        self.world.reference_time = context.reference_time  # the dialogue's, whatever seed a fork gave it
        now = reference_time(context.messages, self.world)
        problem = "no simulator"
        if context.simulate is not None:
            try:
                value = await context.simulate(tool, arguments, context.messages, now, self.world, context.rng_key)
                problem = validation_error(tool, value)
            except Exception as exc:  # a simulator that keeps answering off-schema: drawn from the schema instead
                problem = f"{type(exc).__name__}: {exc}"
        if problem:
            value = simulate(tool, arguments, self.world.model_copy(deep=True), random.Random(context.rng_key),
                             dt.datetime.fromisoformat(now))
        value = reconcile(tool, arguments, value, self.world)
        rows = _rows(value)
        self._record(tool, arguments, ToolResult(ok=True, value=value, rows=rows))
        return CallOutcome(result=ToolResult(ok=True, value=value, rows=rows, row_count=len(rows)), simulated=True)

    def replay(self, call: ExecutedCall, tool: Tool) -> ToolResult | None:
        if call.result.ok:  # the recorded result is already reconciled: folding it in again gives the same world
            reconcile(tool, call.arguments, call.result.value, self.world)
            self._record(tool, call.arguments, call.result)
        return None  # nothing is run again: the recorded result is the result

    def snapshot(self) -> dict[str, Any]:
        """Every entity the dialogue's results have shown (by 'entity:id'), and the changes its writes made."""
        return {"entities": {key: dict(fields) for key, fields in self.world.entities.items()},
                "writes": [dict(change) for change in self.writes]}

    def diff(self, before: dict[str, Any], after: dict[str, Any]) -> StateDiff:
        return diff(before, after)

    def mark(self) -> int:
        """How many writes the world has taken: its changes are those writes, in order (diff.py)."""
        return len(self.writes)

    def changes_since(self, mark: int | None) -> StateDiff:
        return diff({"writes": self.writes[: mark or 0]}, {"writes": self.writes})

    def savepoint(self) -> tuple[SimulatedWorld, int]:
        return self.world.model_copy(deep=True), len(self.writes)

    def rollback_to(self, point: tuple[SimulatedWorld, int]) -> None:
        world, writes = point
        self.world = world
        del self.writes[writes:]

    def close(self) -> None:
        pass


class SimulatedSource:
    """Simulated tools need no named source: their toolset is all there is."""

    kind = "simulated"
    name = ""
    label = "simulated"
    simulated = True

    def catalog(self) -> Catalog:
        return Catalog()

    def open(self, seed: int) -> SimulatedSandbox:
        return SimulatedSandbox(seed)

    def check_tool(self, tool: Tool, sandbox: Any) -> str | None:
        return None if tool.output_schema or tool.parameters else "a simulated tool needs a schema"

    def derive_tools(self, database: Any, limit: int) -> list[Tool]:
        return []


class SimulatedKind(SourceKind):
    kind = "simulated"
    named = False  # always at hand: a tool bound to it needs no --db

    def claims(self, name: str) -> bool:
        return False

    def expand(self, arg: str) -> list[str]:
        return [arg]

    def open(self, name: str) -> SimulatedSource:
        return SimulatedSource()
