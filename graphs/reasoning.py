"""Method B's graphs: one reasoning item per thread, and the hardening loop over all items.

Item:  START ─┬─ mode "actions" → observe → act → reflect ⟲ → agent_user
              └─ otherwise (or the actions already taken) ──→ agent_user
       agent_user ─┬─ out of turns → question_generator → END (or END without a question)
                   └─ otherwise → knowledge_assistant ─┬─ the user said goodbye → question_generator (or END)
                                                       └─ otherwise → agent_user

Hardening:  START → solve → triage ─┬─ easy questions left and rounds left → regenerate → solve
                                     └─ otherwise → END
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from graphs.user_agent import wire_user_agent
from nodes.reasoning import agent_user, knowledge_assistant, question_generator, regenerate, solve, triage
from state.agent import HardeningInput, HardeningState, ItemInput, ItemOutput, ItemState, ReasoningSettings


def start(state: ItemState) -> Literal["observe", "agent_user"]:
    acting = state.mode == "actions" and state.profile is not None and not state.agent_done
    return "observe" if acting else "agent_user"


def after_user(state: ItemState) -> Literal["question_generator", "knowledge_assistant", "__end__"]:
    # Out of turns, the assistant has had the last word; a user who says goodbye still gets an answer.
    if not state.ended_by_budget:
        return "knowledge_assistant"
    return "question_generator" if state.make_question else END


def after_answer(state: ItemState) -> Literal["question_generator", "agent_user", "__end__"]:
    if not (state.last_user_turn is not None and state.last_user_turn.is_task_complete):
        return "agent_user"
    return "question_generator" if state.make_question else END


def build_reasoning_item_graph() -> StateGraph:
    builder = StateGraph(ItemState, context_schema=ReasoningSettings, input_schema=ItemInput,
                         output_schema=ItemOutput)
    wire_user_agent(builder, then="agent_user")
    builder.add_node("agent_user", agent_user)
    builder.add_node("knowledge_assistant", knowledge_assistant)
    builder.add_node("question_generator", question_generator)
    builder.add_conditional_edges(START, start)
    builder.add_conditional_edges("agent_user", after_user)
    builder.add_conditional_edges("knowledge_assistant", after_answer)
    builder.add_edge("question_generator", END)
    return builder


def after_triage(state: HardeningState) -> Literal["regenerate", "__end__"]:
    easy = any(e.status == "easy" for e in state.entries)
    return "regenerate" if easy and state.round < state.max_rounds else END


def build_hardening_graph() -> StateGraph:
    builder = StateGraph(HardeningState, context_schema=ReasoningSettings, input_schema=HardeningInput)
    builder.add_node("solve", solve)
    builder.add_node("triage", triage)
    builder.add_node("regenerate", regenerate)
    builder.add_edge(START, "solve")
    builder.add_edge("solve", "triage")
    builder.add_conditional_edges("triage", after_triage)
    builder.add_edge("regenerate", "solve")
    return builder


# Compiled without a checkpointer: the CLI, the tests and `langgraph dev` each bring their own.
graph = build_reasoning_item_graph().compile(name="reasoning_item")
hardening_graph = build_hardening_graph().compile(name="hardening")
