"""Prompt parameters: θ for the user agent's multi-turn prompt, φ for the assistant's single-turn prompt.

Each role's parameters are a real vector: one weight per instruction fragment of that role's prompt,
then the sampling temperature. A weight w means "follow this fragment with probability σ(w)"
(σ the logistic function; 0 gives one half). The rendering function turns the vector into the
block of instructions the LLM reads (fragments ordered by weight, worded by how strongly they
apply); the offline backend follows each fragment on a turn with probability σ(w), and draws its
wording with the temperature, so both backends move along the same fragments.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

Role = Literal["user", "assistant"]

TEMPERATURE_RANGE = (0.0, 1.5)
WEIGHT_RANGE = (-4.0, 4.0)  # σ(±4) is 0.02 / 0.98: far enough to say never / always


class Fragment(BaseModel):
    name: str
    instruction: str = Field(description="The sentence the LLM reads when the fragment applies.")


USER_FRAGMENTS = [
    Fragment(name="refer_back", instruction="Refer back to something said earlier in the conversation (a figure or "
             "rule the assistant gave) when you ask your next question."),
    Fragment(name="one_concern", instruction="Raise one concern at a time: one action or problem per message."),
    Fragment(name="concrete_figures", instruction="Give concrete figures: the exact amounts, quantities and dates of "
             "what you did."),
    Fragment(name="vary_wording", instruction="Vary your wording from message to message; never reuse a stock "
             "phrase."),
    Fragment(name="acknowledge", instruction="Acknowledge the assistant's last answer in a few words before moving "
             "on."),
]
ASSISTANT_FRAGMENTS = [
    Fragment(name="acknowledge", instruction="Start by acknowledging the user's question in the user's own words."),
    Fragment(name="concrete_figures", instruction="Give concrete figures: work the user's own numbers through the "
             "prices and rates that apply."),
    Fragment(name="refer_back", instruction="Refer back to amounts and answers from earlier in the conversation when "
             "they matter."),
    Fragment(name="vary_wording", instruction="Vary your wording; do not open every reply the same way."),
    Fragment(name="concise", instruction="Be concise: give only the one or two facts that answer the question."),
]
FRAGMENTS: dict[str, list[Fragment]] = {"user": USER_FRAGMENTS, "assistant": ASSISTANT_FRAGMENTS}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _emphasis(p: float, instruction: str) -> str | None:
    if p < 0.25:
        return None  # too weak to mention
    if p < 0.5:
        return f"Where it fits naturally: {instruction[0].lower()}{instruction[1:]}"
    if p < 0.75:
        return instruction
    return f"Always: {instruction[0].lower()}{instruction[1:]}"


class PromptStyle(BaseModel):
    """One role's prompt parameters: a weight per fragment, and the sampling temperature."""

    role: Role
    weights: dict[str, float] = Field(default_factory=dict, validate_default=True,
                                      description="Fragment name -> weight; missing is 0.")
    temperature: float = Field(0.7, ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1])

    @field_validator("weights")
    @classmethod
    def _known(cls, weights: dict[str, float], info) -> dict[str, float]:
        role = info.data.get("role", "user")
        names = [f.name for f in FRAGMENTS[role]]
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(f"unknown {role} fragment(s) {', '.join(unknown)} (known: {', '.join(names)})")
        return {n: float(weights.get(n, 0.0)) for n in names}

    @property
    def names(self) -> list[str]:
        return [f.name for f in FRAGMENTS[self.role]]

    def probability(self, name: str) -> float:
        """How likely a turn follows the fragment (the offline backend's reading of the weight)."""
        return sigmoid(self.weights.get(name, 0.0))

    def vector(self) -> np.ndarray:
        return np.array([self.weights[n] for n in self.names] + [self.temperature], dtype=np.float64)

    @classmethod
    def from_vector(cls, role: Role, vector: np.ndarray) -> "PromptStyle":
        """Parameters from a vector, clipped to the ranges that mean something."""
        names = [f.name for f in FRAGMENTS[role]]
        values = [float(v) for v in vector]
        weights = {n: round(min(WEIGHT_RANGE[1], max(WEIGHT_RANGE[0], v)), 6) for n, v in zip(names, values)}
        temperature = round(min(TEMPERATURE_RANGE[1], max(TEMPERATURE_RANGE[0], values[len(names)])), 6)
        return cls(role=role, weights=weights, temperature=temperature)

    def render(self) -> str:
        """The instruction block for the LLM: the fragments by weight, strongest first, each worded by its
        strength; fragments weighted below σ = 0.25 are left out."""
        ranked = sorted(FRAGMENTS[self.role], key=lambda f: -self.weights[f.name])
        lines = [line for f in ranked if (line := _emphasis(self.probability(f.name), f.instruction))]
        return "\n".join(f"- {line}" for line in lines) or "- Write naturally."


class PromptParams(BaseModel):
    """θ (the user agent's multi-turn prompt) and φ (the assistant's single-turn prompt)."""

    user: PromptStyle = Field(default_factory=lambda: PromptStyle(role="user"), description="θ")
    assistant: PromptStyle = Field(default_factory=lambda: PromptStyle(role="assistant"), description="φ")

    def summary(self) -> dict[str, object]:
        """What prompt_params.json holds: both vectors, their meaning and the rendered prompts."""
        return {
            "theta": self.user.model_dump(), "phi": self.assistant.model_dump(),
            "theta_vector": [round(float(v), 6) for v in self.user.vector()],
            "phi_vector": [round(float(v), 6) for v in self.assistant.vector()],
            "coordinates": {"theta": [*self.user.names, "temperature"],
                            "phi": [*self.assistant.names, "temperature"]},
            "rendered": {"user": self.user.render(), "assistant": self.assistant.render()},
        }

    @classmethod
    def from_file_data(cls, data: object) -> "PromptParams":
        """Read what `summary` wrote (or a bare {"user": ..., "assistant": ...})."""
        if isinstance(data, dict) and "theta" in data and "phi" in data:
            data = {"user": data["theta"], "assistant": data["phi"]}
        return cls.model_validate(data)
