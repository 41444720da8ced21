"""The user agent graph: observe → act → reflect, until the agent stops or its action budget is spent.

START → observe → act → reflect ─┬─ continue → observe
                                  └─ done → END (or the node named by `then`)
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from nodes.user_agent import act, observe, reflect
from state.agent import ReasoningSettings, UserAgentInput, UserAgentState


def after_reflect(state: UserAgentState) -> Literal["observe", "done"]:
    return "done" if state.agent_done else "observe"


def wire_user_agent(builder: StateGraph, then: str = END) -> str:
    """Add the agent's three nodes to a graph whose state extends UserAgentState; returns the entry node."""
    builder.add_node("observe", observe)
    builder.add_node("act", act)
    builder.add_node("reflect", reflect)
    builder.add_edge("observe", "act")
    builder.add_edge("act", "reflect")
    builder.add_conditional_edges("reflect", after_reflect, {"observe": "observe", "done": then})
    return "observe"


def build_user_agent_graph() -> StateGraph:
    builder = StateGraph(UserAgentState, context_schema=ReasoningSettings, input_schema=UserAgentInput)
    builder.add_edge(START, wire_user_agent(builder))
    return builder


# Compiled without a checkpointer: the CLI, the tests and `langgraph dev` each bring their own.
graph = build_user_agent_graph().compile(name="user_agent")
