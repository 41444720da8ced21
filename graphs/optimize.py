"""The trilevel optimizer (method B, step 6): metric trees evolve outside, prompts are tuned inside.

START → score_unoptimized → seed_population ─┬─ steps > 0 → tune ⟲ (until the tree's steps are done) → judge
                                              └─ otherwise ─────────────────────────────────────────→ judge
judge ─┬─ trees left in this generation → tune (or judge)
       ├─ generations left → select → tune (or judge)
       └─ otherwise → END
"""

from __future__ import annotations

from functools import partial
from typing import Literal

from langgraph.graph import END, START, StateGraph

from graphs.reasoning import build_reasoning_item_graph
from nodes.optimizer import judge, score_unoptimized, seed_population, select, tune
from state.agent import ReasoningSettings
from state.optimize import OptimizeInput, OptimizeState


def next_tree(state: OptimizeState) -> Literal["tune", "judge"]:
    return "tune" if state.budget.steps > 0 else "judge"


def after_tune(state: OptimizeState) -> Literal["tune", "judge"]:
    return "tune" if len(state.population[state.current].steps) < state.budget.steps else "judge"


def after_judge(state: OptimizeState) -> Literal["tune", "judge", "select", "__end__"]:
    if state.current < len(state.population):
        return next_tree(state)
    return "select" if state.generation + 1 < state.budget.generations else END


def build_optimizer_graph() -> StateGraph:
    # the dialogues are made by the reasoning item graph, from action sequences taken beforehand
    # without a checkpointer of its own (False: nor the optimizer's): dialogues are scored, not kept
    dialogue_graph = build_reasoning_item_graph().compile(checkpointer=False, name="optimizer_dialogue")
    builder = StateGraph(OptimizeState, context_schema=ReasoningSettings, input_schema=OptimizeInput)
    builder.add_node("score_unoptimized", partial(score_unoptimized, dialogue_graph=dialogue_graph))
    builder.add_node("seed_population", seed_population)
    builder.add_node("tune", partial(tune, dialogue_graph=dialogue_graph))
    builder.add_node("judge", partial(judge, dialogue_graph=dialogue_graph))
    builder.add_node("select", select)
    builder.add_edge(START, "score_unoptimized")
    builder.add_edge("score_unoptimized", "seed_population")
    builder.add_conditional_edges("seed_population", next_tree)
    builder.add_conditional_edges("tune", after_tune)
    builder.add_conditional_edges("judge", after_judge)
    builder.add_conditional_edges("select", next_tree)
    return builder


# Compiled without a checkpointer: the CLI, the tests and `langgraph dev` each bring their own.
graph = build_optimizer_graph().compile(name="optimizer")
