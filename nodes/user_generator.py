"""The user generator: a pool of distinct user profiles for a scenario.

A profile whose embedding is more similar than the threshold to one already in the pool is thrown
away and regenerated (asking the backend to differ from the whole pool), so the pool stays diverse.
"""

from __future__ import annotations

from backends.protocols import AgentBackend, ProfileRequest
from knowledge.embedder import Embedder
from knowledge.retriever import VectorIndex
from state.agent import Profile, ReasoningSettings
from state.dialogue import Usage


class ProfilePool:
    def __init__(self, profiles: list[Profile], usage: Usage, regenerated: int, notes: list[str]) -> None:
        self.profiles = profiles
        self.usage = usage
        self.regenerated = regenerated
        self.notes = notes


async def generate_profile_pool(scenario: str, count: int, backend: AgentBackend, embedder: Embedder,
                                settings: ReasoningSettings, seed: int) -> ProfilePool:
    kept: list[Profile] = []
    index = VectorIndex(embedder.dim)
    usage = Usage()
    regenerated = 0
    notes: list[str] = []
    attempt = 0
    max_attempts = count + settings.profile_attempts * count
    while len(kept) < count and attempt < max_attempts:
        want = count - len(kept)
        candidates, used = await backend.generate_profiles(
            ProfileRequest(scenario=scenario, count=want, avoid=kept, rng_key=f"{seed}:profiles:{attempt}"))
        usage = usage + used
        attempt += 1
        for candidate in candidates:
            vector = embedder.encode([candidate.text()])
            if len(index):
                scores, _ = index.search(vector, 1)
                if float(scores[0][0]) > settings.profile_similarity:
                    regenerated += 1
                    continue
            index.add(vector)
            kept.append(candidate.model_copy(update={"profile_id": f"p{len(kept):03d}"}))
            if len(kept) == count:
                break
    if len(kept) < count:
        notes.append(f"only {len(kept)} of {count} profiles are distinct enough (similarity at most "
                     f"{settings.profile_similarity}); the pool is reused in turn")
    return ProfilePool(kept, usage, regenerated, notes)
