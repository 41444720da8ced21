"""User simulator node: the next user message, and whether the user considers the task done."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from backends.protocols import Backend, UserTurnRequest
from nodes.common import backend_of, rng_key, settings_of
from state.config import Settings
from state.dialogue import DialogueState, Usage, UserTurn

EARLY_END_REMINDER = (
    "You have not yet seen results for every part of your goal. Do not end the conversation: "
    "ask for the next part, or ask the assistant to check what is still open."
)


def _too_early(request: UserTurnRequest, turn: UserTurn, min_turns: int) -> bool:
    """Simulated users like to stop early; a completion before any answer or the minimum turns is refused."""
    if not turn.is_task_complete:
        return False
    answered = any(isinstance(m, AIMessage) for m in request.messages[request.task_start:])
    return not answered or request.user_turn + 1 < min_turns


async def next_user_turn(backend: Backend, request: UserTurnRequest, min_turns: int) -> tuple[UserTurn, Usage]:
    """The simulated user's next turn, a completion that comes too early asked again once, then refused."""
    turn, usage = await backend.user_turn(request)
    if _too_early(request, turn, min_turns):
        turn, more = await backend.user_turn(request.model_copy(update={"reminder": EARLY_END_REMINDER}))
        usage = usage + more
        if _too_early(request, turn, min_turns):
            turn = turn.model_copy(update={"is_task_complete": False})
    return turn, usage


async def user_simulator(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    settings = settings_of(runtime)
    if state.user_turns_in_task >= settings.max_user_turns_per_task:
        return {"ended_by_budget": True}
    backend = backend_of(runtime, state)
    task = state.current_task
    assert task is not None, "the task generator runs before the user simulator"
    request = UserTurnRequest(task=task, messages=state.messages, task_start=state.task_starts[-1],
                              user_turn=state.user_turns_in_task, rng_key=rng_key(state, "user", state.user_turns_in_task))
    turn, usage = await next_user_turn(backend, request, settings.min_user_turns_per_task)
    return {
        "messages": [HumanMessage(content=turn.user_message)],
        "last_user_turn": turn,
        "user_turns_in_task": state.user_turns_in_task + 1,
        "steps_in_turn": 0,
        "usage": usage,
    }
