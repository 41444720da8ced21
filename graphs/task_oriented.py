"""The task-oriented dialogue graph: each task is one direct question, answered by the assistant with tools.

prepare → task_generator → pose_question → assistant ⇄ tool_executor → validator → next task or END
It shares every node but the question poser with the user-oriented graph.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import START, StateGraph

from graphs.dialogue import after_validator
from nodes.assistant import assistant
from nodes.question_poser import pose_question
from nodes.task_generator import task_generator
from nodes.tool_executor import tool_executor
from nodes.prepare import prepare
from nodes.validator import validator
from state.config import Settings
from state.dialogue import DialogueInput, DialogueOutput, DialogueState


def after_answer(state: DialogueState) -> Literal["tool_executor", "validator"]:
    last = state.messages[-1] if state.messages else None
    return "tool_executor" if getattr(last, "tool_calls", None) else "validator"


def build_task_oriented_graph() -> StateGraph:
    builder = StateGraph(DialogueState, context_schema=Settings, input_schema=DialogueInput,
                         output_schema=DialogueOutput)
    builder.add_node("prepare", prepare)
    builder.add_node("task_generator", task_generator)
    builder.add_node("pose_question", pose_question)
    builder.add_node("assistant", assistant)
    builder.add_node("tool_executor", tool_executor)
    builder.add_node("validator", validator)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "task_generator")
    builder.add_edge("task_generator", "pose_question")
    builder.add_edge("pose_question", "assistant")
    builder.add_conditional_edges("assistant", after_answer)
    builder.add_edge("tool_executor", "assistant")
    builder.add_conditional_edges("validator", after_validator)
    return builder


graph = build_task_oriented_graph().compile(name="task_oriented")
