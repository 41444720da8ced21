"""The user-oriented dialogue graph.

prepare → task_generator → user_simulator ─┬─ out of turns → validator ─┬─ next task → task_generator
                               ↑            └─ otherwise → assistant      └─ done → END
                               │                  ⇅ tool_executor (while it calls tools)
                               └──── answer ──────┴── the user closed the task: acknowledgement → validator
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from nodes.assistant import assistant, task_closed
from nodes.task_generator import task_generator
from nodes.tool_executor import tool_executor
from nodes.prepare import prepare
from nodes.user_simulator import user_simulator
from nodes.validator import validator
from state.config import Settings
from state.dialogue import DialogueInput, DialogueOutput, DialogueState


def after_task(state: DialogueState) -> Literal["assistant", "user_simulator"]:
    """A continued conversation may stop on a user message or a tool result: the assistant answers it
    before the user speaks again, so roles keep alternating."""
    last = state.messages[-1] if state.messages else None
    waiting = getattr(last, "type", "") in ("tool", "human")
    return "assistant" if waiting and not state.user_turns_in_task else "user_simulator"


def after_user(state: DialogueState) -> Literal["validator", "assistant"]:
    # Out of turns, the user says nothing more and the assistant has had the last word already; a user
    # who declares the task done still gets the assistant's acknowledgement before the validator.
    return "validator" if state.ended_by_budget else "assistant"


def after_assistant(state: DialogueState) -> Literal["tool_executor", "validator", "user_simulator"]:
    last = state.messages[-1] if state.messages else None
    if getattr(last, "tool_calls", None):
        return "tool_executor"
    return "validator" if task_closed(state) else "user_simulator"


def after_validator(state: DialogueState) -> Literal["task_generator", "__end__"]:
    if state.verdicts and state.verdicts[-1].judgment == "invalid":
        return END  # the dialogue is rejected already; spend nothing more on it
    return "task_generator" if len(state.tasks) < state.tasks_per_dialogue else END


def build_dialogue_graph() -> StateGraph:
    builder = StateGraph(DialogueState, context_schema=Settings, input_schema=DialogueInput,
                         output_schema=DialogueOutput)
    builder.add_node("prepare", prepare)
    builder.add_node("task_generator", task_generator)
    builder.add_node("user_simulator", user_simulator)
    builder.add_node("assistant", assistant)
    builder.add_node("tool_executor", tool_executor)
    builder.add_node("validator", validator)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "task_generator")
    builder.add_conditional_edges("task_generator", after_task)
    builder.add_conditional_edges("user_simulator", after_user)
    builder.add_conditional_edges("assistant", after_assistant)
    builder.add_edge("tool_executor", "assistant")
    builder.add_conditional_edges("validator", after_validator)
    return builder


# Compiled without a checkpointer: the CLI, the tests and `langgraph dev` each bring their own.
graph = build_dialogue_graph().compile(name="dialogue")
