"""Descriptive tasks and their rubrics."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from state.personas import Persona
from state.verification import TaskExpectation

Difficulty = Literal["easy", "medium", "hard"]
Variant = Literal["standard", "missing-info", "missing-tool", "out-of-scope", "crowded"]
VARIANTS: tuple[str, ...] = ("standard", "missing-info", "missing-tool", "out-of-scope", "crowded")
RubricCategory = Literal["Critical", "Structural", "NonCritical", "InvalidRubric"]


class ResultRef(BaseModel):
    """A dynamic argument: a field of the first row that an earlier planned call returned."""

    subtask: int = Field(description="Index of the subtask whose call produced the row.")
    step: int = Field(description="Index of the step within that subtask.")
    field: str


ArgValue = ResultRef | str | int | float | bool | None


class PlannedCall(BaseModel):
    tool: str
    arguments: dict[str, ArgValue] = {}


class Subtask(BaseModel):
    description: str = Field(description="Third-person statement of this part of the goal.")
    ask: str = Field("", description="First-person phrasing a user could say for it.")
    changes_data: bool = Field(False, description="True when this part asks for a write.")
    steps: list[list[PlannedCall]] = Field(
        default_factory=list,
        description="Reference plan: sequential tool-use iterations, each a list of calls that may run together.",
    )
    alternative_steps: list[list[list[PlannedCall]]] = Field(
        default_factory=list, description="Other plans whose outcome is as acceptable (e.g. either free slot).")
    answer_fields: list[str] = Field(
        default_factory=list, description="Result fields whose values the user must be told; empty: the record's "
                                          "label, and the count when several rows come back.")
    cannot: str = Field("", description="Why this part cannot be done with the tools offered (missing tool, out of "
                                        "scope): no plan, no change, and the user must be told so.")


class HeldBack(BaseModel):
    """A value a write needs that the user leaves out of its requests and gives only when the assistant asks."""

    subtask: int = Field(description="The subtask whose write takes it.")
    argument: str = Field(description="The planned call's argument that carries it.")
    value: str | int | float | bool
    label: str = Field(description="What it is, in the user's words (e.g. 'new phone number').")
    reveal: str = Field(description="What the user says once asked for it.")


class RubricItem(BaseModel):
    text: str
    category: RubricCategory = "Critical"
    subtask: int | None = None
    tool: str | None = Field(None, description="The tool this item expects to have been called, if any.")
    arguments: dict[str, ArgValue] = Field(default_factory=dict, description="Expected argument values.")


class Rubric(BaseModel):
    success_criteria: list[str] = []
    expected_tool_pattern: list[str] = Field(
        default_factory=list, description="e.g. 'search_owners(last_name=<owner surname>)'."
    )
    checkpoints: list[str] = []
    items: list[RubricItem] = []


class Task(BaseModel):
    goal: str = Field(description="Self-contained statement of the user's end goal.")
    difficulty: Difficulty = "medium"
    subtasks: list[Subtask] = []
    rubric: Rubric = Field(default_factory=Rubric)
    relation: Literal["first", "extends", "independent"] = "first"
    style: Literal["descriptive", "question"] = "descriptive"
    expected: TaskExpectation | None = Field(None, description="Goal diff and required facts, from the plan check.")
    variant: Variant = Field("standard", description="Which hard case the task is (docs/hard-cases.md).")
    held_back: HeldBack | None = Field(None, description="missing-info: the value the user gives only when asked.")
    withheld_tools: list[str] = Field(default_factory=list, description="Tools of the toolset this dialogue's "
                                      "assistant is not offered (missing-tool; kept by the dialogue's later tasks).")
    decoys: list[str] = Field(default_factory=list, description="Decoy tools offered beside the toolset (crowded; "
                              "kept by the dialogue's later tasks), by name: environment/decoys.py makes them.")
    persona: Persona | None = Field(None, description="Who the user simulator plays (drawn per dialogue).")
