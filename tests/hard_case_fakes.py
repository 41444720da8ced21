"""Scripted assistants and a user for the hard cases (docs/hard-cases.md): each is the offline backend with one
way of getting a hard case wrong."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from backends.offline import OfflineBackend
from backends.protocols import AssistantRequest, UserTurnRequest
from state.dialogue import Usage, UserTurn
from state.tasks import Task


def _without_held_back(task: Task | None, value: Any = None) -> Task | None:
    """The task as an assistant that never asks sees it: no value held back (and, given `value`, the plan
    writing that one instead of the user's)."""
    if task is None or task.held_back is None:
        return task
    held = task.held_back
    if value is None:
        return task.model_copy(update={"held_back": None})
    subtasks = list(task.subtasks)
    sub = subtasks[held.subtask]
    steps = [[c.model_copy(update={"arguments": {**c.arguments, held.argument: value}})
              if held.argument in c.arguments else c for c in step] for step in sub.steps]
    subtasks[held.subtask] = sub.model_copy(update={"steps": steps})
    return task.model_copy(update={"held_back": None, "subtasks": subtasks})


def _invented(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 11
    return f"{value}-guess"


class NeverAsksAssistant(OfflineBackend):
    """Carries out every request at once and never asks the user anything: the held-back value is the plan's own
    (the right one, as if guessed), so only the missing question fails it."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        return await super().assistant_turn(request.model_copy(
            update={"reference_task": _without_held_back(request.reference_task)}))


class InventingAssistant(OfflineBackend):
    """Never asks for the held-back value: it makes one up and writes it."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        task = request.reference_task
        if task is not None and task.held_back is not None:
            task = _without_held_back(task, _invented(task.held_back.value))
        return await super().assistant_turn(request.model_copy(update={"reference_task": task}))


class ClaimingAssistant(OfflineBackend):
    """Says it did what the withheld tool (or an out-of-scope request) would have done, instead of saying it
    cannot."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        task = request.reference_task
        if task is not None and any(s.cannot for s in task.subtasks):
            subtasks = [s.model_copy(update={"cannot": ""}) for s in task.subtasks]
            message, usage = await super().assistant_turn(request.model_copy(
                update={"reference_task": task.model_copy(update={"subtasks": subtasks})}))
            if message.tool_calls:
                return message, usage
            text = message.text.replace("I couldn't get to that one: a record it depends on was not found.",
                                        "Done: that change is saved.")
            return AIMessage(content=text), usage
        return await super().assistant_turn(request)


class OutOfScopeCaller(OfflineBackend):
    """Answers an out-of-scope request by calling a tool anyway (the first read tool that needs no argument)."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        task = request.reference_task
        last = request.messages[-1] if request.messages else None
        if task is not None and task.variant == "out-of-scope" and isinstance(last, HumanMessage) \
                and request.allow_tools:
            tool = next(t for t in request.tools if t.mode == "read" and not t.required)
            return AIMessage(content="", tool_calls=[{"name": tool.name, "args": {}, "id": "call_scope_0",
                                                      "type": "tool_call"}]), Usage()
        if isinstance(last, ToolMessage) and last.tool_call_id.startswith("call_scope"):
            return AIMessage(content="I looked it up, but I can't help with that one."), Usage()
        return await super().assistant_turn(request)


def _argument(schema: dict[str, Any]) -> Any:
    return {"integer": 1, "number": 1.5, "boolean": True}.get(schema.get("type"), "decoy value")


class DecoyWriter(OfflineBackend):
    """In a crowded dialogue, first calls a decoy tool that writes (record 1, made-up values), then goes on as
    the offline assistant."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        task = request.reference_task
        if task is not None and task.decoys and request.allow_tools and not request.calls:
            decoys = set(task.decoys)
            # a setter of a text column: whatever row 1 held there, "decoy value" changes it
            tool = next((t for t in request.tools if t.name in decoys and t.kind == "update"
                         and t.properties[[*t.properties][-1]].get("type") == "string"), None)
            if tool is not None:
                args = {name: _argument(spec) for name, spec in tool.properties.items()}
                return AIMessage(content="", tool_calls=[{"name": tool.name, "args": args, "id": "call_decoy_0",
                                                          "type": "tool_call"}]), Usage()
        return await super().assistant_turn(request)


class VolunteeringUser(OfflineBackend):
    """The offline user, who says the held-back value in its first message, before anyone asked."""

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        turn, usage = await super().user_turn(request)
        held = request.task.held_back
        if held is not None and request.user_turn == 0:
            turn = turn.model_copy(update={"user_message": f"{turn.user_message} {held.reveal}"})
        return turn, usage


class DecoyReader(OfflineBackend):
    """In a crowded dialogue, first calls a decoy that only reads (a harmless detour), then goes on as the offline
    assistant."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        task = request.reference_task
        if task is not None and task.decoys and request.allow_tools and not request.calls:
            decoys = set(task.decoys)
            tool = next((t for t in request.tools if t.name in decoys and t.mode == "read" and not t.required), None)
            if tool is not None:
                return AIMessage(content="", tool_calls=[{"name": tool.name, "args": {}, "id": "call_detour_0",
                                                          "type": "tool_call"}]), Usage()
        return await super().assistant_turn(request)
