"""The backend protocols, and the request models nodes hand to them: one module, whichever backend runs.

A dialogue backend is three narrow protocols (tool design, the dialogue roles, tool simulation) and the
lifecycle every backend has; method B's user-agent backend is the lifecycle and its own roles."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, AnyMessage
from pydantic import BaseModel, Field

from state.agent import Action, JudgeScore, KnowledgeChunk, Memory, Profile, ReasoningQuestion
from state.dialogue import ExecutedCall, SimulatedWorld, Usage, UserTurn, Verdict
from state.prompt_params import PromptStyle
from state.schema import DatabaseSchema
from state.targeting import TaskAim
from state.tasks import Difficulty, Task, Variant
from state.toolprep import Question
from state.tools import Tool


# ---------------------------------------------------------------- dialogue requests

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
    aim: TaskAim | None = Field(None, description="What a targeted run leans this task toward (generate --target).")
    variant: Variant = Field("standard", description="The hard case to make (docs/hard-cases.md); the task says "
                                                     "'standard' where the tools offer no such case.")


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


# ---------------------------------------------------------------- method B requests

class ProfileRequest(BaseModel):
    scenario: str
    count: int = Field(ge=1)
    avoid: list[Profile] = Field(default_factory=list, description="Profiles already in the pool: be different.")
    rng_key: str


class ActRequest(BaseModel):
    scenario: str
    profile: Profile
    memory: Memory
    actions: list[Action]
    knowledge: list[KnowledgeChunk]
    focus: str
    step: int
    must_stop: bool = Field(False, description="The action budget is spent: this is the last action.")
    may_stop: bool = Field(True, description="False until the minimum number of actions is reached.")
    rng_key: str


class ReflectRequest(BaseModel):
    profile: Profile
    memory: Memory
    action: Action
    knowledge: list[KnowledgeChunk]
    rng_key: str


class AgentTurnRequest(BaseModel):
    scenario: str
    mode: str = Field(description="direct | profile | actions")
    profile: Profile | None
    actions: list[Action]
    memory: Memory
    messages: list[AnyMessage]
    knowledge: list[KnowledgeChunk]
    turn: int
    last_turn: bool = Field(False, description="The turn budget is spent after this message.")
    style: PromptStyle = Field(default_factory=lambda: PromptStyle(role="user"), description="θ: how the user talks.")
    rng_key: str


class KnowledgeAnswerRequest(BaseModel):
    scenario: str
    messages: list[AnyMessage]
    knowledge: list[KnowledgeChunk]
    style: PromptStyle = Field(default_factory=lambda: PromptStyle(role="assistant"),
                               description="φ: how the assistant answers.")
    closing: bool = Field(False, description="The user has just said goodbye: the reply closes the conversation.")
    rng_key: str


class ReasoningQuestionRequest(BaseModel):
    scenario: str
    profile: Profile | None
    actions: list[Action]
    transcript: str
    previous: ReasoningQuestion | None = Field(None, description="An easy question to replace with a harder one.")
    reference: ReasoningQuestion | None = Field(None, description="A hard problem to model the new question on.")
    rng_key: str


class SolveRequest(BaseModel):
    solver: str
    transcript: str
    question: ReasoningQuestion = Field(description="Models see only its kind and text; the offline solvers read "
                                                    "its program.")
    rng_key: str


class QualityJudgeRequest(BaseModel):
    scenario: str
    transcript: str


class TopicRequest(BaseModel):
    transcript: str


# ---------------------------------------------------------------- protocols

@runtime_checkable
class Lifecycle(Protocol):
    """What every backend does around the work, called by the runner whichever backend it is."""

    name: str

    async def settle(self) -> list[str]:
        """Get ready before the work starts (an LLM backend finds each endpoint's structured-output mode);
        a line on each thing found, for the run's start."""
        ...

    def record(self) -> dict[str, Any]:
        """What each dataset line records of this backend (models per role, modes per endpoint)."""
        ...

    async def aclose(self) -> None:
        """Close what the running event loop opened (HTTP connections); the backend stays usable."""
        ...


class NothingToManage:
    """The lifecycle of a backend that opens nothing and records nothing (the offline ones)."""

    async def settle(self) -> list[str]:
        return []

    def record(self) -> dict[str, Any]:
        return {}

    async def aclose(self) -> None:
        return None


@runtime_checkable
class ToolDesigner(Protocol):
    """Makes toolsets: SQL tools from a schema, and tool preparation from seed tools."""

    async def propose_tools(self, request: ToolProposalRequest) -> tuple[list[dict[str, object]], Usage]: ...

    async def repair_tool(self, request: ToolRepairRequest) -> tuple[dict[str, object] | None, Usage]: ...

    async def generate_questions(self, request: QuestionRequest) -> tuple[list[Question], Usage]: ...

    async def design_tools(self, request: ToolDesignRequest) -> tuple[list[dict[str, object]], Usage]: ...

    async def expand_tools(self, request: ExpansionRequest) -> tuple[list[dict[str, object]], Usage]: ...

    async def predict_output_schema(self, request: OutputSchemaRequest) -> tuple[dict[str, object], Usage]: ...


@runtime_checkable
class DialogueRoles(Protocol):
    """Plays a dialogue: writes its tasks, the user, the assistant and the judge."""

    async def generate_task(self, request: TaskRequest) -> tuple[Task, Usage]: ...

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]: ...

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]: ...

    async def judge(self, request: JudgeRequest) -> tuple[Verdict, Usage]: ...


@runtime_checkable
class ToolSimulator(Protocol):
    """Answers calls to tools without SQL, consistently within a dialogue."""

    async def simulate_tool(self, request: SimulationRequest) -> tuple[object, Usage]: ...


@runtime_checkable
class Backend(ToolDesigner, DialogueRoles, ToolSimulator, Lifecycle, Protocol):
    """One implementation per kind of model; every method returns our pydantic models plus usage."""


@runtime_checkable
class AgentBackend(Lifecycle, Protocol):
    """Method B's roles; one implementation per kind of model, the same pydantic outputs from each."""

    async def generate_profiles(self, request: ProfileRequest) -> tuple[list[Profile], Usage]: ...

    async def act(self, request: ActRequest) -> tuple[Action, Usage]: ...

    async def reflect(self, request: ReflectRequest) -> tuple[Memory, Usage]: ...

    async def user_turn(self, request: AgentTurnRequest) -> tuple[UserTurn, Usage]: ...

    async def answer(self, request: KnowledgeAnswerRequest) -> tuple[AIMessage, Usage]: ...

    async def make_question(self, request: ReasoningQuestionRequest) -> tuple[ReasoningQuestion, Usage]: ...

    async def solve(self, request: SolveRequest) -> tuple[str, Usage]: ...

    async def judge_quality(self, request: QualityJudgeRequest) -> tuple[JudgeScore, Usage]: ...

    async def topic(self, request: TopicRequest) -> tuple[str | None, Usage]:
        """A short topic label, or None when the backend leaves topics to embedding clusters."""
        ...
