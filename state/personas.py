"""User personas: who the simulated user is and how they talk, drawn per dialogue from a run's pool."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Persona(BaseModel):
    """A user of the database's domain, made from one of method B's user profiles (nodes/personas.py)."""

    persona_id: str = Field(description="Its place in the run's pool (personas.json), e.g. p003.")
    name: str
    role: str = Field(description="Who they are, e.g. 'retired schoolteacher living alone on a pension'.")
    intent: str = Field("", description="What brings them, from the profile.")
    traits: list[str] = []
    expertise: Literal["novice", "regular", "expert"] = "regular"
    patience: Literal["patient", "hurried"] = "patient"
    verbosity: Literal["terse", "plain", "chatty"] = "plain"
    phrasing: Literal["casual", "neutral", "formal"] = "neutral"
    corrects_mistakes: bool = Field(False, description="Makes small slips in what they type, then corrects them.")

    def describe(self) -> str:
        """The persona in a few plain sentences, for the user simulator's prompt."""
        expertise = {"novice": "You are new to this and unsure of the terms.",
                     "regular": "You use this service now and then.",
                     "expert": "You know the records well and use precise terms."}[self.expertise]
        patience = {"patient": "You are patient.", "hurried": "You are in a hurry and want short answers."}
        verbosity = {"terse": "You write very short messages.", "plain": "You write plain, ordinary messages.",
                     "chatty": "You are chatty and add a little personal context."}[self.verbosity]
        phrasing = {"casual": "Your tone is casual.", "neutral": "Your tone is neutral.",
                    "formal": "Your tone is formal and polite."}[self.phrasing]
        lines = [f"You are {self.name}, {self.role}." + (f" You want to {self.intent}." if self.intent else ""),
                 expertise, patience[self.patience], verbosity, phrasing]
        if self.traits:
            lines.append("You are " + ", ".join(self.traits) + ".")
        if self.corrects_mistakes:
            lines.append("Now and then you mistype a word and correct yourself in the same message; you never get "
                         "a value of your goal wrong.")
        return " ".join(lines)


class PersonaPool(BaseModel):
    """personas.json of a run: each source's pool, and what made it."""

    pools: dict[str, list[Persona]] = Field(default_factory=dict, description="By source, as the run names it.")
    regenerated: int = Field(0, description="Profiles thrown away as near-duplicates of one already kept.")
    notes: list[str] = []
