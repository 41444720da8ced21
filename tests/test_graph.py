"""The dialogue graph: guards, error handling, premature completion and checkpoint round trips."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from backends.protocols import AssistantRequest, UserTurnRequest
from backends.offline import OfflineBackend
from backends.registry import register_backend
from graphs.dialogue import build_dialogue_graph
from runner.persistence import open_checkpointer
from state.config import Settings
from state.dialogue import ExecutedCall, UserTurn, Verdict
from state.tasks import Task
from tests.conftest import CLINIC


def _run(backend_name: str, tasks: int = 1, seed: int = 5, checkpointer=None, **settings):
    graph = build_dialogue_graph().compile(checkpointer=checkpointer or InMemorySaver())
    cfg = {"configurable": {"thread_id": f"t-{backend_name}-{seed}"}, "recursion_limit": 400}
    start = {"dialogue_id": "t", "source_db": str(CLINIC), "seed": seed, "tasks_per_dialogue": tasks}
    return asyncio.run(graph.ainvoke(start, cfg, context=Settings(backend=backend_name, **settings)))


class EagerUser(OfflineBackend):
    """A simulated user that declares success at once, every time: the classic early ending."""

    async def user_turn(self, request: UserTurnRequest):
        return UserTurn(user_message="Thanks, that's all!", is_task_complete=True), await _zero()


class LazyAssistant(OfflineBackend):
    """An assistant that never calls a tool and just claims success."""

    async def assistant_turn(self, request: AssistantRequest):
        return AIMessage(content="All done, your record 4242 is updated."), await _zero()


class SloppyAssistant(OfflineBackend):
    """An assistant that invents a tool, sends malformed arguments, then follows the plan."""

    async def assistant_turn(self, request: AssistantRequest):
        tool_messages = sum(isinstance(m, ToolMessage) for m in request.messages)
        if tool_messages == 0:
            return AIMessage(content="", tool_calls=[{"name": "find_everything", "args": {}, "id": "x1"}],
                             invalid_tool_calls=[{"name": "get_owner", "args": "{owner_id: 3", "id": "x2",
                                                  "error": "bad json", "type": "invalid_tool_call"}]), await _zero()
        return await super().assistant_turn(request)


async def _zero():
    from state.dialogue import Usage

    return Usage()


def test_a_user_ending_before_any_answer_is_refused():
    register_backend("eager-user", EagerUser())
    final = _run("eager-user", max_user_turns_per_task=4)
    users = [m for m in final["messages"] if m.type == "human"]
    assert len(users) >= 2, "the first premature completion must have been refused"
    verdict = final["verdicts"][-1]
    assert verdict.judgment == "invalid" and verdict.premature_completion


def test_a_lazy_assistant_is_caught_by_the_validator():
    register_backend("lazy-assistant", LazyAssistant())
    final = _run("lazy-assistant", max_user_turns_per_task=6)
    verdict = final["verdicts"][-1]
    assert verdict.judgment == "invalid"
    assert "4242" in verdict.reasoning or "ungrounded" in json.dumps([i.model_dump() for i in verdict.items])


def test_invented_tools_and_malformed_arguments_become_error_results():
    register_backend("sloppy-assistant", SloppyAssistant())
    final = _run("sloppy-assistant")
    errors = {c.tool_call_id: c.result.error.type for c in final["calls"] if c.result.error}
    assert errors["x1"] == "unknown_tool" and errors["x2"] == "invalid_arguments"
    tool_messages = {m.tool_call_id: json.loads(m.text) for m in final["messages"] if isinstance(m, ToolMessage)}
    assert "no tool named 'find_everything'" in tool_messages["x1"]["error"]["message"]
    assert "not valid JSON" in tool_messages["x2"]["error"]["message"]
    assert any(c.result.ok for c in final["calls"])  # and the dialogue went on


def test_turn_budget_ends_a_task_and_rejects_it():
    register_backend("lazy-assistant-2", LazyAssistant())
    final = _run("lazy-assistant-2", max_user_turns_per_task=2, min_user_turns_per_task=5)
    assert sum(m.type == "human" for m in final["messages"]) == 2
    assert final["verdicts"][-1].judgment == "invalid"


def test_step_guard_stops_a_tool_loop():
    class Looper(OfflineBackend):
        async def assistant_turn(self, request: AssistantRequest):
            call = {"name": "get_owner", "args": {"owner_id": 1}, "id": None}
            return AIMessage(content="", tool_calls=[call] if request.allow_tools else []), await _zero()

    register_backend("looper", Looper())
    final = _run("looper", max_steps_per_turn=3, max_user_turns_per_task=2)
    per_turn = [c for c in final["calls"]]
    assert len(per_turn) <= 3 * 2


def test_state_comes_back_as_models_after_a_checkpoint_round_trip(tmp_path):
    async def go():
        async with open_checkpointer(tmp_path / "cp.sqlite") as saver:
            graph = build_dialogue_graph().compile(checkpointer=saver)
            cfg = {"configurable": {"thread_id": "rt"}, "recursion_limit": 400}
            await graph.ainvoke({"dialogue_id": "rt", "source_db": str(CLINIC), "seed": 1, "tasks_per_dialogue": 1},
                                cfg, context=Settings(backend="offline"))
        async with open_checkpointer(tmp_path / "cp.sqlite") as saver:
            graph = build_dialogue_graph().compile(checkpointer=saver)
            return (await graph.aget_state({"configurable": {"thread_id": "rt"}})).values

    values = asyncio.run(go())
    assert isinstance(values["tasks"][0], Task)
    assert isinstance(values["calls"][0], ExecutedCall)
    assert isinstance(values["verdicts"][0], Verdict)
    assert isinstance(values["last_user_turn"], UserTurn)


def test_a_registered_backend_is_forgotten_when_unregistered():
    from backends.registry import backend_for, unregister_backends
    from environment.errors import InputError

    backend = EagerUser()
    register_backend("forgettable", backend)
    assert backend_for(Settings(backend="forgettable")) is backend
    unregister_backends("forgettable")
    with pytest.raises(InputError, match="unknown backend 'forgettable'"):
        backend_for(Settings(backend="forgettable"))
