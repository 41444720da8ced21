"""Assistant node: one step of the assistant, either tool calls or an answer to the user."""

from __future__ import annotations

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from backends.protocols import AssistantRequest
from nodes.common import backend_of, rng_key, settings_of
from nodes.toolbox import offered_tools
from state.dialogue import DialogueState
from state.config import Settings


CLOSING_FALLBACK = "You're welcome. Let me know if there is anything else I can do."


def normalize_tool_calls(message: AIMessage, used_ids: set[str]) -> AIMessage:
    """Every tool call gets a dialogue-unique id and dict arguments. Calls whose arguments were not
    JSON are kept as calls with no arguments and flagged, so the executor answers them with an error."""
    calls = []
    taken = set(used_ids)

    def fresh(candidate: str | None) -> str:
        if not candidate or candidate in taken:
            n = len(taken)
            while f"call_{n:04d}" in taken:
                n += 1
            candidate = f"call_{n:04d}"
        taken.add(candidate)
        return candidate

    for call in message.tool_calls:
        calls.append({**call, "id": fresh(call.get("id")), "args": dict(call.get("args") or {})})
    bad = []
    for invalid in message.invalid_tool_calls:
        bad_id = fresh(invalid.get("id"))
        bad.append(bad_id)
        calls.append({"name": invalid.get("name") or "unknown", "args": {}, "id": bad_id, "type": "tool_call"})
    kwargs = dict(message.additional_kwargs)
    kwargs.pop("tool_calls", None)
    if bad:
        kwargs["malformed_tool_call_ids"] = bad
        kwargs["malformed_tool_call_arguments"] = [str(inv.get("args") or "") for inv in message.invalid_tool_calls]
    return AIMessage(content=message.content, tool_calls=calls, additional_kwargs=kwargs,
                     response_metadata=message.response_metadata, id=message.id)


def current_task_calls(state: DialogueState):
    return [c for c in state.calls if c.task_index == state.task_index]


def task_closed(state: DialogueState) -> bool:
    """The user has declared the task done: the assistant's next text reply is the task's last message.
    (A direct question of the task-oriented pipeline is the user's whole part, not a farewell.)"""
    return bool(state.task_style == "descriptive" and state.last_user_turn and state.last_user_turn.is_task_complete
                and not state.ended_by_budget)


async def assistant(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    settings = settings_of(runtime)
    request = AssistantRequest(
        tools=await offered_tools(state, runtime), messages=state.messages, calls=current_task_calls(state),
        allow_tools=state.steps_in_turn < settings.max_steps_per_turn,
        reference_task=state.current_task, closing=task_closed(state),
        rng_key=rng_key(state, "assistant", state.user_turns_in_task, state.steps_in_turn),
    )
    message, usage = await backend_of(runtime, state).assistant_turn(request)
    message = normalize_tool_calls(message, used_ids={c.tool_call_id for c in state.calls})
    if not request.allow_tools and message.tool_calls:
        # The step budget is spent: drop further calls rather than loop forever.
        message = AIMessage(content=message.text or "I could not finish that within my step limit; "
                                                   "please tell me what to focus on.")
    if request.closing and not message.tool_calls and not message.text.strip():
        # The task's last message must say something: a dataset line never ends on an empty reply.
        message = AIMessage(content=CLOSING_FALLBACK, additional_kwargs=message.additional_kwargs,
                            response_metadata=message.response_metadata, id=message.id)
    update: dict = {"messages": [message], "usage": usage}
    if message.tool_calls:
        update["steps_in_turn"] = state.steps_in_turn + 1
    return update
