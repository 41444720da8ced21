"""The tool-preparation graph: questions → design → merge → expand → output schemas → check."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from nodes.toolprep import (CheckIn, DesignIn, ExpandIn, MergeIn, OutputsIn, QuestionsIn, check, design, expand,
                            merge, outputs, questions)
from state.config import Settings
from state.toolprep import ToolprepInput, ToolprepOutput, ToolprepState


def build_toolprep_graph() -> StateGraph:
    builder = StateGraph(ToolprepState, context_schema=Settings, input_schema=ToolprepInput,
                         output_schema=ToolprepOutput)
    stages = [("questions", questions, QuestionsIn), ("design", design, DesignIn), ("merge", merge, MergeIn),
              ("expand", expand, ExpandIn), ("output_schemas", outputs, OutputsIn), ("check", check, CheckIn)]
    previous = START
    for name, node, _ in stages:
        builder.add_node(name, node)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder


graph = build_toolprep_graph().compile(name="toolprep")
