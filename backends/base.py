"""The backend protocol and the request models nodes hand to it."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, AnyMessage
from pydantic import BaseModel, Field

from state.dialogue import ExecutedCall, SimulatedWorld, Usage, UserTurn, Verdict
from state.schema import DatabaseSchema
from state.tasks import Difficulty, Task
from state.toolprep import Question
from state.tools import Tool


class ToolProposalRequest(BaseModel):
    database: DatabaseSchema
    max_tools: int = 40


class ToolRepairRequest(BaseModel):
    database: DatabaseSchema
    tool: dict[str, object]
    error: str


class TaskRequest(BaseModel):
    database: DatabaseSchema | None = Field(None, description="None when every tool is simulated.")
    tools: list[Tool]
    difficulty: Difficulty
    relation: Literal["first", "extends", "independent"]
    previous_tasks: list[Task] = []
    previous_calls: list[ExecutedCall] = Field(default_factory=list, description="Outcomes of earlier tasks.")
    conversation: list[AnyMessage] = Field(
        default_factory=list, description="A given conversation the first task must follow on from.")
    style: Literal["descriptive", "question"] = Field(
        "descriptive", description="A latent goal for a user simulator, or a direct question (task-oriented).")
    rng_key: str = Field(description="Seeds every random choice of this request.")
    feedback: str = Field("", description="Why the last task was refused at the plan check, to do better.")


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
    closing: bool = Field(False, description="The user has just declared the task done: the reply acknowledges it.")
    rng_key: str


class QuestionRequest(BaseModel):
    domain: str
    seed_tools: list[Tool]
    count: int = 24
    rng_key: str


class ToolDesignRequest(BaseModel):
    domain: str
    question: Question
    known_tools: list[Tool] = Field(default_factory=list, description="Tools so far, whose conventions to follow.")
    rng_key: str


class ExpansionRequest(BaseModel):
    domain: str
    tools: list[Tool]
    max_new: int = 10
    rng_key: str


class OutputSchemaRequest(BaseModel):
    tool: Tool
    previous: list[Tool] = Field(default_factory=list, description="Tools already given output schemas, in order.")
    registry: dict[str, str] = Field(default_factory=dict, description="Canonical type of every field seen so far.")
    feedback: str = Field("", description="Type conflicts in the last answer, to repair.")


class SimulationRequest(BaseModel):
    tool: Tool
    arguments: dict[str, object]
    messages: list[AnyMessage]
    reference_time: str = Field(description="The dialogue's 'now', or the date the user stated.")
    world: SimulatedWorld = Field(description="Every entity returned so far in this dialogue.")
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

    async def generate_questions(self, request: QuestionRequest) -> tuple[list[Question], Usage]: ...

    async def design_tools(self, request: ToolDesignRequest) -> tuple[list[dict[str, object]], Usage]: ...

    async def expand_tools(self, request: ExpansionRequest) -> tuple[list[dict[str, object]], Usage]: ...

    async def predict_output_schema(self, request: OutputSchemaRequest) -> tuple[dict[str, object], Usage]: ...

    async def simulate_tool(self, request: SimulationRequest) -> tuple[object, Usage]: ...
