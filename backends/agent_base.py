"""The user-agent backend protocol (method B) and the request models nodes hand to it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from langchain_core.messages import AIMessage, AnyMessage
from pydantic import BaseModel, Field

from state.agent import Action, JudgeScore, KnowledgeChunk, Memory, Profile, ReasoningQuestion
from state.dialogue import Usage, UserTurn
from state.prompt_params import PromptStyle


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


class QuestionRequest(BaseModel):
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


@runtime_checkable
class AgentBackend(Protocol):
    """Method B's roles; one implementation per kind of model, the same pydantic outputs from each."""

    name: str

    async def generate_profiles(self, request: ProfileRequest) -> tuple[list[Profile], Usage]: ...

    async def act(self, request: ActRequest) -> tuple[Action, Usage]: ...

    async def reflect(self, request: ReflectRequest) -> tuple[Memory, Usage]: ...

    async def user_turn(self, request: AgentTurnRequest) -> tuple[UserTurn, Usage]: ...

    async def answer(self, request: KnowledgeAnswerRequest) -> tuple[AIMessage, Usage]: ...

    async def make_question(self, request: QuestionRequest) -> tuple[ReasoningQuestion, Usage]: ...

    async def solve(self, request: SolveRequest) -> tuple[str, Usage]: ...

    async def judge_quality(self, request: QualityJudgeRequest) -> tuple[JudgeScore, Usage]: ...

    async def topic(self, request: TopicRequest) -> tuple[str | None, Usage]:
        """A short topic label, or None when the backend leaves topics to embedding clusters."""
        ...


_CUSTOM_AGENT_BACKENDS: dict[str, AgentBackend] = {}


def register_agent_backend(name: str, backend: AgentBackend) -> None:
    """Make an agent backend instance (e.g. one around scripted chat models) available by name."""
    _CUSTOM_AGENT_BACKENDS[name] = backend


def registered_agent_backend(name: str) -> AgentBackend | None:
    return _CUSTOM_AGENT_BACKENDS.get(name)
