"""The trilevel optimization's models: its budget, the candidate metric trees with their tuned prompt
parameters and expert-judge scores, and the optimizer graph's state."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from metrics.tree import MetricNode, Mutation, Strategy
from state.agent import ItemInput, ReasoningRunConfig
from state.prompt_params import PromptParams


class OptimizeBudget(BaseModel):
    generations: int = Field(3, ge=1, description="Generations of metric trees (the first is the seeds).")
    population: int = Field(4, ge=1, description="Trees per generation: random trees in the first (besides the "
                            "single-metric seeds), offspring of the best tree in the others.")
    steps: int = Field(2, ge=0, description="Zeroth-order steps on θ and φ per tree.")
    dialogues: int = Field(4, ge=2, description="Dialogues generated per evaluation.")
    mu: float = Field(0.5, gt=0, description="Perturbation radius μ of the two-point estimates.")
    lr: float = Field(1.0, gt=0, description="Learning rate: the length of one zeroth-order step in parameter space.")
    depth: int = Field(3, ge=1, description="Depth d of a new random tree.")

    def evaluations_per_tree(self) -> int:
        """Dialogue batches per tree: three per step (unperturbed, θ perturbed, φ perturbed) and the judge's."""
        return 3 * self.steps + 1


class HScore(BaseModel):
    """The expert judge h on a batch: the mean of each dimension over the dialogues (1-5)."""

    coherence: float
    fluency: float
    diversity: float

    @property
    def mean(self) -> float:
        return round((self.coherence + self.fluency + self.diversity) / 3, 4)

    def row(self) -> dict[str, float]:
        return {"coherence": self.coherence, "fluency": self.fluency, "diversity": self.diversity, "mean": self.mean}


class ZOStep(BaseModel):
    """One two-point step: the tree's score on the unperturbed and perturbed batches."""

    step: int
    f: float = Field(description="f(θ, φ): the tree on whole dialogues.")
    f_theta: float = Field(description="f(θ + μu₁, φ).")
    g: float = Field(description="g(θ, φ): the tree on single exchanges.")
    g_phi: float = Field(description="g(θ, φ + μu₂).")
    theta: list[float] = Field(description="θ after the step.")
    phi: list[float] = Field(description="φ after the step.")


class Candidate(BaseModel):
    candidate_id: str
    generation: int
    tree: MetricNode
    name: str = Field("", description="The single-metric baseline this tree is, if any.")
    parent: str | None = None
    strategy: Strategy
    mutation: Mutation | None = None
    params: PromptParams = Field(default_factory=PromptParams)
    steps: list[ZOStep] = []
    score: HScore | None = None

    def record(self) -> dict[str, Any]:
        """Its line in history.jsonl."""
        return {"generation": self.generation, "candidate": self.candidate_id, "name": self.name,
                "parent": self.parent, "strategy": self.strategy, "mutation": self.mutation,
                "formula": self.tree.formula(), "tree": self.tree.model_dump(mode="json"),
                "h": self.score.row() if self.score else None,
                "steps": [s.model_dump() for s in self.steps],
                "theta": [round(float(v), 6) for v in self.params.user.vector()],
                "phi": [round(float(v), 6) for v in self.params.assistant.vector()]}


class OptimizeInput(BaseModel):
    run_id: str = "optimize"
    scenario: str = ""
    starts: list[ItemInput] = Field(description="The users and their action sequences the dialogues are made from.")
    budget: OptimizeBudget = Field(default_factory=OptimizeBudget)
    seed: int = 0
    backend: str = ""
    concurrency: int = Field(4, ge=1, description="Dialogues made at once.")


class OptimizeState(OptimizeInput):
    unoptimized: HScore | None = None
    generation: int = 0
    population: list[Candidate] = Field(default_factory=list, description="This generation's trees.")
    current: int = Field(0, description="The tree being tuned or judged.")
    evaluated: list[Candidate] = Field(default_factory=list, description="Every judged tree, in order.")
    winner: str | None = Field(None, description="Id of the best tree under h so far.")


class OptimizeRunConfig(ReasoningRunConfig):
    """What an `optimize` run was asked to do; written to its config.json."""

    command: Literal["optimize"] = "optimize"  # type: ignore[assignment]
    budget: OptimizeBudget = Field(default_factory=OptimizeBudget)
