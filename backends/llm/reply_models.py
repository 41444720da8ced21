"""The reply models of the JSON roles: what each role's reply must look like (their JSON Schema is
sent to the server as `response_format`), and the parsing that turns a reply into our state models.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backends.protocols import JudgeRequest, TaskRequest
from backends.llm import structured
from backends.llm.replies import ReplyError
from state.dialogue import UserTurn, Verdict
from state.tasks import Task
from state.toolprep import Question


@cache
def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """A reply model's JSON Schema as sent to the server (with bounds on open strings and lists), built
    once per model class (the hot path reuses it)."""
    return structured.bounded(model.model_json_schema())


class ToolProposal(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    sql: str
    mode: Literal["read", "write"] = "read"
    kind: str = "other"
    table: str = ""


_CATEGORIES = {"critical": "Critical", "structural": "Structural", "noncritical": "NonCritical",
               "invalidrubric": "InvalidRubric"}


class Questions(BaseModel):
    questions: list[Question]


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str = ""
    parameters: dict[str, Any]


class ToolSpecsReply(BaseModel):
    """What a tool designer is asked for (the schema sent to the server)."""
    tools: list[ToolSpec]


class ToolSpecs(BaseModel):
    """How its reply is read: kept as given, each spec checked."""
    tools: list[dict[str, Any]]

    def model_post_init(self, _: Any) -> None:
        for tool in self.tools:
            ToolSpec.model_validate(tool)


def parse_output_schema(obj: dict[str, Any]) -> dict[str, object]:
    schema = obj.get("schema", obj) if isinstance(obj.get("schema"), dict) else obj
    if schema.get("type") not in ("object", "array"):
        raise ReplyError("the output schema's top-level type must be 'object' or 'array'")
    return schema


def parse_task(obj: dict[str, Any], request: TaskRequest) -> Task:
    subtasks = obj.get("subtasks")
    if isinstance(subtasks, list):
        # A bare string is a common shortcut for a subtask; it is both the statement and the ask.
        obj = {**obj, "subtasks": [{"description": s, "ask": s} if isinstance(s, str) else s for s in subtasks]}
    # the hard case is the request's (crowded is the node's: its decoys do not change the task)
    variant = request.variant if request.variant in ("missing-info", "missing-tool", "out-of-scope") else "standard"
    obj = {k: v for k, v in obj.items() if k not in ("variant", "decoys", "persona")}
    task = Task.model_validate({**obj, "difficulty": request.difficulty, "relation": request.relation,
                                "variant": variant})
    if not task.subtasks:
        raise ReplyError("subtasks: at least one subtask is required")
    return task


def parse_user_turn(obj: dict[str, Any]) -> UserTurn:
    turn = UserTurn.model_validate(obj)
    if not turn.user_message.strip():
        raise ReplyError("user_message: must not be empty")
    return turn


def parse_verdict(obj: dict[str, Any], request: JudgeRequest) -> Verdict:
    obj = dict(obj)
    if isinstance(obj.get("judgment"), str):
        obj["judgment"] = obj["judgment"].strip().lower()
    if isinstance(obj.get("items"), list):
        obj["items"] = [
            {**item, "category": _CATEGORIES.get(re.sub(r"[^a-z]", "", item["category"].lower()), item["category"])}
            if isinstance(item, dict) and isinstance(item.get("category"), str) else item
            for item in obj["items"]
        ]
    verdict = Verdict.model_validate({**obj, "task_index": request.task_index})
    # The same hard rules as the offline judge, so both backends agree on them whatever the model says:
    # completion is premature only if the user declared it; an unmet Critical item or a conversation
    # cut off by the turn budget is invalid.
    unmet = [i for i in verdict.items if i.category == "Critical" and i.met is False]
    premature = request.user_declared_complete and (verdict.premature_completion or bool(unmet))
    judgment = verdict.judgment
    reasoning = verdict.reasoning
    if judgment == "valid" and (unmet or not request.user_declared_complete):
        judgment = "invalid"
        why = ("the user never declared the goal complete" if not request.user_declared_complete
               else f"{len(unmet)} Critical item(s) unmet")
        reasoning = f"[overridden to invalid: {why}] {reasoning}"
    return verdict.model_copy(update={"judgment": judgment, "reasoning": reasoning, "premature_completion": premature})


class Proposals(BaseModel):
    """What a tool synthesizer is asked for (the schema sent to the server)."""
    tools: list[ToolProposal]


class ToolList(BaseModel):
    """How its reply is read: each tool is checked later by running it, so one bad tool drops alone."""
    tools: list[dict[str, Any]]


class RepairedTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    sql: str


class RepairReply(ToolProposal):
    """A repaired tool, the same fields as a proposal."""


class PlannedCallReply(BaseModel):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict,
                                      description='Values, or {"subtask": S, "step": K, "field": "column"}.')


class SubtaskReply(BaseModel):
    description: str
    ask: str = Field("", description="How the user might phrase it.")
    changes_data: bool = False
    steps: list[list[PlannedCallReply]] = Field(default_factory=list, description="The reference plan.")
    answer_fields: list[str] = []
    cannot: str = Field("", description="Hard cases only: why this part cannot be done (no steps then).")


class HeldBackReply(BaseModel):
    subtask: int
    argument: str
    value: str | int | float | bool
    label: str
    reveal: str


class RubricReply(BaseModel):
    success_criteria: list[str] = []
    expected_tool_pattern: list[str] = []
    checkpoints: list[str] = []


class TaskReply(BaseModel):
    goal: str
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    subtasks: list[SubtaskReply] = Field(min_length=1)
    rubric: RubricReply = Field(default_factory=RubricReply)
    held_back: HeldBackReply | None = Field(None, description="missing-info tasks only.")
    withheld_tools: list[str] = Field(default_factory=list, description="missing-tool tasks only.")


class JudgedItemReply(BaseModel):
    text: str
    category: Literal["Critical", "Structural", "NonCritical", "InvalidRubric"]
    met: bool | None = None
    note: str = ""


class VerdictReply(BaseModel):
    judgment: Literal["valid", "invalid"]
    reasoning: str
    premature_completion: bool = False
    items: list[JudgedItemReply] = []


# An output schema is itself a JSON Schema: ask only for its top level.
OUTPUT_SCHEMA_REPLY: dict[str, Any] = {
    "type": "object", "properties": {"type": {"type": "string", "enum": ["object", "array"]}}, "required": ["type"]}


def simulated_result_schema(output_schema: dict[str, Any]) -> dict[str, Any]:
    """A simulated tool's reply: its output schema, wrapped as {"result": ...} when it is not an object."""
    if output_schema.get("type") == "object":
        return output_schema
    return {"type": "object", "properties": {"result": output_schema}, "required": ["result"]}
