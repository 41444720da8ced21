"""Policies for the RL environment tests: the reference policy as an OpenAI-compatible "model" (for the stub
server that verifiers' evaluation talks to), and one that never calls a tool."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import convert_to_messages

from backends.offline.assistant import assistant_turn
from backends.protocols import AssistantRequest
from nodes.common import seeded_key
from rl.suite import Environments
from state.benchmark import _calls
from tests.stub_server import content_text


class ReferenceModel:
    """A stub-server responder that plays each task's reference plan, as rl.oracle does in-process: it knows
    the task by the user's opening (the openings are deterministic for the default user seed)."""

    def __init__(self, environments: Environments, openings: dict[str, str], silent: set[str] = frozenset()) -> None:
        self.environments = environments
        self.task_of_opening = {text: task_id for task_id, text in openings.items()}
        self.silent = set(silent)  # tasks this model never calls a tool on
        self.requests = 0

    def __call__(self, request: dict[str, Any]) -> dict[str, Any] | str:
        self.requests += 1
        messages = [m for m in request.get("messages", []) if m.get("role") != "system"]
        for m in messages:
            m["content"] = content_text(m.get("content")) if m.get("content") is not None else None
        start = max(i for i, m in enumerate(messages) if m["role"] == "user"
                    and content_text(m["content"]) in self.task_of_opening)
        task = self.environments.task(self.task_of_opening[messages[start]["content"]])
        if task.task_id in self.silent:
            return silent_model(request)
        tools = self.environments.tools_of(task)
        calls = _calls(messages[start:], {}, task.index, tools)
        turns = sum(m["role"] == "user" for m in messages[start:]) - 1
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        steps = sum(m["role"] == "assistant" and bool(m.get("tool_calls")) for m in messages[last_user:])
        # the keys rl.oracle.play_reference uses: the same words, so the same user replies
        key = seeded_key(task.seed, "assistant", task.index + 1, turns, steps)
        message = assistant_turn(AssistantRequest(tools=list(tools.values()), messages=convert_to_messages(messages),
                                                  calls=calls, reference_task=task.task, rng_key=key))
        if message.tool_calls:
            return {"content": message.text or None,
                    "tool_calls": [{"id": c["id"], "name": c["name"], "arguments": json.dumps(c["args"])}
                                   for c in message.tool_calls]}
        return message.text


def silent_model(request: dict[str, Any]) -> str:
    """A model that never calls a tool."""
    return "Sorry, I can't look that up right now."
