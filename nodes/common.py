"""What every node needs: its settings, its backend, and deterministic random keys."""

from __future__ import annotations

from langgraph.runtime import Runtime

from backends.protocols import Backend
from backends.registry import backend_for
from state.config import Settings
from state.dialogue import DialogueState


def settings_of(runtime: Runtime[Settings] | None) -> Settings:
    context = getattr(runtime, "context", None)
    if isinstance(context, Settings):
        return context
    if isinstance(context, dict):
        return Settings(**context)
    return Settings()


def backend_of(runtime: Runtime[Settings] | None, state: DialogueState | None = None) -> Backend:
    """The run's backend, unless the dialogue's own input names one (as Studio's form can)."""
    settings = settings_of(runtime)
    if state is not None and state.backend and state.backend != settings.backend:
        settings = settings.model_copy(update={"backend": state.backend})
    return backend_for(settings)


def rng_key(state: DialogueState, role: str, *parts: object) -> str:
    """A seed string for this dialogue's seed, role and position, so replays choose the same."""
    seed = state.user_seed if role == "user" and getattr(state, "user_seed", None) is not None else state.seed
    return seeded_key(seed, role, len(state.tasks), *parts)


def seeded_key(seed: int, role: str, task_count: int, *parts: object) -> str:
    """The key `rng_key` makes, from its parts (an RL episode has no dialogue state to read them from)."""
    return ":".join(str(p) for p in (seed, role, task_count, *parts))
