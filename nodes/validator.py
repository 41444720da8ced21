"""Validator node: judges the task just finished against its rubric."""

from __future__ import annotations

from langgraph.runtime import Runtime

from backends.protocols import JudgeRequest
from nodes.assistant import current_task_calls
from nodes.common import backend_of
from state.config import Settings
from state.dialogue import DialogueState


async def validator(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    task = state.current_task
    assert task is not None
    start = state.task_starts[-1]
    declared = bool(state.last_user_turn and state.last_user_turn.is_task_complete) and not state.ended_by_budget
    verdict, usage = await backend_of(runtime, state).judge(JudgeRequest(
        task=task, messages=state.messages[start:], calls=current_task_calls(state),
        user_declared_complete=declared, ended_by_budget=state.ended_by_budget, task_index=state.task_index,
    ))
    return {"verdicts": [verdict.model_copy(update={"task_index": state.task_index})], "usage": usage}
