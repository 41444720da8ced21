"""The reference policy: the offline backend's plan-following assistant plays an episode.

It runs the task's reference plan as the user asks for it (chaining ids from real results) and tells what the
tools returned, so on an offline run it earns the full reward: the check that the environment's reward is
reachable, and a baseline for tests and benchmarks. `edit` may change each call before it runs (a policy that
writes a wrong value).
"""

from __future__ import annotations

from typing import Any, Callable

from backends.offline.assistant import assistant_turn
from backends.protocols import AssistantRequest
from nodes.common import seeded_key
from rl.episode import Episode, Reward

CallEdit = Callable[[str, dict[str, Any]], dict[str, Any]]


async def play_reference(episode: Episode, task_id: str, user_seed: int | None = None,
                         edit: CallEdit | None = None) -> Reward:
    """Reset to the task, play it to the user's end with the reference plan, and return the reward."""
    await episode.areset(task_id, user_seed)
    task = episode.task
    assert task is not None
    tools = list(episode.environments.tools_of(task).values())
    settings = episode.environments.settings
    steps = turns = 0
    while True:
        closing = episode.done
        message = assistant_turn(AssistantRequest(
            tools=tools, messages=episode.messages, calls=episode.calls,
            allow_tools=steps < settings.max_steps_per_turn,
            reference_task=task.task, closing=closing,
            rng_key=seeded_key(task.seed, "assistant", task.index + 1, turns, steps)))
        if message.tool_calls and steps < settings.max_steps_per_turn:
            for call in message.tool_calls:
                arguments = dict(call.get("args") or {})
                await episode.acall_tool(call["name"], edit(call["name"], arguments) if edit else arguments, call["id"])
            steps += 1
            continue
        await episode.asend_message_to_user(message.text)
        if closing:
            return await episode.areward()
        steps, turns = 0, turns + 1
