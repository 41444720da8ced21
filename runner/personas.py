"""A run's persona pools: made once (before its first dialogue) and kept in personas.json, so a resumed run,
its worker processes and its Ray tasks draw from the very same pool."""

from __future__ import annotations

import asyncio

from rich.console import Console

from backends.registry import agent_backend_for
from environment.sources.registry import label_of, open_source
from knowledge.embedder import get_embedder
from nodes.personas import persona_pool
from runner import layout
from runner.run_folder import RunFolder
from state.config import RunConfig, Settings
from state.personas import PersonaPool


def read_pools(folder: RunFolder) -> PersonaPool | None:
    if not folder.file(layout.PERSONAS).exists():
        return None
    return PersonaPool.model_validate(folder.read_json(layout.PERSONAS))


async def ensure_pools(folder: RunFolder, config: RunConfig, settings: Settings, console: Console) -> PersonaPool:
    """The run's pools: read from its folder, or made now for every source and written there."""
    kept = read_pools(folder)
    if kept is not None or not settings.personas:
        return kept or PersonaPool()
    backend = agent_backend_for(settings)
    embedder = await asyncio.to_thread(get_embedder, "")
    made = PersonaPool()
    for source in config.sources():
        named = source.label  # the pool's key: the share's sources in one line
        schema = await asyncio.to_thread(lambda source=source: open_source(source.sources).catalog().database) if named else None
        personas, regenerated, notes = await persona_pool(schema, label_of(source.sources) if named else "tools",
                                                          settings.personas, backend, embedder, config.seed)
        made.pools[named] = personas
        made.regenerated += regenerated
        made.notes.extend(notes)
    folder.write_json(layout.PERSONAS, made.model_dump(mode="json"))
    console.print(f"personas: {sum(len(p) for p in made.pools.values())} in {len(made.pools)} pool(s) "
                  f"({made.regenerated} near-duplicates regenerated)")
    return made
