"""Tool executor node: runs the assistant's tool calls.

SQL tools run on the dialogue's sandbox (in a worker thread: SQLite calls block). Tools without SQL
are simulated by the backend; their results are checked against the tool's output schema and kept
consistent with the dialogue's simulated world. Errors of any kind come back to the assistant as
structured tool messages; nothing raises.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.runtime import Runtime

from backends.base import SimulationRequest
from environment.sources.sqlite.clock import dialogue_clock
from environment.sources.sqlite.sandbox import SANDBOXES, check_arguments
from environment.sources.simulated.simulator import reconcile, reference_time_for, simulate, stated_date, validation_error
from nodes.common import backend_of, rng_key, settings_of
from nodes.stored_values import tools_of
from state.config import Settings
from state.dialogue import DialogueState, ExecutedCall, SimulatedWorld
from state.tools import Tool, ToolError, ToolResult


def tool_message_content(result: ToolResult) -> str:
    return json.dumps(result.to_content(), ensure_ascii=False, default=str)


def _rows(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def reference_time(state: DialogueState, world: SimulatedWorld) -> str:
    """The dialogue's 'now', unless the user stated a date: the latest one the user wrote wins."""
    said = next((m.text for m in reversed(state.messages) if isinstance(m, HumanMessage) and stated_date(m.text)), "")
    date = stated_date(said)
    return f"{date}T{world.reference_time[11:16] or '09:00'}" if date else world.reference_time


async def _simulated(state: DialogueState, runtime: Runtime[Settings], tool: Tool, args: dict[str, Any],
                     world: SimulatedWorld, serial: int) -> ToolResult:
    error = check_arguments(tool, args, settings_of(runtime).max_argument_chars)
    if error is not None:
        return ToolResult(ok=False, error=error)
    now = reference_time(state, world)
    key = rng_key(state, "simulate", serial)
    try:
        value, _ = await backend_of(runtime, state).simulate_tool(SimulationRequest(
            tool=tool, arguments=args, messages=state.messages, reference_time=now, world=world, rng_key=key))
        problem = validation_error(tool, value)
    except Exception as exc:  # a simulator that keeps answering off-schema: drawn from the schema instead
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        value = simulate(tool, args, world.model_copy(deep=True), random.Random(key), dt.datetime.fromisoformat(now))
    value = reconcile(tool, args, value, world)
    rows = _rows(value)
    return ToolResult(ok=True, value=value, rows=rows, row_count=len(rows))


async def tool_executor(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    settings = settings_of(runtime)
    last = state.messages[-1]
    assert isinstance(last, AIMessage) and last.tool_calls, "routed here only after tool calls"
    tools = {t.name: t for t in await tools_of(state, runtime)}
    world = (state.world or SimulatedWorld(reference_time=reference_time_for(state.seed))).model_copy(deep=True)
    malformed = dict(zip(last.additional_kwargs.get("malformed_tool_call_ids", []),
                         last.additional_kwargs.get("malformed_tool_call_arguments", [])))
    sql_calls = [c for c in last.tool_calls if c["name"] in tools and not tools[c["name"]].simulated]
    executed: dict[str, ToolResult] = {}
    # one clock per dialogue: its seeded time, a minute on per call; writes record it so replays match
    clocks = {c["id"]: dialogue_clock(world.reference_time, len(state.calls) + i)
              for i, c in enumerate(last.tool_calls) if c["name"] in tools and tools[c["name"]].mode == "write"}
    if sql_calls and state.source_db:
        executed = await asyncio.to_thread(_run_sql, state, tools, sql_calls, settings, clocks,
                                           [c["id"] for c in last.tool_calls])
    messages, calls = [], []
    for i, call in enumerate(last.tool_calls):
        tool = tools.get(call["name"])
        if call["id"] in malformed:
            result = ToolResult(ok=False, error=ToolError(
                type="invalid_arguments", message=f"arguments are not valid JSON: {malformed[call['id']][:200]!r}"))
        elif tool is None:
            known = ", ".join(sorted(tools)[:30])
            result = ToolResult(ok=False, error=ToolError(
                type="unknown_tool", message=f"there is no tool named {call['name']!r}; available: {known}"))
        elif i >= settings.max_tool_calls_per_step:
            result = ToolResult(ok=False, error=ToolError(
                type="budget_exceeded",
                message=f"only {settings.max_tool_calls_per_step} tool calls run per step; call it again"))
        elif tool.simulated:
            result = await _simulated(state, runtime, tool, call["args"], world, len(state.calls) + i)
        else:
            result = executed.get(call["id"]) or ToolResult(ok=False, error=ToolError(
                type="sql_error", message="this dialogue has no database to run SQL tools on"))
        calls.append(ExecutedCall(tool_call_id=call["id"], tool=call["name"], arguments=call["args"], result=result,
                                  mode=tool.mode if tool else None, task_index=state.task_index,
                                  simulated=bool(tool and tool.simulated),
                                  clock=clocks.get(call["id"]) if call["id"] in executed else None))
        messages.append(ToolMessage(content=tool_message_content(result), tool_call_id=call["id"],
                                    name=call["name"], status="success" if result.ok else "error"))
    update: dict = {"messages": messages, "calls": calls}
    if any(c.simulated for c in calls):
        update["world"] = world
    return update


def _run_sql(state: DialogueState, tools: dict[str, Tool], calls: list[dict], settings: Settings,
             clocks: dict[str, str], order: list[str]) -> dict[str, ToolResult]:
    """Run SQL tool calls on the dialogue's sandbox, rebuilt from its write log if need be."""
    sandbox = SANDBOXES.checkout(state.dialogue_id, state.source_db, state.writes(tools))
    results = {}
    with sandbox.lock:
        for call in calls:
            if order.index(call["id"]) < settings.max_tool_calls_per_step:
                results[call["id"]] = sandbox.run(tools[call["name"]], call["args"], settings.max_result_rows,
                                                  clocks.get(call["id"]), settings.max_argument_chars)
    return results
