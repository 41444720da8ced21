"""Tool executor node: runs the assistant's tool calls, each on the dialogue's sandbox of its tool's source.

One path for every kind of source: the call is checked (malformed, unknown tool, over the step's budget),
then handed to the sandbox, which returns its result and what a replay needs. Errors of any kind come back
to the assistant as structured tool messages; nothing raises.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langgraph.runtime import Runtime

from backends.protocols import Backend, SimulationRequest
from environment.sources.base import CallContext, CallOutcome, Simulator, ToolSource
from environment.sources.dialogue_time import dialogue_clock, reference_time_for
from environment.sources.pool import DialogueSandboxes, current_pool
from nodes.common import backend_of, rng_key, settings_of
from nodes.toolbox import offered_tools
from state.config import Settings
from state.dialogue import DialogueState, ExecutedCall, SimulatedWorld
from state.tools import Tool, ToolError, ToolResult


def tool_message_content(result: ToolResult) -> str:
    return json.dumps(result.to_content(), ensure_ascii=False, default=str)


def backend_simulator(state: DialogueState, runtime: Runtime[Settings]) -> Simulator:
    """The backend's simulator as the sandbox of simulated tools calls it."""
    return simulator_of(backend_of(runtime, state))


def simulator_of(backend: Backend) -> Simulator:
    """A backend's tool simulator in the shape a sandbox of simulated tools calls."""

    async def simulate(tool: Tool, arguments: dict[str, Any], messages: list[AnyMessage], now: str,
                       world: SimulatedWorld, key: str) -> Any:
        value, _ = await backend.simulate_tool(SimulationRequest(
            tool=tool, arguments=arguments, messages=messages, reference_time=now, world=world, rng_key=key))
        return value
    return simulate


def _refused(error_type: str, message: str, source: ToolSource | None = None) -> CallOutcome:
    """A call that never reached its sandbox; it still says whether its tool's results are simulated."""
    return CallOutcome(result=ToolResult(ok=False, error=ToolError(type=error_type, message=message)),
                       simulated=bool(source and source.simulated))


async def tool_executor(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    settings = settings_of(runtime)
    last = state.messages[-1]
    assert isinstance(last, AIMessage) and last.tool_calls, "routed here only after tool calls"
    tools = {t.name: t for t in await offered_tools(state, runtime)}
    malformed = dict(zip(last.additional_kwargs.get("malformed_tool_call_ids", []),
                         last.additional_kwargs.get("malformed_tool_call_arguments", [])))
    sandboxes = await asyncio.to_thread(current_pool().checkout, state.dialogue_id, state.sources, state.seed,
                                        state.calls, tools)
    simulate = backend_simulator(state, runtime)
    reference = state.reference_time or reference_time_for(state.seed)
    messages, calls = [], []
    for i, call in enumerate(last.tool_calls):
        serial = len(state.calls) + i
        executed = await execute_call(
            sandboxes, tools, call, settings, position=i, serial=serial, malformed=malformed.get(call["id"]),
            reference_time=reference, messages=state.messages, rng_key=rng_key(state, "simulate", serial),
            simulate=simulate, task_index=state.task_index)
        calls.append(executed)
        messages.append(tool_message(executed))
    await asyncio.to_thread(sandboxes.recorded, calls)  # reads each sandbox's change-log mark
    update: dict[str, Any] = {"messages": messages, "calls": calls}
    diverged = [c for c in sandboxes.diverged if c not in state.replay_diverged]
    if diverged:  # the source did not give the same results twice: said in the line, the stats and `show`
        update["replay_diverged"] = state.replay_diverged + diverged
    return update


async def execute_call(sandboxes: DialogueSandboxes, tools: dict[str, Tool], call: dict[str, Any], settings: Settings,
                       *, position: int, serial: int, malformed: str | None, reference_time: str,
                       messages: list[AnyMessage], rng_key: str, simulate: Simulator, task_index: int) -> ExecutedCall:
    """One tool call checked (malformed, unknown tool, over the step's budget) and run on its sandbox: the one
    path of the executor node and of an RL episode. `position` is its place in the step, `serial` in the dialogue."""
    tool = tools.get(call["name"])
    source = sandboxes.source_of(tool) if tool is not None else None
    if malformed is not None:
        outcome = _refused("invalid_arguments", f"arguments are not valid JSON: {malformed[:200]!r}", source)
    elif tool is None:
        outcome = _refused("unknown_tool", f"there is no tool named {call['name']!r}; available: "
                                           f"{', '.join(sorted(tools)[:30])}")
    elif position >= settings.max_tool_calls_per_step:
        budget = settings.max_tool_calls_per_step
        outcome = _refused("budget_exceeded", f"only {budget} tool calls run per step; call it again", source)
    else:
        # one clock per dialogue: its seeded time, a minute on per call, recorded so replays match
        context = CallContext(reference_time=reference_time, clock=dialogue_clock(reference_time, serial),
                              rng_key=rng_key, messages=messages, max_rows=settings.max_result_rows,
                              max_argument_chars=settings.max_argument_chars, simulate=simulate)
        outcome = await sandboxes.call(tool, call["args"], context)
    return ExecutedCall(tool_call_id=call["id"], tool=call["name"], arguments=call["args"], result=outcome.result,
                        mode=tool.mode if tool else None, task_index=task_index, simulated=outcome.simulated,
                        clock=outcome.clock, record=outcome.record)


def tool_message(call: ExecutedCall) -> ToolMessage:
    return ToolMessage(content=tool_message_content(call.result), tool_call_id=call.tool_call_id, name=call.tool,
                       status="success" if call.result.ok else "error")
