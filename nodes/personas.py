"""User personas for dialogues: a pool made from the database's domain by method B's user generator
(nodes/user_generator.py, either backend), each profile given a way of talking, and one drawn per dialogue.

The profile says who the user is (name, role, what they want, traits); how they talk (expertise, patience,
verbosity, phrasing, slips they correct) is drawn from the profile's own seed, so the same pool always
gives the same personas.
"""

from __future__ import annotations

import random
from typing import get_args

from backends.protocols import AgentBackend
from knowledge.embedder import Embedder
from nodes.user_generator import generate_profile_pool
from state.agent import Profile, ReasoningSettings
from state.personas import Persona, PersonaPool
from state.schema import DatabaseSchema


def domain_scenario(schema: DatabaseSchema | None, label: str) -> str:
    """The scenario the user generator writes profiles for: the people a database of this shape serves."""
    if schema is None or not schema.tables:
        return f"People who use a service built on {label}, asking an assistant to look things up and make changes."
    tables = ", ".join(t.name.replace("_", " ") for t in schema.tables[:12])
    return (f"People who use a service whose records are kept in a database of {tables} ({label}). They ask an "
            f"assistant to look things up in those records and to make changes.")


def persona_of(profile: Profile, index: int, seed: int) -> Persona:
    rng = random.Random(f"{seed}:persona:{index}:{profile.name}")
    fields = Persona.model_fields

    def draw(name: str) -> str:
        return rng.choice(list(get_args(fields[name].annotation)))

    return Persona(persona_id=f"p{index:03d}", name=profile.name, role=profile.role, intent=profile.intent,
                   traits=list(profile.traits), expertise=draw("expertise"), patience=draw("patience"),
                   verbosity=draw("verbosity"), phrasing=draw("phrasing"), corrects_mistakes=rng.random() < 0.3)


async def persona_pool(schema: DatabaseSchema | None, label: str, count: int, backend: AgentBackend,
                       embedder: Embedder, seed: int) -> tuple[list[Persona], int, list[str]]:
    """`count` distinct personas for one source (the user generator regenerates near-duplicate profiles)."""
    pool = await generate_profile_pool(domain_scenario(schema, label), count, backend, embedder,
                                       ReasoningSettings(), seed)
    return [persona_of(p, i, seed) for i, p in enumerate(pool.profiles)], pool.regenerated, pool.notes


def draw_persona(pool: PersonaPool, source: str, dialogue_seed: int) -> Persona | None:
    """The persona a dialogue's user plays (None when the run has no pool for its source)."""
    personas = pool.pools.get(source) or []
    return random.Random(f"{dialogue_seed}:persona").choice(personas) if personas else None
