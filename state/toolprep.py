"""Tool preparation: from a few seed tools to a consistent toolset with output schemas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from state.tools import DroppedTool, Tool


class Question(BaseModel):
    """A realistic user question for a domain, the seed of new tools."""

    text: str
    persona: str = ""
    complexity: Literal["simple", "multi_step", "edge_case"] = "simple"
    intents: list[str] = Field(default_factory=list, description="'action:entity' pairs it needs (offline hint).")


class StageReport(BaseModel):
    stage: str
    produced: int = 0
    kept: int = 0
    repaired: int = 0
    dropped: list[DroppedTool] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ToolprepInput(BaseModel):
    domain: str = Field(description="The domain the tools serve, e.g. 'online bookstore'.")
    seed_tools: list[Tool] = Field(description="The seed tools (OpenAI function specs).")
    seed: int = Field(0, description="Seed for every random choice.")
    question_count: int = Field(24, ge=20, le=30, description="How many questions to generate (20-30).")
    max_new_tools: int = Field(10, ge=0, le=10, description="At most this many tools from gap analysis.")


class ToolprepState(ToolprepInput):
    questions: list[Question] = Field(default_factory=list)
    designed: list[Tool] = Field(default_factory=list, description="Tools designed for the questions.")
    merged: list[Tool] = Field(default_factory=list, description="Seeds and designed tools, one per name.")
    expanded: list[Tool] = Field(default_factory=list, description="Tools added by gap analysis.")
    tools: list[Tool] = Field(default_factory=list, description="The final toolset, with output schemas.")
    field_types: dict[str, str] = Field(default_factory=dict, description="Canonical type of every field.")
    field_first_seen: dict[str, str] = Field(default_factory=dict)
    reports: list[StageReport] = Field(default_factory=list)


class ToolprepOutput(BaseModel):
    tools: list[Tool]
    reports: list[StageReport]
    field_types: dict[str, str]
