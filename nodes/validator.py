"""Validator node: checks the task just finished, state first (verification/), then its rubric (the judge).

The task's real diff is read from the dialogue's own sandboxes (the run's pool), not from copies."""

from __future__ import annotations

import asyncio

from langgraph.runtime import Runtime

from backends.protocols import JudgeRequest
from environment.sources.pool import current_pool
from nodes.assistant import current_task_calls
from nodes.common import backend_of
from nodes.toolbox import offered_tools
from verification.hard_cases import checked
from verification.state_check import live_diff
from verification.verdict import verify
from state.config import Settings
from state.dialogue import DialogueState
from state.verification import StateDiff


async def validator(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    task = state.current_task
    assert task is not None
    start = state.task_starts[-1]
    declared = bool(state.last_user_turn and state.last_user_turn.is_task_complete) and not state.ended_by_budget
    calls = current_task_calls(state)
    verdict, usage = await backend_of(runtime, state).judge(JudgeRequest(
        task=task, messages=state.messages[start:], calls=calls,
        user_declared_complete=declared, ended_by_budget=state.ended_by_budget, task_index=state.task_index,
    ))
    tools = {t.name: t for t in await offered_tools(state, runtime)}
    earlier = [c for c in state.calls if c.task_index < state.task_index]
    actual, diverged = StateDiff(), []
    if any(c.mode == "write" and c.result.ok for c in calls):  # reads change nothing
        # the dialogue's own sandboxes hold every call so far: the task's diff is read from their change logs
        boxes = await asyncio.to_thread(current_pool().checkout, state.dialogue_id, state.sources, state.seed,
                                        state.calls, tools)
        actual, replayed = await asyncio.to_thread(live_diff, boxes, earlier, calls, tools)
        diverged = [*boxes.diverged, *replayed]
    verification = checked(task, state.messages[start:], calls,
                           verify(task, state.messages[start:], calls, actual, verdict.judgment == "valid"))
    update = {"task_index": state.task_index, "verification": verification}
    failures = verification.failures()
    if failures:  # the state, the facts or the user failed: invalid whatever the judge said
        judge = "passed" if verdict.judgment == "valid" else "failed"
        update |= {"judgment": "invalid", "reasoning": "; ".join(failures) + f" (the judge {judge}: {verdict.reasoning})"}
    result = {"verdicts": [verdict.model_copy(update=update)], "usage": usage}
    if new := [c for c in diverged if c not in state.replay_diverged]:
        result["replay_diverged"] = state.replay_diverged + new
    return result
