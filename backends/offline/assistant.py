"""The offline assistant: follows the task's reference plan for what the user asked, one step at a time.

It reads the latest user message, finds the subtasks it asks for (or a request to re-check a change),
runs every planned call whose inputs are known, chaining dynamic arguments from real results, and
answers in words taken only from the tool results.
"""

from __future__ import annotations

import json
import random

from langchain_core.messages import AIMessage, ToolMessage

from backends.protocols import AssistantRequest
from backends.offline.phrasing import ACKNOWLEDGEMENTS, describe_row, entity, pick, plural
from backends.offline.plan import Progress, Unit, call_id, held_value_given, last_user_index, units_for
from state.dialogue import ExecutedCall
from state.tools import ToolResult

CANNOT_REPLIES = [
    "I'm sorry, I can't do that: none of the tools I have can {what}.",
    "Unfortunately that is not something I can do here: I have no tool to {what}.",
]
HELD_QUESTIONS = [
    "Before I make that change: what {label} should I use?",
    "I can do that. Which {label} would you like?",
]


def _fragment(description: str) -> str:
    return description[0].lower() + description[1:].rstrip(".")


_NOT_UNDERSTOOD = [
    "Sorry, I'm not sure which records you mean. Could you tell me a name or another detail I can search for?",
    "I want to make sure I get this right: which record should I look at?",
]


def _pending(unit: Unit, progress: Progress) -> tuple[int, list] | None:
    """The first step of a unit not yet run, with its resolved calls; None when done or blocked."""
    for k, step in enumerate(unit.steps):
        if (unit.label, k) in progress.done:
            continue
        resolved = []
        for call in step:
            args = progress.resolve(call)
            if args is None:
                return None
            resolved.append((call.tool, args))
        return k, resolved
    return None


def _describe(call: ExecutedCall, table: str, rng: random.Random) -> str:
    result = call.result
    if result.error is not None:
        return f"{call.tool} failed: {result.error.message}."
    if result.rows is not None:
        if not result.rows:
            return f"I found no matching {plural(table)}."
        if len(result.rows) == 1:
            return pick(rng, ["Here it is: ", "This is the record: ", "Found it: "]) + describe_row(result.rows[0]) + "."
        more = " (showing the first ones)" if result.truncated else ""
        listed = "; ".join(describe_row(r, 3) for r in result.rows[:3])
        return f"I found {result.row_count} {plural(table)}{more}: {listed}."
    if call.mode == "write" and result.last_row_id is not None and result.rows_affected:
        return f"Done: the new {entity(table)} was added with id {result.last_row_id}."
    if result.rows_affected == 0:
        return "Nothing was changed: no record matched."
    return f"Done: {result.rows_affected} {entity(table)} record updated." if result.rows_affected == 1 else \
        f"Done: {result.rows_affected} records changed."


def _unanswered_results(request: AssistantRequest) -> list[ExecutedCall]:
    """Tool results at the end of the conversation that no assistant text has answered yet: the executed
    calls themselves; only a given conversation's results (never run here) are read from their text."""
    trailing: list[ToolMessage] = []
    for message in reversed(request.messages):
        if not isinstance(message, ToolMessage):
            break
        trailing.insert(0, message)
    executed = {c.tool_call_id: c for c in request.calls}
    calls = []
    for message in trailing:
        if message.tool_call_id in executed:
            calls.append(executed[message.tool_call_id])
            continue
        try:
            content = json.loads(message.text)
        except ValueError:
            continue
        if isinstance(content, dict):
            calls.append(ExecutedCall(tool_call_id=message.tool_call_id, tool=message.name or "tool", arguments={},
                                      result=ToolResult.from_content(content)))
    return calls


def assistant_turn(request: AssistantRequest) -> AIMessage:
    rng = random.Random(request.rng_key)
    if request.closing:
        return AIMessage(content=pick(rng, ACKNOWLEDGEMENTS))
    u = last_user_index(request.messages)
    task = request.reference_task
    if task is None or u < 0:
        return AIMessage(content=pick(rng, _NOT_UNDERSTOOD))
    units = units_for(task, request.messages[u].text)
    if not units:
        pending = _unanswered_results(request)
        if pending:  # a continued conversation stopped on tool results: answer from them
            tools = {t.name: t for t in request.tools}
            return AIMessage(content=" ".join(
                _describe(c, tools[c.tool].table if c.tool in tools else c.tool, rng) for c in pending))
        return AIMessage(content=pick(rng, _NOT_UNDERSTOOD))

    since_user = {m.tool_call_id for m in request.messages[u:] if isinstance(m, ToolMessage)}
    turn_calls = [c for c in request.calls if c.tool_call_id in since_user]
    # Results of earlier turns feed references; this turn's own progress decides what is left to do.
    progress = Progress.of(request.calls)
    this_turn = Progress.of(turn_calls)
    for key in list(progress.done):
        if key[0].startswith("v") and key not in this_turn.done:
            del progress.done[key]
    for unit in units:
        for k in range(len(unit.steps)):
            if unit.label.startswith("s") and (unit.label, k) in progress.done and (unit.label, k) not in this_turn.done:
                # asked again in a new message: run it again
                del progress.done[(unit.label, k)]

    tools = {t.name: t for t in request.tools}
    waiting = {u.subtask for u in units if task.held_back is not None and u.subtask == task.held_back.subtask
               and not held_value_given(task, request.messages)}
    if request.allow_tools:
        calls = []
        serial = sum(isinstance(m, ToolMessage) for m in request.messages)  # unique in the dialogue
        for unit in units:
            if unit.subtask in waiting or task.subtasks[unit.subtask].cannot:
                continue
            pending = _pending(unit, progress)
            if pending is None:
                continue
            k, resolved = pending
            for j, (tool, args) in enumerate(resolved):
                if tool in tools:
                    calls.append({"name": tool, "args": args, "id": call_id(unit.label, k, j, serial + len(calls)),
                                  "type": "tool_call"})
        if calls:
            return AIMessage(content="", tool_calls=calls)

    parts = []
    for unit in units:
        if task.subtasks[unit.subtask].cannot:
            parts.append(pick(rng, CANNOT_REPLIES).format(what=_fragment(task.subtasks[unit.subtask].description)))
            continue
        if unit.subtask in waiting and task.held_back is not None:
            parts.append(pick(rng, HELD_QUESTIONS).format(label=task.held_back.label))
            continue
        ran = [c for k in range(len(unit.steps)) for c in progress.done.get((unit.label, k), [])]
        if not ran:
            parts.append("I couldn't get to that one: a record it depends on was not found.")
            continue
        final = ran[-1]
        table = tools[final.tool].table if final.tool in tools else final.tool
        text = _describe(final, table, rng)
        if len(ran) > 1 and ran[0].result.rows == [] and ran[0] is not final:
            text = "I found no match, so I could not continue."
        parts.append(text)
    if any(u.label.startswith("v") for u in units):
        parts.insert(0, pick(rng, ["I checked again.", "I re-read the record to be sure."]))
    return AIMessage(content=" ".join(parts))
