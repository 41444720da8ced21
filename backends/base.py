"""The backend protocol and the request models nodes hand to it."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, AnyMessage
from pydantic import BaseModel, Field

from state.dialogue import ExecutedCall, Usage, UserTurn, Verdict
from state.schema import DatabaseSchema
from state.tasks import Difficulty, Task
from state.tools import Tool


class ToolProposalRequest(BaseModel):
    database: DatabaseSchema
    max_tools: int = 40


class ToolRepairRequest(BaseModel):
    database: DatabaseSchema
    tool: dict[str, object]
    error: str


class TaskRequest(BaseModel):
    database: DatabaseSchema
    tools: list[Tool]
    difficulty: Difficulty
    relation: Literal["first", "extends", "independent"]
    previous_tasks: list[Task] = []
    previous_calls: list[ExecutedCall] = Field(default_factory=list, description="Outcomes of earlier tasks.")
    conversation: list[AnyMessage] = Field(
        default_factory=list, description="A given conversation the first task must follow on from.")
    rng_key: str = Field(description="Seeds every random choice of this request.")


class UserTurnRequest(BaseModel):
    task: Task
    messages: list[AnyMessage]
    task_start: int = Field(description="Index in messages where the current task began.")
    user_turn: int = Field(description="How many user turns this task already has.")
    reminder: str = Field("", description="A correction for the simulator, e.g. after it tried to end too early.")
    rng_key: str


class AssistantRequest(BaseModel):
    tools: list[Tool]
    messages: list[AnyMessage]
    calls: list[ExecutedCall] = []
    allow_tools: bool = Field(True, description="False when the step budget is spent: answer in text.")
    reference_task: Task | None = Field(
        None, description="The task's reference plan; only the offline backend's plan-following assistant reads it."
    )
    rng_key: str


class JudgeRequest(BaseModel):
    task: Task
    messages: list[AnyMessage] = Field(description="The messages of this task only.")
    calls: list[ExecutedCall] = Field(description="The tool calls executed for this task.")
    user_declared_complete: bool
    ended_by_budget: bool = False
    task_index: int = 0


@runtime_checkable
class Backend(Protocol):
    """One implementation per kind of model; every method returns our pydantic models plus usage."""

    name: str

    async def propose_tools(self, request: ToolProposalRequest) -> tuple[list[dict[str, object]], Usage]: ...

    async def repair_tool(self, request: ToolRepairRequest) -> tuple[dict[str, object] | None, Usage]: ...

    async def generate_task(self, request: TaskRequest) -> tuple[Task, Usage]: ...

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]: ...

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]: ...

    async def judge(self, request: JudgeRequest) -> tuple[Verdict, Usage]: ...
