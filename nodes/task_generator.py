"""Task generator node: the next descriptive task of the dialogue, grounded in schema and outcomes."""

from __future__ import annotations

import random
from typing import get_args

from langgraph.runtime import Runtime

from backends.protocols import Backend, TaskRequest
from backends.registry import stand_in_backend
from nodes.common import backend_of, rng_key, settings_of
from nodes.stored_values import schema_of, tools_of
from nodes.toolbox import offered
from nodes.variants import DIALOGUE_WIDE, dialogue_wide, draw_variant
from state.config import Settings
from state.dialogue import DialogueState, Usage
from state.targeting import TaskAim, Targeting
from state.tasks import Task, Variant
from state.tools import Tool
from verification.plan_check import check

DIFFICULTY_WEIGHTS = {"easy": 0.25, "medium": 0.45, "hard": 0.30}
REPLACEMENTS = 5  # stand-in tasks tried after the backend's task and its one retry are refused


async def task_generator(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    if len(state.planned_tasks) > len(state.tasks):  # an evaluation: the task is the benchmark's, not drawn
        return _started(state, state.planned_tasks[len(state.tasks)], Usage())
    key = rng_key(state, "task")
    rng = random.Random(key)
    difficulty = rng.choices(list(DIFFICULTY_WEIGHTS), weights=list(DIFFICULTY_WEIGHTS.values()))[0]
    relation = "first" if not state.tasks else rng.choice(["extends", "independent"])
    conversation = state.messages if not state.tasks and state.prelude else []
    if conversation:
        relation = "extends"
    settings = settings_of(runtime)
    tools = await tools_of(state, runtime)
    aim = None
    targeting = settings.targeting
    if targeting is not None:  # drawn apart from `rng`: an untargeted run draws exactly what it always drew
        difficulty, aim = aimed(targeting, random.Random(f"{key}:aim"), tools)
    schema = await schema_of(state, runtime)
    earlier = state.tasks[-1] if state.tasks else None
    variant = draw_variant(settings.variants, key, first=not state.tasks)
    if aim is not None and aim.variant in get_args(Variant) and (not state.tasks or aim.variant not in DIALOGUE_WIDE):
        variant = aim.variant  # a targeted run leans toward the variants the model failed
    if variant == "missing-info" and state.task_style == "question":  # a direct question has no turn to ask back in
        variant = "standard"
    # a later task is made from the tools the dialogue offers (a withheld tool stays withheld, decoys stay)
    with_decoys = offered(tools, earlier, schema)  # what replays of earlier calls need
    offered_now = [t for t in with_decoys if t.name not in (earlier.decoys if earlier else [])]
    # the task is kept only once its reference plan runs on a scratch copy of the dialogue's state (verification/plan_check.py)
    task, usage = await checked_task(state, with_decoys, settings, backend_of(runtime, state), TaskRequest(
        database=schema, tools=offered_now, difficulty=difficulty, relation=relation,
        previous_tasks=state.tasks, previous_calls=state.calls, conversation=conversation, style=state.task_style,
        rng_key=key, aim=aim, variant=variant,
    ))
    task = dialogue_wide(task, earlier, variant, tools, schema, settings.crowd, key, state.persona)
    return _started(state, task, usage)


async def checked_task(state: DialogueState, tools: list[Tool], settings: Settings, backend: Backend,
                       request: TaskRequest) -> tuple[Task, Usage]:
    """The backend's task once its plan passes; a refused one goes back once with the reason, then is replaced
    by a data-grounded task of the stand-in backend. Every refusal is recorded on the task that stands."""
    refused: list[str] = []
    stand_in = stand_in_backend()
    task, usage = await backend.generate_task(request)
    outcome = await check(state, tools, settings, task)
    if isinstance(outcome, str):
        refused.append(outcome)
        task, more = await backend.generate_task(request.model_copy(update={"feedback": outcome}))
        usage = usage + more
        outcome = await check(state, tools, settings, task)
    for n in range(REPLACEMENTS):
        if not isinstance(outcome, str):
            break
        refused.append(outcome)
        task, _ = await stand_in.generate_task(request.model_copy(
            update={"rng_key": f"{request.rng_key}:replacement:{n}", "feedback": ""}))
        outcome = await check(state, tools, settings, task)
    if isinstance(outcome, str):
        raise RuntimeError(f"no task passed the plan check ({len(refused) + 1} tried); the last: {outcome}")
    return task.model_copy(update={"expected": outcome.model_copy(update={"refused": refused})}), usage


def aimed(targeting: Targeting, rng: random.Random, tools: list[Tool]) -> tuple[str, TaskAim]:
    """A targeted task's difficulty and aim, each axis drawn from its slices' weights (a tool among those the
    dialogue has; a number of subtasks and a variant among those the evaluation saw)."""
    difficulty = targeting.draw("difficulty", rng, list(DIFFICULTY_WEIGHTS)) or "medium"
    writes = targeting.draw("writes", rng, ["read-only", "write"])
    subtasks = targeting.draw("subtasks", rng)
    tool = targeting.draw("tool", rng, [t.name for t in tools]) if tools else None
    variant = targeting.draw("variant", rng)
    return difficulty, TaskAim(writes=None if writes is None else writes == "write",
                               subtasks=int(subtasks) if subtasks and subtasks.isdigit() and int(subtasks) else None,
                               tool=tool, variant=variant)


def _started(state: DialogueState, task: Task, usage: Usage) -> dict:
    return {
        "tasks": [task],  # appended: tasks and task_starts are append-only channels
        "task_starts": [len(state.messages)],
        "user_turns_in_task": 0,
        "steps_in_turn": 0,
        "last_user_turn": None,
        "ended_by_budget": False,
        "usage": usage,
    }
